// Downloading a file of the record with the session's token (a Binary's bytes, a
// generated PDF) and handing it to the browser as a download.
import { useState } from "preact/hooks";
import { problemText, useSession } from "./data";
import type { Client } from "./smart";

/** Fetch a file with the session's token and hand it to the browser as a download. */
async function download(client: Client, url: string, filename: string, type = "application/pdf"): Promise<void> {
  // fetch itself (not client.request, which reads text and JSON bodies as such)
  await client.refreshIfNeeded();
  const response = await fetch(new URL(url, `${client.state.serverUrl.replace(/\/$/, "")}/`), {
    headers: { Accept: type, Authorization: `Bearer ${client.state.tokenResponse?.access_token}` },
  });
  if (!response.ok) {
    const text = await response.text();
    throw Object.assign(new Error(`HTTP ${response.status} ${text}`), { status: response.status });
  }
  const blob = await response.blob();
  const link = document.createElement("a");
  link.href = URL.createObjectURL(blob);
  link.download = filename;
  document.body.appendChild(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(link.href), 60_000);
}

export function DownloadButton({
  url,
  filename,
  label,
  type,
}: {
  url: string;
  filename: string;
  label: string;
  type?: string;
}) {
  const { client } = useSession();
  const [state, setState] = useState<{ busy?: boolean; done?: boolean; problem?: string }>({});
  const start = async () => {
    setState({ busy: true });
    try {
      await download(client, url, filename, type);
      setState({ done: true });
    } catch (error) {
      setState({ problem: problemText(error) });
    }
  };
  return (
    <div class="download">
      <button type="button" class="secondary" onClick={start} disabled={state.busy}>
        {state.busy ? "Preparing…" : label}
      </button>
      <span role="status" class={state.problem ? "problem" : "muted"}>
        {state.problem ? `Could not download: ${state.problem}` : state.done ? " Downloaded." : ""}
      </span>
    </div>
  );
}


/** A file's bytes as base64 (for a FHIR Attachment's or Binary's data). */
export function base64Of(file: File): Promise<string> {
  return new Promise((resolve, reject) => {
    const reader = new FileReader();
    reader.onload = () => resolve(String(reader.result).split(",", 2)[1] || "");
    reader.onerror = () => reject(reader.error);
    reader.readAsDataURL(file);
  });
}

/** The media types the server takes as uploads and attachments. */
export const UPLOAD_TYPES = ["application/pdf", "image/png", "image/jpeg", "image/heic", "text/plain"];
export const UPLOAD_MAX_BYTES = 10 * 1024 * 1024;
