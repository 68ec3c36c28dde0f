// Appointments: upcoming and past (Appointment search), and, when the server lists the
// Argonaut Scheduling operations Appointment/$find and $book, finding a free time
// (by practitioner and dates), booking it and cancelling an upcoming appointment (an
// update to status cancelled, with a reason: the server frees its slots). A virtual
// visit shows its join link (R5 Appointment.virtualService as the cross-version
// extension).
import { useState } from "preact/hooks";
import { problemText, search, useLoad, useSession } from "../data";
import { conceptText, entriesOf, formatDate, humanName, referenceText, type Json } from "../fhir";
import { Empty, NotAvailable, Section, Show } from "../ui";

const VIRTUAL_SERVICE = "http://hl7.org/fhir/5.0/StructureDefinition/extension-Appointment.virtualService";

function dateInput(days = 0): string {
  const d = new Date(Date.now() + days * 86400_000);
  return `${d.getFullYear()}-${String(d.getMonth() + 1).padStart(2, "0")}-${String(d.getDate()).padStart(2, "0")}`;
}

/** The join link of a virtual appointment, if it has one. */
function joinLink(appointment: Json): string | undefined {
  const found: string[] = [];
  const walk = (ext: Json) => {
    for (const [key, value] of Object.entries(ext)) {
      if (key === "valueUrl" || (key === "valueString" && /^https:\/\//.test(String(value)))) found.push(String(value));
      if (key === "extension") (value as Json[]).forEach(walk);
    }
  };
  (appointment.extension || []).filter((e: Json) => e.url === VIRTUAL_SERVICE).forEach(walk);
  return found.find((u) => /^https:\/\//.test(u));
}

export function Appointments() {
  const { client, patientId, capabilities } = useSession();
  const p = encodeURIComponent(patientId);
  const [version, setVersion] = useState(0); // booked or cancelled: load them again
  const [notice, setNotice] = useState<string | undefined>();
  const loaded = useLoad(`appointments:${patientId}:${version}`, () =>
    search(client, `Appointment?patient=${p}&_sort=-date&_count=100&_include=Appointment:actor`),
  );
  const booking = capabilities.operation("Appointment", "find") && capabilities.operation("Appointment", "book");
  const changed = (text: string) => {
    setNotice(text);
    setVersion((v) => v + 1);
  };
  const now = Date.now();
  return (
    <>
      {notice && (
        <p class="notice" role="status">
          {notice}
        </p>
      )}
      <Show loaded={loaded} what="appointments">
        {(found) => {
          const names = new Map(
            found
              .filter((r) => r.resourceType !== "Appointment")
              .map((r) => [`${r.resourceType}/${r.id}`, r.resourceType === "Location" ? r.name : humanName(r.name)]),
          );
          const list = found.filter((r) => r.resourceType === "Appointment");
          const upcoming = list
            .filter((a) => Date.parse(a.start || "") >= now && a.status !== "cancelled")
            .sort((a, b) => Date.parse(a.start) - Date.parse(b.start));
          const past = list.filter((a) => !upcoming.includes(a));
          return (
            <>
              <Section title="Upcoming" id="appts-upcoming">
                {upcoming.length ? (
                  <AppointmentList list={upcoming} names={names} cancel={booking} onChange={changed} />
                ) : (
                  <Empty>No upcoming appointments.</Empty>
                )}
              </Section>
              <Section title="Past" id="appts-past">
                {past.length ? <AppointmentList list={past} names={names} /> : <Empty>No past appointments.</Empty>}
              </Section>
            </>
          );
        }}
      </Show>
      <Section title="Book an appointment" id="appts-book">
        {booking ? (
          <FindAndBook onBooked={changed} />
        ) : (
          <NotAvailable feature="Booking online" detail="Phone your clinic to book, move or cancel a visit." />
        )}
      </Section>
    </>
  );
}

function who(appointment: Json, names: Map<string, string>): string[] {
  return (appointment.participant || [])
    .map((x: Json) => x.actor)
    .filter((actor: Json | undefined) => actor && !String(actor.reference || "").startsWith("Patient/"))
    .map((actor: Json) => actor.display || names.get(actor.reference) || "")
    .filter(Boolean);
}

const STATUS: Record<string, string> = {
  booked: "Booked",
  pending: "Waiting for the clinic to confirm",
  proposed: "Proposed",
  fulfilled: "Done",
  cancelled: "Cancelled",
  noshow: "Missed",
  arrived: "Arrived",
  "checked-in": "Checked in",
};

function AppointmentList({
  list,
  names,
  cancel,
  onChange,
}: {
  list: Json[];
  names: Map<string, string>;
  cancel?: boolean;
  onChange?: (text: string) => void;
}) {
  return (
    <ul class="items">
      {list.map((a) => {
        const join = joinLink(a);
        return (
          <li key={a.id}>
            <strong>{formatDate(a.start, true)}</strong> {conceptText(a.serviceType?.[0]) || a.description || "Visit"}
            <div class="muted">{[STATUS[a.status] || a.status, ...who(a, names)].filter(Boolean).join(" · ")}</div>
            {join && (
              <a href={join} target="_blank" rel="noopener noreferrer">
                Join the video visit (opens a new tab)
              </a>
            )}
            {cancel && onChange && (a.status === "booked" || a.status === "pending") && (
              <CancelButton appointment={a} onCancelled={onChange} />
            )}
          </li>
        );
      })}
    </ul>
  );
}

function CancelButton({ appointment, onCancelled }: { appointment: Json; onCancelled: (text: string) => void }) {
  const { client } = useSession();
  const [state, setState] = useState<{ busy?: boolean; problem?: string }>({});
  const when = formatDate(appointment.start, true);
  const cancel = async () => {
    if (!confirm(`Cancel the appointment of ${when}?`)) return;
    setState({ busy: true });
    try {
      await client.update({
        ...appointment,
        status: "cancelled",
        cancelationReason: { text: "Cancelled by the patient in the portal" },
      } as any);
      onCancelled(`The appointment of ${when} is cancelled.`);
    } catch (error) {
      setState({ problem: problemText(error) });
    }
  };
  return (
    <>
      <button type="button" class="secondary" onClick={cancel} disabled={state.busy}>
        {state.busy ? "Cancelling…" : `Cancel the appointment of ${when}`}
      </button>
      {state.problem && (
        <p class="problem" role="alert">
          Could not cancel: {state.problem}.
        </p>
      )}
    </>
  );
}

/** Free times from Appointment/$find, each bookable with Appointment/$book. */
function FindAndBook({ onBooked }: { onBooked: (text: string) => void }) {
  const { client, patientId } = useSession();
  const practitioners = useLoad("directory:practitioners", () => search(client, "Practitioner?_count=100", 1));
  const [found, setFound] = useState<{ busy?: boolean; list?: Json[]; problem?: string }>({});
  const [booking, setBooking] = useState<string | undefined>();
  const names = new Map((practitioners.data || []).map((r) => [`Practitioner/${r.id}`, humanName(r.name)]));
  const find = async (event: Event) => {
    event.preventDefault();
    const form = event.target as HTMLFormElement;
    const value = (name: string) => (form.elements.namedItem(name) as HTMLInputElement).value;
    const from = value("from");
    const to = value("to");
    if (!from || !to || to < from) return setFound({ problem: "choose a first and a last day" });
    const end = new Date(Date.parse(`${to}T00:00:00`) + 86400_000);
    const params = new URLSearchParams({
      start: from,
      end: dateOf(end),
      patient: `Patient/${patientId}`,
      _count: "20",
    });
    if (value("practitioner")) params.set("practitioner", value("practitioner"));
    setFound({ busy: true });
    try {
      const bundle = (await client.request(`Appointment/$find?${params}`)) as Json;
      setFound({ list: entriesOf(bundle, "Appointment") });
    } catch (error) {
      setFound({ problem: problemText(error) });
    }
  };
  const book = async (proposal: Json) => {
    setBooking(proposal.slot?.[0]?.reference || proposal.start);
    try {
      await client.request({
        url: "Appointment/$book",
        method: "POST",
        headers: { "content-type": "application/fhir+json" },
        body: JSON.stringify({
          resourceType: "Parameters",
          parameter: [{ name: "appt-resource", resource: proposal }],
        }),
      });
      setFound({});
      onBooked(`Booked: ${formatDate(proposal.start, true)}${who(proposal, names).length ? ` with ${who(proposal, names).join(", ")}` : ""}.`);
    } catch (error) {
      setFound({ ...found, problem: problemText(error) });
    } finally {
      setBooking(undefined);
    }
  };
  return (
    <>
      <form onSubmit={find} class="stack">
        <label for="book-practitioner">With</label>
        <select id="book-practitioner" name="practitioner">
          <option value="">Anyone</option>
          {(practitioners.data || []).map((r) => (
            <option key={r.id} value={`Practitioner/${r.id}`}>
              {humanName(r.name) || referenceText({ reference: `Practitioner/${r.id}` })}
            </option>
          ))}
        </select>
        <label for="book-from">From</label>
        <input id="book-from" name="from" type="date" defaultValue={dateInput(0)} />
        <label for="book-to">To</label>
        <input id="book-to" name="to" type="date" defaultValue={dateInput(14)} />
        <button type="submit" class="primary" disabled={found.busy}>
          {found.busy ? "Looking…" : "Find free times"}
        </button>
      </form>
      {found.problem && (
        <p class="problem" role="alert">
          {found.problem}
        </p>
      )}
      {found.list &&
        (found.list.length ? (
          <ul class="items" aria-label="Free times">
            {found.list.map((proposal) => {
              const key = proposal.slot?.[0]?.reference || proposal.start;
              const when = formatDate(proposal.start, true);
              const with_ = who(proposal, names).join(", ");
              return (
                <li key={key}>
                  <strong>{when}</strong> {with_} {conceptText(proposal.serviceType?.[0])}
                  <div>
                    <button type="button" class="secondary" disabled={!!booking} onClick={() => book(proposal)}>
                      {booking === key ? "Booking…" : `Book ${when}`}
                    </button>
                  </div>
                </li>
              );
            })}
          </ul>
        ) : (
          <Empty>No free times in these days: try other days or anyone.</Empty>
        ))}
    </>
  );
}

function dateOf(d: Date): string {
  return `${d.getFullYear()}-${String(d.getMonth() + 1).padStart(2, "0")}-${String(d.getDate()).padStart(2, "0")}`;
}
