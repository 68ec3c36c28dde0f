// Settings: notification preferences and connected apps (no server API for them yet:
// each says so), and who accessed the record: the server's AuditEvents about this
// patient (AuditEvent?patient=…, the IHE Basic Audit Log Patterns), when it keeps them.
import { search, useLoad, useSession } from "../data";
import { formatDate, type Json } from "../fhir";
import { Empty, NotAvailable, Section, Show } from "../ui";

const ACTIONS: Record<string, string> = {
  C: "added",
  R: "viewed",
  U: "changed",
  D: "deleted",
  E: "looked up",
};
const CLIENT_ROLE = "110153";

export function Settings() {
  return (
    <>
      <Section title="Who accessed my record" id="settings-audit">
        <AccessLog />
      </Section>
      <Section title="Notifications" id="settings-notifications">
        <NotAvailable feature="Choosing email and text message notifications" />
      </Section>
      <Section title="Connected apps" id="settings-apps">
        <NotAvailable feature="Seeing and disconnecting the apps that have access to your record" />
      </Section>
    </>
  );
}

/** "Charles Ramirez, with Patient portal" */
function who(event: Json): string {
  const agents: Json[] = event.agent || [];
  const isClient = (a: Json) => (a.type?.coding || []).some((c: Json) => c.code === CLIENT_ROLE);
  const person = agents.find((a) => a.requestor && !isClient(a) && a.who?.display);
  const app = agents.find(isClient);
  const parts = [person?.who?.display, app?.who?.display && `with ${app.who.display}`];
  return parts.filter(Boolean).join(", ") || "The server";
}

const KINDS: Record<string, string> = {
  Patient: "your details",
  Observation: "results",
  DiagnosticReport: "reports",
  Condition: "problems",
  AllergyIntolerance: "allergies",
  Immunization: "immunizations",
  MedicationRequest: "medications",
  Encounter: "visits",
  DocumentReference: "documents",
  Binary: "documents",
  Communication: "messages",
  Appointment: "appointments",
  Invoice: "bills",
  Coverage: "insurance",
  CarePlan: "care plans",
  AuditEvent: "this record of access",
  Practitioner: "care team",
  PractitionerRole: "care team",
  Organization: "organizations",
  Medication: "medications",
};

/** The kinds of data an event touched, in words: "results", "your details". */
function what(event: Json): string {
  const kinds = new Set<string>();
  for (const entity of event.entity || []) {
    const ref = String(entity.what?.reference || "");
    const role = (entity.role?.coding || []).map((c: Json) => c.code);
    if (ref && !role.includes("1")) kinds.add(ref.split("/")[0]);
    else if (role.includes("24") && entity.description) {
      const match = /\/fhir\/([A-Z][A-Za-z]+)/.exec(entity.description) || /^\w+ ([A-Z][A-Za-z]+)/.exec(entity.description);
      if (match) kinds.add(match[1]);
    }
  }
  if (kinds.size > 1) kinds.delete("Patient"); // a search of the patient's data names them too
  const words = [...new Set([...kinds].map((k) => KINDS[k] || k))];
  return words.join(", ") || "your record";
}

function AccessLog() {
  const { client, patientId } = useSession();
  const loaded = useLoad(`audit:${patientId}`, () =>
    search(client, `AuditEvent?patient=Patient/${encodeURIComponent(patientId)}&_sort=-date&_count=50`, 1),
  );
  if (loaded.error !== undefined) {
    return <NotAvailable feature="The record of who accessed your health record" />;
  }
  return (
    <Show loaded={loaded} what="the record of access">
      {(list) =>
        list.length ? (
          <ul class="items">
            {list.map((e: Json) => (
              <li key={e.id}>
                <strong>{formatDate(e.recorded, true)}</strong> {who(e)}{" "}
                {ACTIONS[e.action] || "used"} {what(e)}
                {e.outcome && e.outcome !== "0" ? " (refused)" : ""}
              </li>
            ))}
          </ul>
        ) : (
          <Empty>This server has recorded no access to your record.</Empty>
        )
      }
    </Show>
  );
}
