// Health record: problems (with education links), allergies, immunizations, medications,
// visits with their diagnoses and notes, care plans.
import { search, useLoad, useSession } from "../data";
import {
  conceptText,
  conceptsText,
  formatDate,
  referenceText,
  whenOf,
  newestFirst,
  type Json,
} from "../fhir";
import { Empty, Section, Show } from "../ui";

const SNOMED = "http://snomed.info/sct";

/** MedlinePlus Connect (the U.S. National Library of Medicine's service for patient
 * education by code): a link the person follows, nothing fetched by the portal. */
function educationLink(condition: Json): string | undefined {
  const coding = (condition.code?.coding || []).find((c: Json) => c.system === SNOMED && c.code);
  if (!coding) return undefined;
  const query = new URLSearchParams({
    "mainSearchCriteria.v.cs": "2.16.840.1.113883.6.96",
    "mainSearchCriteria.v.c": coding.code,
    "mainSearchCriteria.v.dn": conceptText(condition.code),
    "informationRecipient.languageCode.c": "en",
  });
  return `https://connect.medlineplus.gov/application?${query}`;
}

function useSearch(name: string, query: string) {
  const { client, patientId } = useSession();
  const p = encodeURIComponent(patientId);
  return useLoad(`${name}:${patientId}`, () => search(client, query.replace("{p}", p)));
}

export function HealthRecord() {
  const conditions = useSearch("conditions", "Condition?patient={p}&_count=100");
  const allergies = useSearch("allergies", "AllergyIntolerance?patient={p}&_count=100");
  const immunizations = useSearch("immunizations", "Immunization?patient={p}&_sort=-date&_count=100");
  const medications = useSearch("medication-history", "MedicationRequest?patient={p}&_sort=-authoredon&_count=100");
  const encounters = useSearch("encounters", "Encounter?patient={p}&_sort=-date&_count=50");
  const notes = useSearch("documents", "DocumentReference?patient={p}&_sort=-date&_count=100");
  const carePlans = useSearch("careplans", "CarePlan?patient={p}&_count=50");
  return (
    <div class="grid">
      <Section title="Problems" id="record-problems">
        <Show loaded={conditions} what="problems">
          {(list) =>
            list.length ? (
              <ul class="items">
                {newestFirst(list).map((c) => {
                  const link = educationLink(c);
                  return (
                    <li key={c.id}>
                      <strong>{conceptText(c.code, "Unnamed problem")}</strong>{" "}
                      <span class="muted">
                        {conceptText(c.clinicalStatus)}
                        {whenOf(c) ? `, since ${formatDate(whenOf(c))}` : ""}
                      </span>
                      {link && (
                        <>
                          {" "}
                          <a href={link} target="_blank" rel="noopener noreferrer">
                            Learn about {conceptText(c.code)} (MedlinePlus, opens a new tab)
                          </a>
                        </>
                      )}
                    </li>
                  );
                })}
              </ul>
            ) : (
              <Empty>No problems recorded.</Empty>
            )
          }
        </Show>
      </Section>
      <Section title="Allergies" id="record-allergies">
        <Show loaded={allergies} what="allergies">
          {(list) =>
            list.length ? (
              <ul class="items">
                {list.map((a) => (
                  <li key={a.id}>
                    <strong>{conceptText(a.code, "Unnamed allergy")}</strong>{" "}
                    <span class="muted">
                      {[conceptText(a.clinicalStatus), a.criticality && `${a.criticality} criticality`]
                        .filter(Boolean)
                        .join(", ")}
                    </span>
                    {(a.reaction || []).map((r: Json, i: number) => (
                      <div key={i} class="muted">
                        Reaction: {conceptsText(r.manifestation)}
                        {r.severity ? ` (${r.severity})` : ""}
                      </div>
                    ))}
                  </li>
                ))}
              </ul>
            ) : (
              <Empty>No known allergies recorded.</Empty>
            )
          }
        </Show>
      </Section>
      <Section title="Immunizations" id="record-immunizations">
        <Show loaded={immunizations} what="immunizations">
          {(list) =>
            list.length ? (
              <ul class="items">
                {newestFirst(list).map((i) => (
                  <li key={i.id}>
                    <strong>{conceptText(i.vaccineCode, "Vaccine")}</strong>{" "}
                    <span class="muted">{formatDate(whenOf(i))}</span>
                  </li>
                ))}
              </ul>
            ) : (
              <Empty>No immunizations recorded.</Empty>
            )
          }
        </Show>
      </Section>
      <Section title="Medications" id="record-medications">
        <Show loaded={medications} what="medications">
          {(list) =>
            list.length ? (
              <ul class="items">
                {list.map((m) => (
                  <li key={m.id}>
                    <strong>{conceptText(m.medicationCodeableConcept) || referenceText(m.medicationReference)}</strong>{" "}
                    <span class="muted">
                      {m.status}, prescribed {formatDate(m.authoredOn)}
                    </span>
                  </li>
                ))}
              </ul>
            ) : (
              <Empty>No medications recorded.</Empty>
            )
          }
        </Show>
        <a href="#/medications">Current medications</a>
      </Section>
      <Section title="Visits" id="record-visits">
        <Show loaded={encounters} what="visits">
          {(list) =>
            list.length ? (
              <ul class="items">
                {list.map((e) => (
                  <Visit key={e.id} encounter={e} notes={notes.data || []} />
                ))}
              </ul>
            ) : (
              <Empty>No visits recorded.</Empty>
            )
          }
        </Show>
      </Section>
      <Section title="Care plans" id="record-careplans">
        <Show loaded={carePlans} what="care plans">
          {(list) =>
            list.length ? (
              <ul class="items">
                {list.map((c) => (
                  <li key={c.id}>
                    <strong>{c.title || conceptsText(c.category, "Care plan")}</strong>{" "}
                    <span class="muted">
                      {c.status}
                      {c.period?.start ? `, from ${formatDate(c.period.start)}` : ""}
                    </span>
                    {c.description && <div>{c.description}</div>}
                  </li>
                ))}
              </ul>
            ) : (
              <Empty>No care plans.</Empty>
            )
          }
        </Show>
      </Section>
    </div>
  );
}

function Visit({ encounter, notes }: { encounter: Json; notes: Json[] }) {
  const ref = `Encounter/${encounter.id}`;
  const own = notes.filter((n) => (n.context?.encounter || []).some((e: Json) => e.reference === ref));
  const diagnoses = (encounter.diagnosis || []).map((d: Json) => referenceText(d.condition)).filter(Boolean);
  const reasons = (encounter.reasonCode || []).map((r: Json) => conceptText(r)).filter(Boolean);
  return (
    <li>
      <strong>{formatDate(encounter.period?.start)}</strong>{" "}
      {conceptsText(encounter.type) || encounter.class?.display || "Visit"}
      {reasons.length > 0 && <div class="muted">Reason: {reasons.join(", ")}</div>}
      {diagnoses.length > 0 && <div class="muted">Diagnoses: {diagnoses.join(", ")}</div>}
      {own.map((n) => (
        <details key={n.id}>
          <summary>{conceptText(n.type, "Visit note")}</summary>
          <p class="note">{noteText(n)}</p>
        </details>
      ))}
    </li>
  );
}

/** The text of a note whose attachment is inline plain text. */
export function noteText(document: Json): string {
  const attachment = document.content?.[0]?.attachment;
  if (!attachment?.data || !String(attachment.contentType || "").startsWith("text/plain")) {
    return document.description || "This note is not plain text: download it from Documents.";
  }
  try {
    const bytes = Uint8Array.from(atob(attachment.data), (c) => c.charCodeAt(0));
    return new TextDecoder().decode(bytes);
  } catch {
    return "This note could not be read.";
  }
}
