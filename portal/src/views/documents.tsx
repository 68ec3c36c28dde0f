// Documents: the patient's DocumentReferences (visit notes...) to read or download, and
// the PDFs the server generates when it offers them (issue 20's operations, found in its
// CapabilityStatement): patient summary (Patient/$summary), immunization record
// (Patient/$immunization-record), visit summary (Encounter/$visit-summary).
import { useState } from "preact/hooks";
import { problemText, search, useLoad, useSession } from "../data";
import { conceptText, conceptsText, formatDate, type Json } from "../fhir";
import type { Client } from "../smart";
import { Empty, NotAvailable, Section, Show } from "../ui";

function inline(document: Json): string | undefined {
  const attachment = document.content?.[0]?.attachment;
  if (!attachment?.data) return undefined;
  return `data:${attachment.contentType || "application/octet-stream"};base64,${attachment.data}`;
}

/** Fetch a PDF with the session's token and hand it to the browser as a download. */
async function downloadPdf(client: Client, url: string, filename: string): Promise<void> {
  const response = (await client.request({ url, headers: { accept: "application/pdf" } })) as Response;
  if (!(response instanceof Response)) throw new Error("the server did not answer with a PDF");
  const blob = await response.blob();
  const link = document.createElement("a");
  link.href = URL.createObjectURL(blob);
  link.download = filename;
  document.body.appendChild(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(link.href), 60_000);
}

function PdfButton({ url, filename, label }: { url: string; filename: string; label: string }) {
  const { client } = useSession();
  const [state, setState] = useState<{ busy?: boolean; done?: boolean; problem?: string }>({});
  const start = async () => {
    setState({ busy: true });
    try {
      await downloadPdf(client, url, filename);
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

export function Documents() {
  const { client, patientId, capabilities } = useSession();
  const p = encodeURIComponent(patientId);
  const loaded = useLoad(`documents:${patientId}`, () =>
    search(client, `DocumentReference?patient=${p}&_sort=-date&_count=100`),
  );
  const summary = capabilities.operation("Patient", "summary");
  const immunizations = capabilities.operation("Patient", "immunization-record");
  const visits = capabilities.operation("Encounter", "visit-summary");
  return (
    <>
      <Section title="Summaries to download (PDF)" id="docs-pdf">
        {summary || immunizations ? (
          <>
            {summary && (
              <PdfButton
                url={`Patient/${p}/$summary`}
                filename="patient-summary.pdf"
                label="Download your patient summary (PDF)"
              />
            )}
            {immunizations && (
              <PdfButton
                url={`Patient/${p}/$immunization-record`}
                filename="immunization-record.pdf"
                label="Download your immunization record (PDF)"
              />
            )}
          </>
        ) : (
          <NotAvailable
            feature="Downloading your patient summary and immunization record as PDF"
            detail="Ask your clinic for a printed copy."
          />
        )}
      </Section>
      {visits && <VisitSummaries />}
      <Section title="Your documents" id="docs-list">
        <Show loaded={loaded} what="documents">
          {(list) =>
            list.length ? (
              <ul class="items">
                {list.map((d) => {
                  const href = inline(d);
                  const kind = conceptText(d.type, "Document");
                  return (
                    <li key={d.id}>
                      <strong>{kind}</strong> <span class="muted">{formatDate(d.date)}</span>{" "}
                      {href && (
                        <a href={href} download={`${kind} ${formatDate(d.date)}.txt`}>
                          Download {kind.toLowerCase()} of {formatDate(d.date)}
                        </a>
                      )}
                    </li>
                  );
                })}
              </ul>
            ) : (
              <Empty>No documents.</Empty>
            )
          }
        </Show>
      </Section>
      <Section title="Upload a document" id="docs-upload">
        <NotAvailable feature="Uploading documents" />
      </Section>
    </>
  );
}

function VisitSummaries() {
  const { client, patientId } = useSession();
  const p = encodeURIComponent(patientId);
  const visits = useLoad(`encounters:${patientId}`, () =>
    search(client, `Encounter?patient=${p}&_sort=-date&_count=50`),
  );
  return (
    <Section title="Visit summaries (PDF)" id="docs-visits">
      <Show loaded={visits} what="visits">
        {(list) =>
          list.length ? (
            <ul class="items">
              {list.slice(0, 10).map((e) => {
                const when = formatDate(e.period?.start);
                const what = conceptsText(e.type) || "Visit";
                return (
                  <li key={e.id}>
                    <strong>{when}</strong> {what}
                    <PdfButton
                      url={`Encounter/${encodeURIComponent(e.id)}/$visit-summary`}
                      filename={`visit-summary-${e.period?.start?.slice(0, 10) || e.id}.pdf`}
                      label={`Download the summary of the visit of ${when} (PDF)`}
                    />
                  </li>
                );
              })}
            </ul>
          ) : (
            <Empty>No visits yet.</Empty>
          )
        }
      </Show>
    </Section>
  );
}
