// Medications: the current list, by the documented query of the server
// (MedicationRequest?patient=…&status=active&_include=MedicationRequest:medication).
import { search, useLoad, useSession } from "../data";
import { conceptText, formatDate, formatQuantity, humanName, referenceText, type Json } from "../fhir";
import { Empty, NotAvailable, Section, Show } from "../ui";

export function Medications() {
  const { client, patientId } = useSession();
  const p = encodeURIComponent(patientId);
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
                  <MedicationItem key={m.id} request={m} byRef={byRef} />
                ))}
              </ul>
            );
          }}
        </Show>
      </Section>
      <Section title="Refill requests" id="meds-refills">
        <NotAvailable
          feature="Requesting a refill online"
          detail="Ask your pharmacy or phone your care team for a refill."
        />
      </Section>
    </>
  );
}

function MedicationItem({ request, byRef }: { request: Json; byRef: Map<string, Json> }) {
  const medication = request.medicationReference ? byRef.get(request.medicationReference.reference) : undefined;
  const name =
    conceptText(request.medicationCodeableConcept) ||
    conceptText(medication?.code) ||
    referenceText(request.medicationReference) ||
    "Medication";
  const prescriber = request.requester ? byRef.get(request.requester.reference) : undefined;
  const dosage = (request.dosageInstruction || []).map((d: Json) => d.text).filter(Boolean);
  const dispense = request.dispenseRequest || {};
  return (
    <li>
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
    </li>
  );
}
