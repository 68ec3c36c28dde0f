// Documents: the patient's DocumentReferences (visit notes...) to read or download;
// generated PDFs (patient summary, immunization record, visit summary) and uploads need
// the server's operations, when it has them.
import { search, useLoad, useSession } from "../data";
import { conceptText, formatDate, type Json } from "../fhir";
import { Empty, NotAvailable, Section, Show } from "../ui";

function download(document: Json): string | undefined {
  const attachment = document.content?.[0]?.attachment;
  if (!attachment?.data) return undefined;
  return `data:${attachment.contentType || "application/octet-stream"};base64,${attachment.data}`;
}

export function Documents() {
  const { client, patientId, capabilities } = useSession();
  const p = encodeURIComponent(patientId);
  const loaded = useLoad(`documents:${patientId}`, () =>
    search(client, `DocumentReference?patient=${p}&_sort=-date&_count=100`),
  );
  const summary = capabilities.operation("Patient", "summary");
  return (
    <>
      <Section title="Your documents" id="docs-list">
        <Show loaded={loaded} what="documents">
          {(list) =>
            list.length ? (
              <ul class="items">
                {list.map((d) => {
                  const href = download(d);
                  const name = `${conceptText(d.type, "Document")} ${formatDate(d.date)}`;
                  return (
                    <li key={d.id}>
                      <strong>{conceptText(d.type, "Document")}</strong>{" "}
                      <span class="muted">{formatDate(d.date)}</span>{" "}
                      {href && (
                        <a href={href} download={`${name}.txt`}>
                          Download {conceptText(d.type, "document").toLowerCase()} of {formatDate(d.date)}
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
      <Section title="Summaries to download (PDF)" id="docs-pdf">
        {summary ? (
          <p>This server offers document summaries; the portal's download screen is coming in its next version.</p>
        ) : (
          <NotAvailable
            feature="Downloading your patient summary, immunization record and visit summaries as PDF"
            detail="Ask your clinic for a printed copy."
          />
        )}
      </Section>
      <Section title="Upload a document" id="docs-upload">
        <NotAvailable feature="Uploading documents" />
      </Section>
    </>
  );
}
