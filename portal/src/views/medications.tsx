// Medications: the current list, by the documented query of the server
// (MedicationRequest?patient=…&status=active&_include=MedicationRequest:medication), and
// refill requests as the server models them: a Task (intent order, code
// task-code|fulfill, focus the MedicationRequest, for the patient) whose status staff
// move on (requested -> accepted -> completed with the new prescription, or rejected).
import type { ComponentChildren } from "preact";
import { useState } from "preact/hooks";
import { refusalText, search, statusOf, useLoad, useSession } from "../data";
import { conceptText, formatDate, formatQuantity, humanName, referenceText, type Json } from "../fhir";
import { Empty, NotAvailable, Section, Show } from "../ui";

const FULFILL = "http://hl7.org/fhir/CodeSystem/task-code|fulfill";
const OPEN = ["draft", "requested", "received", "accepted", "ready", "in-progress", "on-hold"];
const TASK_STATUS: Record<string, string> = {
  requested: "Requested",
  received: "Received",
  accepted: "Accepted: being prepared",
  "in-progress": "Being prepared",
  ready: "Ready",
  "on-hold": "On hold",
  completed: "Done: a new prescription was made",
  rejected: "Refused",
  cancelled: "Cancelled",
  failed: "Could not be done",
};

export function Medications() {
  const { client, patientId, capabilities } = useSession();
  const p = encodeURIComponent(patientId);
  const [version, setVersion] = useState(0); // a refill requested: load the requests again
  const refills = useLoad(`refills:${patientId}:${version}`, () =>
    search(client, `Task?patient=${p}&code=${encodeURIComponent(FULFILL)}&_sort=-_lastUpdated&_count=50`, 1),
  );
  const canRequest = capabilities.interaction("Task", "create");
  const loaded = useLoad(`meds:${patientId}`, () =>
    search(
      client,
      `MedicationRequest?patient=${p}&status=active&_include=MedicationRequest:medication&_include=MedicationRequest:requester`,
    ),
  );
  return (
    <>
      <Section title="Current medications" id="meds-current">
        <Show loaded={loaded} what="medications">
          {(all) => {
            const byRef = new Map(all.map((r) => [`${r.resourceType}/${r.id}`, r]));
            const requests = all.filter((r) => r.resourceType === "MedicationRequest");
            if (!requests.length) return <Empty>No current medications.</Empty>;
            return (
              <ul class="items">
                {requests.map((m) => (
                  <MedicationItem key={m.id} request={m} byRef={byRef}>
                    {canRequest && !refills.loading && (
                      <RefillButton
                        request={m}
                        name={medicationName(m, byRef)}
                        open={openRefill(refills.data || [], m)} onDone={() => setVersion((v) => v + 1)} />
                    )}
                  </MedicationItem>
                ))}
              </ul>
            );
          }}
        </Show>
      </Section>
      <Section title="Refill requests" id="meds-refills">
        {canRequest ? (
          <Show loaded={refills} what="refill requests">
            {(tasks) =>
              tasks.length ? (
                <ul class="items">
                  {tasks.map((t) => (
                    <li key={t.id}>
                      <strong>{t.description || "Refill"}</strong>{" "}
                      <span class="muted">asked {formatDate(t.authoredOn, true)}</span>
                      <div>
                        {TASK_STATUS[t.status] || t.status}
                        {t.statusReason ? `: ${conceptText(t.statusReason)}` : ""}
                      </div>
                    </li>
                  ))}
                </ul>
              ) : (
                <Empty>No refill requests.</Empty>
              )
            }
          </Show>
        ) : (
          <NotAvailable
            feature="Requesting a refill online"
            detail="Ask your pharmacy or phone your care team for a refill."
          />
        )}
      </Section>
    </>
  );
}

/** The open refill request of a prescription, if any. */
function openRefill(tasks: Json[], request: Json): Json | undefined {
  const ref = `MedicationRequest/${request.id}`;
  return tasks.find((t) => t.focus?.reference === ref && OPEN.includes(t.status));
}

function medicationName(request: Json, byRef?: Map<string, Json>): string {
  const medication = request.medicationReference ? byRef?.get(request.medicationReference.reference) : undefined;
  return (
    conceptText(request.medicationCodeableConcept) ||
    conceptText(medication?.code) ||
    referenceText(request.medicationReference) ||
    "Medication"
  );
}

function RefillButton({
  request,
  name,
  open,
  onDone,
}: {
  request: Json;
  name: string;
  open?: Json;
  onDone: () => void;
}) {
  const { client, patientId } = useSession();
  const [state, setState] = useState<{ busy?: boolean; problem?: string }>({});
  if (open) {
    return (
      <>
        {state.problem && (
          <p class="problem" role="alert">
            Could not request the refill: {state.problem}.
          </p>
        )}
        <p class="muted">A refill was requested: {TASK_STATUS[open.status] || open.status}.</p>
      </>
    );
  }
  const ask = async () => {
    setState({ busy: true });
    try {
      await client.create({
        resourceType: "Task",
        status: "requested",
        intent: "order",
        code: { coding: [{ system: "http://hl7.org/fhir/CodeSystem/task-code", code: "fulfill" }] },
        description: `Refill of ${name}`,
        focus: { reference: `MedicationRequest/${request.id}` },
        for: { reference: `Patient/${patientId}` },
        authoredOn: new Date().toISOString(),
      } as any);
      setState({});
      onDone();
    } catch (error) {
      const status = statusOf(error);
      setState({
        problem: refusalText(error, {
          409: "a refill of this medicine was already requested: its status is shown under Refill requests",
          422: (said) =>
            /no refills left|acute/i.test(said)
              ? "this prescription has no refills left: please ask your care team for a new prescription"
              : /not active/i.test(said)
                ? "this prescription is no longer current, so it cannot be refilled"
                : said || "this prescription cannot be refilled online",
          403: "you may ask refills only of your own prescriptions (or those of the patient you act for)",
          404: "this prescription was not found: reload the page",
        }),
      });
      if (status === 409) onDone(); // show the open request the server knows of
    }
  };
  return (
    <>
      <button type="button" class="secondary" onClick={ask} disabled={state.busy}>
        {state.busy ? "Asking…" : `Request a refill of ${name}`}
      </button>
      {state.problem && (
        <p class="problem" role="alert">
          Could not request the refill: {state.problem}.
        </p>
      )}
    </>
  );
}

function MedicationItem({
  request,
  byRef,
  children,
}: {
  request: Json;
  byRef: Map<string, Json>;
  children?: ComponentChildren;
}) {
  const name = medicationName(request, byRef);
  const prescriber = request.requester ? byRef.get(request.requester.reference) : undefined;
  const dosage = (request.dosageInstruction || []).map((d: Json) => d.text).filter(Boolean);
  const dispense = request.dispenseRequest || {};
  return (
    <li data-request={request.id}>
      <strong>{name}</strong>
      {dosage.length > 0 && <div>{dosage.join("; ")}</div>}
      <dl class="facts">
        <div>
          <dt>Prescribed</dt>
          <dd>{formatDate(request.authoredOn)}</dd>
        </div>
        {(prescriber || request.requester) && (
          <div>
            <dt>By</dt>
            <dd>{(prescriber && humanName(prescriber.name)) || referenceText(request.requester)}</dd>
          </div>
        )}
        {dispense.quantity && (
          <div>
            <dt>Quantity</dt>
            <dd>{formatQuantity(dispense.quantity)}</dd>
          </div>
        )}
        {dispense.numberOfRepeatsAllowed !== undefined && (
          <div>
            <dt>Refills</dt>
            <dd>{dispense.numberOfRepeatsAllowed}</dd>
          </div>
        )}
        {dispense.validityPeriod?.end && (
          <div>
            <dt>Valid until</dt>
            <dd>{formatDate(dispense.validityPeriod.end)}</dd>
          </div>
        )}
      </dl>
      {children}
    </li>
  );
}
