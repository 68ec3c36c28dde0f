// Appointments: upcoming and past (Appointment search); finding a free slot and booking
// need the server's Appointment/$find and $book (Argonaut Scheduling), when it has them.
import { search, useLoad, useSession } from "../data";
import { conceptText, formatDate, referenceText, type Json } from "../fhir";
import { Empty, NotAvailable, Section, Show } from "../ui";

export function Appointments() {
  const { client, patientId, capabilities } = useSession();
  const p = encodeURIComponent(patientId);
  const loaded = useLoad(`appointments:${patientId}`, () =>
    search(client, `Appointment?patient=${p}&_sort=-date&_count=100`),
  );
  const now = Date.now();
  const booking = capabilities.operation("Appointment", "find") && capabilities.operation("Appointment", "book");
  return (
    <>
      <Show loaded={loaded} what="appointments">
        {(list) => {
          const upcoming = list
            .filter((a) => Date.parse(a.start || "") >= now && a.status !== "cancelled")
            .sort((a, b) => Date.parse(a.start) - Date.parse(b.start));
          const past = list.filter((a) => !upcoming.includes(a));
          return (
            <>
              <Section title="Upcoming" id="appts-upcoming">
                {upcoming.length ? <AppointmentList list={upcoming} /> : <Empty>No upcoming appointments.</Empty>}
              </Section>
              <Section title="Past" id="appts-past">
                {past.length ? <AppointmentList list={past} /> : <Empty>No past appointments.</Empty>}
              </Section>
            </>
          );
        }}
      </Show>
      <Section title="Book an appointment" id="appts-book">
        {booking ? (
          <p>This server offers online booking; the portal's booking screen is coming in its next version.</p>
        ) : (
          <NotAvailable feature="Booking online" detail="Phone your clinic to book, move or cancel a visit." />
        )}
      </Section>
    </>
  );
}

function AppointmentList({ list }: { list: Json[] }) {
  return (
    <ul class="items">
      {list.map((a) => {
        const others = (a.participant || [])
          .map((x: Json) => x.actor)
          .filter((actor: Json | undefined) => actor && !String(actor.reference || "").startsWith("Patient/"))
          .map(referenceText)
          .filter((t: string) => t && !t.includes("/"));
        return (
          <li key={a.id}>
            <strong>{formatDate(a.start, true)}</strong> {conceptText(a.serviceType?.[0]) || a.description || "Visit"}
            <div class="muted">
              {[a.status, a.description, ...others].filter(Boolean).join(" · ")}
            </div>
          </li>
        );
      })}
    </ul>
  );
}
