// Appointments: upcoming and past (Appointment search), and, when the server lists the
// Argonaut Scheduling operations Appointment/$find and $book, finding a free time
// (by practitioner, kind of care, place and dates), booking it and cancelling an
// upcoming appointment (an update to status cancelled, with a reason: the server frees
// its slots). A virtual visit shows its join link (R5 Appointment.virtualService as the
// cross-version extension). Rescheduling is the server's recipe: one transaction Bundle that cancels
// the old appointment (with a cancelationReason) and books the new Slot, all or nothing.
// The server's refusals (a time taken meanwhile, the cancellation cutoff) are said in
// words.
import { useState } from "preact/hooks";
import { dropCached, refusalText, search, useLoad, useSession } from "../data";
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

const VR = "http://terminology.hl7.org/CodeSystem/v3-ActCode|VR";

/** Whether an appointment (or a proposal of $find) is a video visit. */
function isVirtual(a: Json): boolean {
  const concepts = [a.appointmentType, ...(a.serviceType || [])].filter(Boolean);
  return concepts.some((c: Json) => (c.coding || []).some((x: Json) => `${x.system}|${x.code}` === VR));
}

function kindOf(a: Json): string {
  const virtual = (c: Json) => (c.coding || []).some((x: Json) => `${x.system}|${x.code}` === VR);
  const other = conceptText((a.serviceType || []).find((c: Json) => !virtual(c)));
  if (!isVirtual(a)) return other || a.description || "Visit";
  return other ? `Video visit (${other})` : "Video visit";
}

/** "48h" -> "48 hours" (FHIR_SERVER_CANCEL_CUTOFF's durations). */
function duration(text: string): string {
  const match = /^(\d+(?:\.\d+)?)\s*([dhms])/i.exec(text.trim());
  if (!match) return text;
  const unit = { d: "day", h: "hour", m: "minute", s: "second" }[match[2].toLowerCase() as "d"];
  return `${match[1]} ${unit}${match[1] === "1" ? "" : "s"}`;
}

/** A refusal of booking, cancelling or moving an appointment, in words. */
export function changeProblem(error: any, what: "book" | "cancel" | "move"): string {
  return refusalText(error, {
    409: what === "cancel" ? "the appointment was changed meanwhile: reload the page and try again" : "That time was just taken, choose another",
    422: (said) => {
      const cutoff = /cutoff[^.;]*? is (\S+) before/i.exec(said);
      if (cutoff || /too late/i.test(said)) {
        const limit = cutoff ? ` (online changes close ${duration(cutoff[1])} before the start)` : "";
        return `it is too late to ${what === "cancel" ? "cancel" : "change"} this appointment online${limit}: please phone your clinic`;
      }
      if (/started or is past|only a future/i.test(said)) return "this appointment has started or is past: it cannot be changed online";
      if (/starts in the past/i.test(said)) return "that time has passed: choose another";
      if (what === "cancel") return said || "the server did not take the cancellation";
      return "that time cannot be booked online any more (it may have just been closed): choose another";
    },
    403: "you can book and change only your own appointments (or those of the patient you act for)",
    404: "this appointment or time was not found: reload the page",
  });
}

export function Appointments() {
  const { client, patientId, capabilities } = useSession();
  const p = encodeURIComponent(patientId);
  const [version, setVersion] = useState(0); // booked, moved or cancelled: load them again
  const [notice, setNotice] = useState<string | undefined>();
  const loaded = useLoad(`appointments:${patientId}:${version}`, () =>
    search(client, `Appointment?patient=${p}&_sort=-date&_count=100&_include=Appointment:actor`),
  );
  const booking = capabilities.operation("Appointment", "find") && capabilities.operation("Appointment", "book");
  const changed = (text: string) => {
    setNotice(text);
    setVersion((v) => v + 1);
    dropCached(`home-appts:${patientId}`);
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
                  <AppointmentList list={upcoming} names={names} change={booking} onChange={changed} />
                ) : (
                  <Empty>No upcoming appointments.</Empty>
                )}
              </Section>
              <Section title="Past and cancelled" id="appts-past">
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
  change,
  onChange,
}: {
  list: Json[];
  names: Map<string, string>;
  change?: boolean;
  onChange?: (text: string) => void;
}) {
  return (
    <ul class="items">
      {list.map((a) => {
        const join = a.status === "booked" ? joinLink(a) : undefined;
        const reason = a.status === "cancelled" ? conceptText(a.cancelationReason) : "";
        return (
          <li key={a.id} data-appointment={a.id}>
            <strong>{formatDate(a.start, true)}</strong> {kindOf(a)}
            <div class="muted">
              {[STATUS[a.status] || a.status, ...who(a, names)].filter(Boolean).join(" · ")}
              {reason ? ` (${reason})` : ""}
            </div>
            {join && (
              <div>
                <a href={join} target="_blank" rel="noopener noreferrer">
                  Join the video visit (opens a new tab)
                </a>
              </div>
            )}
            {change && onChange && (a.status === "booked" || a.status === "pending") && (
              <>
                <Reschedule appointment={a} names={names} onMoved={onChange} />
                <CancelButton appointment={a} onCancelled={onChange} />
              </>
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
      setState({ problem: changeProblem(error, "cancel") });
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

/** A free time of $find as a booked appointment (what $book makes of it). */
function asBooking(proposal: Json): Json {
  const { id: _id, meta: _meta, ...rest } = proposal;
  return {
    ...rest,
    status: "booked",
    participant: (proposal.participant || []).map((x: Json) => ({
      ...x,
      status: !x.status || x.status === "needs-action" ? "accepted" : x.status,
    })),
  };
}

/** Move an appointment: the README's recipe, one transaction (all or nothing). */
async function move(client: any, appointment: Json, proposal: Json): Promise<void> {
  const bundle = {
    resourceType: "Bundle",
    type: "transaction",
    entry: [
      {
        resource: {
          ...appointment,
          status: "cancelled",
          cancelationReason: { text: "Rescheduled by the patient in the portal" },
        },
        request: { method: "PUT", url: `Appointment/${appointment.id}` },
      },
      {
        resource: asBooking(proposal),
        request: { method: "POST", url: "Appointment" },
      },
    ],
  };
  await client.request({
    url: String(client.state.serverUrl).replace(/\/+$/, ""), // the transaction endpoint: the base
    method: "POST",
    headers: { "content-type": "application/fhir+json" },
    body: JSON.stringify(bundle),
  });
}

function Reschedule({
  appointment,
  names,
  onMoved,
}: {
  appointment: Json;
  names: Map<string, string>;
  onMoved: (text: string) => void;
}) {
  const { client } = useSession();
  const [open, setOpen] = useState(false);
  const when = formatDate(appointment.start, true);
  const practitioner = (appointment.participant || [])
    .map((x: Json) => x.actor?.reference || "")
    .find((r: string) => r.startsWith("Practitioner/"));
  const panel = `move-${appointment.id}`;
  const pick = async (proposal: Json) => {
    await move(client, appointment, proposal);
    setOpen(false);
    const to = formatDate(proposal.start, true);
    const with_ = who(proposal, names);
    onMoved(`Moved: your appointment is now ${to}${with_.length ? ` with ${with_.join(", ")}` : ""}. The one of ${when} is cancelled.`);
  };
  return (
    <>
      <button
        type="button"
        class="secondary"
        aria-expanded={open}
        aria-controls={panel}
        onClick={() => setOpen(!open)}
      >
        {`Reschedule the appointment of ${when}`}
      </button>
      {open && (
        <div id={panel} class="panel">
          <p class="muted">
            Choose a new time. Your appointment of {when} is cancelled only when the new one is booked.
          </p>
          <FreeTimes
            prefix={panel}
            practitioner={practitioner}
            exclude={(appointment.slot || []).map((s: Json) => s.reference)}
            search="Find other times"
            action="Move to"
            what="move"
            onPick={pick}
          />
        </div>
      )}
    </>
  );
}

/** Free times from Appointment/$find, each bookable with Appointment/$book. */
function FindAndBook({ onBooked }: { onBooked: (text: string) => void }) {
  const { client } = useSession();
  const pick = async (proposal: Json, names: Map<string, string>) => {
    await client.request({
      url: "Appointment/$book",
      method: "POST",
      headers: { "content-type": "application/fhir+json" },
      body: JSON.stringify({
        resourceType: "Parameters",
        parameter: [{ name: "appt-resource", resource: proposal }],
      }),
    });
    const with_ = who(proposal, names);
    onBooked(`Booked: ${formatDate(proposal.start, true)}${with_.length ? ` with ${with_.join(", ")}` : ""}.`);
  };
  return <FreeTimes prefix="book" search="Find free times" action="Book" what="book" onPick={pick} />;
}

/** Look for free times (Appointment/$find: by practitioner and days) and act on one
 * (book it, or move an appointment to it); a time taken meanwhile is said so and the
 * list is looked up again. */
function FreeTimes({
  prefix,
  practitioner,
  exclude = [],
  search: searchLabel,
  action,
  what,
  onPick,
}: {
  prefix: string;
  practitioner?: string;
  exclude?: string[];
  search: string;
  action: string;
  what: "book" | "move";
  onPick: (proposal: Json, names: Map<string, string>) => Promise<void>;
}) {
  const { client, patientId } = useSession();
  const practitioners = useLoad("directory:practitioners", () => search(client, "Practitioner?_count=100", 1));
  const places = useLoad("directory:locations", () => search(client, "Location?_count=100", 1));
  const kinds = useLoad("directory:specialties", () => specialties(client));
  const [found, setFound] = useState<{ busy?: boolean; list?: Json[]; problem?: string; query?: string }>({});
  const [acting, setActing] = useState<string | undefined>();
  const names = new Map((practitioners.data || []).map((r) => [`Practitioner/${r.id}`, humanName(r.name)]));
  const lookUp = async (query: string, problem?: string) => {
    setFound({ busy: true, query, problem });
    try {
      const bundle = (await client.request(`Appointment/$find?${query}`)) as Json;
      const list = entriesOf(bundle, "Appointment").filter(
        (a) => !(a.slot || []).some((s: Json) => exclude.includes(s.reference)),
      );
      setFound({ list, query, problem });
    } catch (error) {
      setFound({ query, problem: refusalText(error, { 403: "you may look for free times only for yourself or the patient you act for" }) });
    }
  };
  const find = (event: Event) => {
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
    for (const name of ["practitioner", "specialty", "location"]) if (value(name)) params.set(name, value(name));
    lookUp(String(params));
  };
  const pick = async (proposal: Json, key: string) => {
    setActing(key);
    try {
      await onPick(proposal, names);
      setFound({});
    } catch (error) {
      const problem = changeProblem(error, what);
      if (found.query && /taken|cannot be booked|passed/.test(problem)) await lookUp(found.query, problem);
      else setFound({ ...found, problem });
    } finally {
      setActing(undefined);
    }
  };
  return (
    <>
      <form onSubmit={find} class="stack">
        <label for={`${prefix}-practitioner`}>With</label>
        <select id={`${prefix}-practitioner`} name="practitioner">
          <option value="">Anyone</option>
          {(practitioners.data || []).map((r) => (
            <option key={r.id} value={`Practitioner/${r.id}`} selected={`Practitioner/${r.id}` === practitioner}>
              {humanName(r.name) || referenceText({ reference: `Practitioner/${r.id}` })}
            </option>
          ))}
        </select>
        <label for={`${prefix}-specialty`}>Kind of care</label>
        <select id={`${prefix}-specialty`} name="specialty">
          <option value="">Any</option>
          {(kinds.data || []).map(([token, display]) => (
            <option key={token} value={token}>
              {display}
            </option>
          ))}
        </select>
        <label for={`${prefix}-location`}>Where</label>
        <select id={`${prefix}-location`} name="location">
          <option value="">Anywhere</option>
          {(places.data || []).map((r) => (
            <option key={r.id} value={`Location/${r.id}`}>
              {r.name || `Location ${r.id}`}
            </option>
          ))}
        </select>
        <label for={`${prefix}-from`}>From</label>
        <input id={`${prefix}-from`} name="from" type="date" defaultValue={dateInput(0)} />
        <label for={`${prefix}-to`}>To</label>
        <input id={`${prefix}-to`} name="to" type="date" defaultValue={dateInput(14)} />
        <button type="submit" class="primary" disabled={found.busy}>
          {found.busy ? "Looking…" : searchLabel}
        </button>
      </form>
      <p role="status" class={found.problem ? "problem" : "muted"}>
        {found.problem ? `${found.problem[0].toUpperCase()}${found.problem.slice(1)}.` : ""}
      </p>
      {found.list &&
        (found.list.length ? (
          <ul class="items" aria-label="Free times">
            {found.list.map((proposal) => {
              const key = proposal.slot?.[0]?.reference || proposal.start;
              const when = formatDate(proposal.start, true);
              const with_ = who(proposal, names).join(", ");
              return (
                <li key={key} data-slot={key}>
                  <strong>{when}</strong> {with_} {kindOf(proposal)}
                  <div>
                    <button type="button" class="secondary" disabled={!!acting} onClick={() => pick(proposal, key)}>
                      {acting === key ? "Booking…" : `${action} ${when}`}
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

/** The kinds of care the practitioners offer (PractitionerRole.specialty), as $find's
 * ``specialty`` tokens (system|code) with their displays. */
async function specialties(client: any): Promise<[string, string][]> {
  const roles = await search(client, "PractitionerRole?_count=200", 1).catch(() => [] as Json[]);
  const found = new Map<string, string>();
  for (const role of roles) {
    for (const concept of role.specialty || []) {
      for (const coding of concept.coding || []) {
        if (!coding.code) continue;
        const token = coding.system ? `${coding.system}|${coding.code}` : coding.code;
        found.set(token, conceptText(concept) || coding.display || coding.code);
      }
    }
  }
  return [...found.entries()].sort((a, b) => a[1].localeCompare(b[1]));
}

function dateOf(d: Date): string {
  return `${d.getFullYear()}-${String(d.getMonth() + 1).padStart(2, "0")}-${String(d.getDate()).padStart(2, "0")}`;
}
