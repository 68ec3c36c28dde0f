// A trend chart of repeated results, drawn with uPlot (a small canvas charting library).
// The table under it holds the same values for people who do not see the chart.
import { useEffect, useRef } from "preact/hooks";
import uPlot from "uplot";
import "uplot/dist/uPlot.min.css";

export interface Series {
  label: string;
  times: number[]; // seconds since 1970, oldest first
  values: (number | null)[];
}

const COLORS = ["#006978", "#b3261e", "#5b4b9a"];

export function TrendChart({ title, series }: { title: string; series: Series[] }) {
  const box = useRef<HTMLDivElement>(null);
  useEffect(() => {
    const element = box.current;
    if (!element || !series.length) return;
    const width = Math.max(280, Math.min(element.clientWidth || 600, 900));
    const plot = new uPlot(
      {
        width,
        height: 260,
        series: [
          { label: "Date", value: (_u, v) => (v == null ? "" : new Date(v * 1000).toLocaleDateString()) },
          ...series.map((s, i) => ({
            label: s.label,
            stroke: COLORS[i % COLORS.length],
            width: 2,
            points: { show: true, size: 7 },
            spanGaps: true,
          })),
        ],
        axes: [{ stroke: "#333" }, { stroke: "#333" }],
        scales: { x: { time: true } },
      },
      [series[0].times, ...series.map((s) => s.values)] as uPlot.AlignedData,
      element,
    );
    return () => plot.destroy();
  }, [series]);
  return <figure class="chart" role="img" aria-label={title} ref={box} data-testid="trend-chart" />;
}
