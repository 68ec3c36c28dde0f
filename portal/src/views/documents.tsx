// Documents: the patient's DocumentReferences (visit notes, uploads...) to download (the
// bytes inline, or a Binary fetched with the session's token), uploading one (a
// DocumentReference with the file inline: the server keeps the bytes in a Binary), and
// the PDFs the server generates when it offers them (found in its CapabilityStatement):
// patient summary (Patient/$summary), immunization record (Patient/$immunization-record),
// visit summary (Encounter/$visit-summary).
import { useState } from "preact/hooks";
import { refusalText, search, useLoad, useSession } from "../data";
import { conceptText, conceptsText, formatDate, type Json } from "../fhir";
import { DownloadButton, base64Of } from "../download";
import { Empty, NotAvailable, Section, Show } from "../ui";

function inline(document: Json): string | undefined {
  const attachment = document.content?.[0]?.attachment;
  if (!attachment?.data) return undefined;
  return `data:${attachment.contentType || "application/octet-stream"};base64,${attachment.data}`;
}

export function Documents() {
  const { client, patientId, capabilities } = useSession();
  const p = encodeURIComponent(patientId);
  const [version, setVersion] = useState(0); // a new upload: load the list again
  const loaded = useLoad(`documents:${patientId}:${version}`, () =>
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
              <DownloadButton
                url={`Patient/${p}/$summary`}
                filename="patient-summary.pdf"
                label="Download your patient summary (PDF)"
              />
            )}
            {immunizations && (
              <DownloadButton
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
                  const attachment = d.content?.[0]?.attachment || {};
                  const kind = d.description || conceptText(d.type, "Document");
                  const type = String(attachment.contentType || "application/octet-stream").split(";")[0];
                  const name = attachment.title || `${kind} ${formatDate(d.date)}${EXTENSIONS[type] || ""}`;
                  const label = `Download ${kind} of ${formatDate(d.date)}`;
                  return (
                    <li key={d.id}>
                      <strong>{kind}</strong> <span class="muted">{formatDate(d.date)}</span>{" "}
                      {href && (
                        <a href={href} download={name}>
                          {label}
                        </a>
                      )}
                      {!href && /^Binary\/[^/]+$/.test(attachment.url || "") && (
                        <DownloadButton url={attachment.url} filename={name} label={label} type={type} />
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
        {capabilities.interaction("DocumentReference", "create") ? (
          <Upload onUploaded={() => setVersion((v) => v + 1)} />
        ) : (
          <NotAvailable feature="Uploading documents" />
        )}
      </Section>
    </>
  );
}

const EXTENSIONS: Record<string, string> = {
  "application/pdf": ".pdf",
  "image/png": ".png",
  "image/jpeg": ".jpg",
  "image/heic": ".heic",
  "text/plain": ".txt",
};
const MAX_BYTES = 10 * 1024 * 1024;


/** Upload a file as a DocumentReference about the patient (the bytes inline; the server
 * checks the type and size and keeps them in a Binary). */
function Upload({ onUploaded }: { onUploaded: () => void }) {
  const { client, patientId } = useSession();
  const [state, setState] = useState<{ busy?: boolean; done?: string; problem?: string }>({});
  const submit = async (event: Event) => {
    event.preventDefault();
    const form = event.target as HTMLFormElement;
    const file = (form.elements.namedItem("file") as HTMLInputElement).files?.[0];
    const title = (form.elements.namedItem("title") as HTMLInputElement).value.trim();
    if (!file) return setState({ problem: "choose a file first" });
    const type = file.type || "application/octet-stream";
    if (!EXTENSIONS[type]) return setState({ problem: "the file must be a PDF, PNG, JPEG, HEIC or plain text file" });
    if (file.size > MAX_BYTES) return setState({ problem: "the file is larger than 10 MB" });
    setState({ busy: true });
    try {
      const document = {
        resourceType: "DocumentReference",
        status: "current",
        type: { text: "Document from the patient" },
        subject: { reference: `Patient/${patientId}` },
        date: new Date().toISOString(),
        description: title || file.name,
        content: [{ attachment: { contentType: type, data: await base64Of(file), title: file.name } }],
      };
      await client.create(document as any);
      form.reset();
      onUploaded();
      setState({ done: `${title || file.name} was uploaded.` });
    } catch (error) {
      setState({
        problem: refusalText(error, {
          413: "the file is too large (10 MB at most)",
          415: "this kind of file is not accepted: choose a PDF, PNG, JPEG, HEIC or plain text file",
          403: "you may add documents only to your own record (or that of the patient you act for)",
        }),
      });
    }
  };
  return (
    <form onSubmit={submit} class="upload">
      <p class="muted">PDF, PNG, JPEG, HEIC or plain text, up to 10 MB. Your care team can see it.</p>
      <label for="upload-file">File</label>
      <input id="upload-file" name="file" type="file" accept=".pdf,.png,.jpg,.jpeg,.heic,.txt,application/pdf,image/png,image/jpeg,image/heic,text/plain" />
      <label for="upload-title">What is it? (optional)</label>
      <input id="upload-title" name="title" type="text" maxLength={200} />
      <button type="submit" class="primary" disabled={state.busy}>
        {state.busy ? "Uploading…" : "Upload"}
      </button>
      <p role="status" class={state.problem ? "problem" : "notice-line"}>
        {state.problem ? `Could not upload: ${state.problem}.` : state.done || ""}
      </p>
    </form>
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
                    <DownloadButton
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
