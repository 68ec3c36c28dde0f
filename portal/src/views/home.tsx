// Home: what is new or next for the patient, each from a FHIR search of their record.
import { useEffect } from "preact/hooks";
import { search, useLoad, useSession } from "../data";
import {
  conceptText,
  formatDate,
  formatMoney,
  humanName,
  whenOf,
  type Json,
} from "../fhir";
import { Empty, Section, Show } from "../ui";
import { observationValue } from "./results";
import { unreadOf } from "./messages";

function today(): string {
  const d = new Date();
  return `${d.getFullYear()}-${String(d.getMonth() + 1).padStart(2, "0")}-${String(d.getDate()).padStart(2, "0")}`;
}

export function Home() {
  const { client, patientId, fhirUser } = useSession();
  const p = encodeURIComponent(patientId);
  const patient = useLoad(`patient:${patientId}`, () => client.patient.read());
  const appointments = useLoad(`home-appts:${patientId}`, () =>
    search(client, `Appointment?patient=${p}&date=ge${today()}&status=booked,pending,proposed&_sort=date&_count=3`, 1),
  );
  const results = useLoad(`home-results:${patientId}`, () =>
    search(client, `Observation?patient=${p}&category=laboratory&_sort=-date&_count=5`, 1),
  );
  const meds = useLoad(`meds:${patientId}`, () =>
    search(client, `MedicationRequest?patient=${p}&status=active&_include=MedicationRequest:medication&_include=MedicationRequest:requester`),
  );
  const bills = useLoad(`home-bills:${patientId}`, () =>
    search(client, `Invoice?patient=${p}&status=issued&_sort=-date&_count=5`, 1),
  );
  const messages = useLoad(`messages:${patientId}`, () =>
    search(client, `Communication?patient=${p}&_sort=-sent&_count=100&_include=Communication:sender`, 2),
  );
  const refills = useLoad(`home-refills:${patientId}`, () =>
    search(
      client,
      `Task?patient=${p}&code=${encodeURIComponent("http://hl7.org/fhir/CodeSystem/task-code|fulfill")}&status=requested,received,accepted,in-progress,ready,on-hold&_count=10`,
      1,
    ),
  );
  const settled = [appointments, results, meds, bills, messages].every((l) => !l.loading);
  useEffect(() => {
    if (settled) performance.mark("portal-home-ready");
  }, [settled]);
  const name = patient.data ? humanName((patient.data as Json).name) : "";
  return (
    <div class="grid">
      {name && <p class="lead">Hello, {name.split(" ")[0]}. Here is what is new in your record.</p>}
      <Section title="Next appointments" id="home-appointments">
        <Show loaded={appointments} what="appointments">
          {(list) =>
            list.length ? (
              <ul class="plain">
                {list.map((a) => (
                  <li key={a.id}>
                    <strong>{formatDate(a.start, true)}</strong> {conceptText(a.serviceType?.[0]) || a.description}
                  </li>
                ))}
              </ul>
            ) : (
              <Empty>No upcoming appointments.</Empty>
            )
          }
        </Show>
        <a href="#/appointments">All appointments</a>
      </Section>
      <Section title="Messages" id="home-messages">
        <Show loaded={messages} what="messages">
          {(list) => {
            const unread = unreadOf(list, patientId, fhirUser);
            return unread.length ? (
              <p data-testid="unread-count">
                <strong>{unread.length}</strong> unread {unread.length === 1 ? "message" : "messages"}
              </p>
            ) : (
              <Empty>No unread messages.</Empty>
            );
          }}
        </Show>
        <a href="#/messages">Messages</a>
      </Section>
      <Section title="New results" id="home-results">
        <Show loaded={results} what="results">
          {(list) =>
            list.length ? (
              <ul class="plain">
                {list.map((o) => (
                  <li key={o.id}>
                    {conceptText(o.code)}: <strong>{observationValue(o)}</strong>{" "}
                    <span class="muted">{formatDate(whenOf(o))}</span>
                  </li>
                ))}
              </ul>
            ) : (
              <Empty>No lab results yet.</Empty>
            )
          }
        </Show>
        <a href="#/results">All results</a>
      </Section>
      <Section title="Medications" id="home-medications">
        <Show loaded={meds} what="medications">
          {(list) => {
            const active = list.filter((r) => r.resourceType === "MedicationRequest");
            return active.length ? (
              <p>
                <strong>{active.length}</strong> current {active.length === 1 ? "medication" : "medications"}
              </p>
            ) : (
              <Empty>No current medications.</Empty>
            );
          }}
        </Show>
        <a href="#/medications">Medications</a>
      </Section>
      <Section title="Refill requests" id="home-refills">
        <Show loaded={refills} what="refill requests">
          {(list) =>
            list.length ? (
              <ul class="plain">
                {list.map((t) => (
                  <li key={t.id}>
                    {t.description || "Refill"}: <strong>{t.status === "requested" ? "requested" : "being prepared"}</strong>
                  </li>
                ))}
              </ul>
            ) : (
              <Empty>No refill requests waiting.</Empty>
            )
          }
        </Show>
        <a href="#/medications">Medications and refills</a>
      </Section>
      <Section title="Open bills" id="home-bills">
        <Show loaded={bills} what="bills">
          {(list) =>
            list.length ? (
              <ul class="plain">
                {list.map((i) => (
                  <li key={i.id}>
                    {formatDate(i.date)}: <strong>{formatMoney(i.totalGross || i.totalNet)}</strong>
                  </li>
                ))}
              </ul>
            ) : (
              <Empty>No open bills.</Empty>
            )
          }
        </Show>
        <a href="#/billing">Billing</a>
      </Section>
    </div>
  );
}
