// Results: lab results and vital signs as tables with reference ranges and flags, and a
// trend chart (uPlot) for a test measured more than once (#/results/<test>).
import { search, useLoad, useSession } from "../data";
import {
  conceptText,
  formatDate,
  formatNumber,
  formatQuantity,
  whenOf,
  type Json,
} from "../fhir";
import { Empty, Section, Show, TableWrap } from "../ui";
import { TrendChart, type Series } from "./chart";

/** A test's key in URLs: its first coding's code (else its text). */
export function testKey(o: Json): string {
  const coding = (o.code?.coding || []).find((c: Json) => c.code);
  return coding ? coding.code : conceptText(o.code, "unknown");
}

/** An observation's value as read: "7.2 %", "120/80 mmHg", "Positive". */
export function observationValue(o: Json): string {
  if (o.valueQuantity) return formatQuantity(o.valueQuantity);
  if (o.valueCodeableConcept) return conceptText(o.valueCodeableConcept);
  if (o.valueString !== undefined) return String(o.valueString);
  if (o.valueBoolean !== undefined) return o.valueBoolean ? "Yes" : "No";
  if (o.valueInteger !== undefined) return formatNumber(o.valueInteger);
  const parts = (o.component || [])
    .map((c: Json) => c.valueQuantity)
    .filter((q: Json | undefined) => q && q.value !== undefined);
  if (parts.length) {
    const unit = parts[0].unit || parts[0].code || "";
    return `${parts.map((q: Json) => formatNumber(q.value)).join("/")}${unit ? ` ${unit}` : ""}`;
  }
  if (o.dataAbsentReason) return conceptText(o.dataAbsentReason);
  return "";
}

export function rangeText(o: Json): string {
  const range = o.referenceRange?.[0];
  if (!range) return "";
  if (range.text) return range.text;
  const unit = range.low?.unit || range.high?.unit || "";
  const low = range.low?.value;
  const high = range.high?.value;
  if (low !== undefined && high !== undefined) return `${formatNumber(low)}–${formatNumber(high)}${unit ? ` ${unit}` : ""}`;
  if (low !== undefined) return `≥ ${formatNumber(low)}${unit ? ` ${unit}` : ""}`;
  if (high !== undefined) return `≤ ${formatNumber(high)}${unit ? ` ${unit}` : ""}`;
  return "";
}

const FLAGS: Record<string, string> = {
  H: "High",
  HH: "Critically high",
  HU: "Very high",
  L: "Low",
  LL: "Critically low",
  LU: "Very low",
  A: "Abnormal",
  AA: "Critically abnormal",
  N: "Normal",
};

/** The flag in words: the interpretation the lab gave, else from the reference range. */
export function flagOf(o: Json): string {
  const interpretation = o.interpretation?.[0];
  if (interpretation) {
    const code = (interpretation.coding || []).find((c: Json) => c.code)?.code;
    return (code && FLAGS[code]) || conceptText(interpretation);
  }
  const value = o.valueQuantity?.value;
  const range = o.referenceRange?.[0];
  if (value === undefined || !range) return "";
  if (range.low?.value !== undefined && value < range.low.value) return "Low";
  if (range.high?.value !== undefined && value > range.high.value) return "High";
  return "Normal";
}

function Flag({ o }: { o: Json }) {
  const flag = flagOf(o);
  if (!flag) return null;
  const kind = flag === "Normal" ? "normal" : "abnormal";
  return <span class={`flag ${kind}`}>{flag}</span>;
}

interface Test {
  key: string;
  name: string;
  category: string;
  observations: Json[]; // newest first
}

function groupTests(observations: Json[]): Test[] {
  const tests = new Map<string, Test>();
  for (const o of observations) {
    const key = testKey(o);
    let test = tests.get(key);
    if (!test) {
      const category = (o.category || []).flatMap((c: Json) => c.coding || []).find((c: Json) => c.code)?.code || "";
      test = { key, name: conceptText(o.code, key), category, observations: [] };
      tests.set(key, test);
    }
    test.observations.push(o);
  }
  for (const test of tests.values()) {
    test.observations.sort((a, b) => (whenOf(b) || "").localeCompare(whenOf(a) || ""));
  }
  return [...tests.values()];
}

/** Numeric series of a test, oldest first: one per value (blood pressure: two). */
function seriesOf(test: Test): Series[] {
  const points = [...test.observations].reverse();
  const times = points.map((o) => Date.parse(whenOf(o) || "") / 1000);
  if (points.some((o) => o.valueQuantity?.value !== undefined)) {
    const unit = points.find((o) => o.valueQuantity)?.valueQuantity;
    return [
      {
        label: `${test.name}${unit?.unit ? ` (${unit.unit})` : ""}`,
        times,
        values: points.map((o) => o.valueQuantity?.value ?? null),
      },
    ];
  }
  const components = new Map<string, Series>();
  points.forEach((o, i) => {
    for (const c of o.component || []) {
      if (c.valueQuantity?.value === undefined) continue;
      const label = conceptText(c.code);
      let series = components.get(label);
      if (!series) {
        series = { label, times, values: points.map(() => null) };
        components.set(label, series);
      }
      series.values[i] = c.valueQuantity.value;
    }
  });
  return [...components.values()];
}

function trendable(test: Test): boolean {
  return test.observations.length > 1 && seriesOf(test).length > 0;
}

export function Results({ rest }: { rest: string }) {
  const { client, patientId } = useSession();
  const p = encodeURIComponent(patientId);
  const loaded = useLoad(`results:${patientId}`, () =>
    search(client, `Observation?patient=${p}&category=laboratory,vital-signs&_sort=-date&_count=200`),
  );
  return (
    <Show loaded={loaded} what="results">
      {(observations) => {
        const tests = groupTests(observations);
        if (!tests.length) return <Empty>No results yet.</Empty>;
        const chosen = rest ? tests.find((t) => t.key === rest) : undefined;
        if (rest && !chosen) return <Empty>There is no result of this test in your record.</Empty>;
        return chosen ? <TestDetail test={chosen} /> : <TestList tests={tests} />;
      }}
    </Show>
  );
}

function TestList({ tests }: { tests: Test[] }) {
  const groups: [string, string][] = [
    ["laboratory", "Lab results"],
    ["vital-signs", "Vital signs"],
  ];
  return (
    <>
      {groups.map(([category, title]) => {
        const inGroup = tests.filter((t) => t.category === category);
        return (
          <Section key={category} title={title} id={`results-${category}`}>
            {inGroup.length ? (
              <TableWrap label={title}>
                <table>
                  <caption class="sr-only">{title}: the latest value of each test</caption>
                  <thead>
                    <tr>
                      <th scope="col">Test</th>
                      <th scope="col">Latest value</th>
                      <th scope="col">Reference range</th>
                      <th scope="col">Flag</th>
                      <th scope="col">Date</th>
                    </tr>
                  </thead>
                  <tbody>
                    {inGroup.map((t) => {
                      const latest = t.observations[0];
                      return (
                        <tr key={t.key}>
                          <th scope="row">
                            {trendable(t) ? (
                              <a href={`#/results/${encodeURIComponent(t.key)}`}>{t.name}</a>
                            ) : (
                              t.name
                            )}
                            {t.observations.length > 1 && (
                              <span class="muted"> ({t.observations.length} results)</span>
                            )}
                          </th>
                          <td>{observationValue(latest)}</td>
                          <td>{rangeText(latest)}</td>
                          <td>
                            <Flag o={latest} />
                          </td>
                          <td>{formatDate(whenOf(latest))}</td>
                        </tr>
                      );
                    })}
                  </tbody>
                </table>
              </TableWrap>
            ) : (
              <Empty>No {title.toLowerCase()} yet.</Empty>
            )}
          </Section>
        );
      })}
    </>
  );
}

function TestDetail({ test }: { test: Test }) {
  const series = seriesOf(test);
  return (
    <>
      <p>
        <a href="#/results">← All results</a>
      </p>
      <Section title={test.name} id="test-detail">
        {test.observations.length > 1 && series.length ? (
          <TrendChart title={`${test.name} over time`} series={series} />
        ) : (
          <Empty>Only one result so far: no trend to show.</Empty>
        )}
        <TableWrap label={`Results of ${test.name}`}>
          <table>
            <caption class="sr-only">Every result of {test.name}, newest first</caption>
            <thead>
              <tr>
                <th scope="col">Date</th>
                <th scope="col">Value</th>
                <th scope="col">Reference range</th>
                <th scope="col">Flag</th>
              </tr>
            </thead>
            <tbody>
              {test.observations.map((o) => (
                <tr key={o.id}>
                  <th scope="row">{formatDate(whenOf(o), true)}</th>
                  <td>{observationValue(o)}</td>
                  <td>{rangeText(o)}</td>
                  <td>
                    <Flag o={o} />
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        </TableWrap>
      </Section>
    </>
  );
}
