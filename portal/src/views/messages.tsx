// Messages: the patient's threads with the care team and writing to it, as FHIR
// Communications (the thread model of the server: the first message names the topic,
// every reply points at what it answers, inResponseTo, and at the thread's first
// message, partOf). The care team is who the record names: the patient's general
// practitioner and managing organization, and the practitioners of their visits.
// Read state: a message to the patient without ``received`` is unread; opening its
// thread marks it read the way the server takes read receipts (the recipient sets the
// status to completed with a JSON Patch; the server adds ``received``).
import { useState } from "preact/hooks";
import { dropCached, refusalText, search, useLoad, useSession } from "../data";
import { conceptText, formatDate, humanName, type Json } from "../fhir";
import { DownloadButton, UPLOAD_MAX_BYTES, UPLOAD_TYPES, base64Of } from "../download";
import type { Client } from "../smart";
import { Empty, NotAvailable, Section, Show } from "../ui";

interface Thread {
  id: string;
  topic: string;
  messages: Json[]; // oldest first
}

function threads(list: Json[]): Thread[] {
  const byId = new Map(list.map((m) => [`Communication/${m.id}`, m]));
  const rootOf = (m: Json): Json => {
    const seen = new Set<string>();
    let current = m;
    for (;;) {
      const parent = current.partOf?.[0]?.reference || current.inResponseTo?.[0]?.reference;
      const next = parent && byId.get(parent);
      if (!next || seen.has(parent)) return current;
      seen.add(parent);
      current = next;
    }
  };
  const found = new Map<string, Thread>();
  for (const m of list) {
    const root = rootOf(m);
    let thread = found.get(root.id);
    if (!thread) {
      thread = { id: root.id, topic: conceptText(root.topic, "(no subject)"), messages: [] };
      found.set(root.id, thread);
    }
    thread.messages.push(m);
  }
  const threadList = [...found.values()];
  for (const t of threadList) t.messages.sort((a, b) => (a.sent || "").localeCompare(b.sent || ""));
  return threadList.sort((a, b) =>
    (b.messages.at(-1)?.sent || "").localeCompare(a.messages.at(-1)?.sent || ""),
  );
}

export function Messages() {
  const { client, patientId, fhirUser, capabilities } = useSession();
  const p = encodeURIComponent(patientId);
  const [version, setVersion] = useState(0); // a message sent: load the threads again
  const loaded = useLoad(`messages:${patientId}${version ? `:${version}` : ""}`, () =>
    search(client, `Communication?patient=${p}&_sort=-sent&_count=100&_include=Communication:sender`, 2),
  );
  const team = useLoad(`care-team:${patientId}`, () => careTeam(client, patientId));
  // a patient or a caregiver (RelatedPerson) sends as themselves
  const sender = /^(Patient|RelatedPerson)\//.test(fhirUser) ? fhirUser : undefined;
  const canSend = !!sender && capabilities.interaction("Communication", "create");
  const sent = () => setVersion((v) => v + 1);
  return (
    <>
      <Section title="Write to your care team" id="msg-compose">
        {canSend ? (
          <Show loaded={team} what="your care team">
            {(people) =>
              people.length ? (
                <Compose people={people} sender={sender as string} onSent={sent} />
              ) : (
                <Empty>Your record names no care team to write to yet.</Empty>
              )
            }
          </Show>
        ) : (
          <NotAvailable feature="Sending messages" detail="For questions about your care, phone your clinic." />
        )}
      </Section>
      <Section title="Conversations with your care team" id="msg-threads">
        <Show loaded={loaded} what="messages">
          {(found) => {
            const list = found.filter((r) => r.resourceType === "Communication");
            const names = new Map(
              found.filter((r) => r.resourceType !== "Communication").map((r) => [`${r.resourceType}/${r.id}`, humanName(r.name)]),
            );
            const from = (m: Json) => {
              const ref = m.sender?.reference || "";
              if (ref === `Patient/${patientId}` || ref === fhirUser) return "You";
              return m.sender?.display || names.get(ref) || "your care team";
            };
            const all = threads(list);
            if (!all.length) return <Empty>No messages.</Empty>;
            return (
              <ul class="items">
                {all.map((t) => (
                  <ThreadItem key={t.id} thread={t} from={from} canSend={canSend} sender={sender} onSent={sent} />
                ))}
              </ul>
            );
          }}
        </Show>
      </Section>
    </>
  );
}

/** Whether a message is addressed to the signed-in person (the patient, or the
 * caregiver acting for them: a message to the patient is theirs to read too). */
function forMe(m: Json, patientId: string, fhirUser: string): boolean {
  const me = [`Patient/${patientId}`, fhirUser];
  return (m.recipient || []).some((r: Json) => me.includes(r.reference));
}

/** The unread messages to the patient: no ``received`` (the server's read receipt). */
export function unreadOf(list: Json[], patientId: string, fhirUser: string): Json[] {
  return list.filter((m) => m.resourceType === "Communication" && !m.received && forMe(m, patientId, fhirUser));
}

function ThreadItem({
  thread,
  from,
  canSend,
  sender,
  onSent,
}: {
  thread: Thread;
  from: (m: Json) => string;
  canSend: boolean;
  sender?: string;
  onSent: () => void;
}) {
  const { client, patientId, fhirUser } = useSession();
  const [read, setRead] = useState<Record<string, string>>({}); // id -> when read here
  const [problem, setProblem] = useState<string | undefined>();
  const unread = unreadOf(thread.messages, patientId, fhirUser).filter((m) => !read[m.id]);
  const markRead = async () => {
    if (!unread.length) return;
    setProblem(undefined);
    const done: Record<string, string> = {};
    try {
      for (const m of unread) {
        const receipt = (await client.patch(`Communication/${encodeURIComponent(m.id)}`, [
          { op: "add", path: "/status", value: "completed" },
        ])) as Json;
        done[m.id] = receipt?.received || new Date().toISOString();
      }
    } catch (error) {
      setProblem(
        refusalText(error, {
          403: "only the person a message is addressed to can mark it read",
          422: (said) => said || "the server did not take the read receipt",
        }),
      );
    } finally {
      if (Object.keys(done).length) {
        setRead((before) => ({ ...before, ...done }));
        dropCached(`messages:${patientId}`); // Home's unread count and the list load again
      }
    }
  };
  const toggled = (event: Event) => {
    if ((event.currentTarget as HTMLDetailsElement).open) markRead();
  };
  const count = thread.messages.length;
  return (
    <li>
      <details onToggle={toggled}>
        <summary>
          <strong>{thread.topic}</strong>{" "}
          {unread.length > 0 && <span class="badge">{unread.length} unread</span>}{" "}
          <span class="muted">
            {count} {count === 1 ? "message" : "messages"}, last {formatDate(thread.messages.at(-1)?.sent, true)}
          </span>
        </summary>
        {thread.messages.map((m) => {
          const mine = forMe(m, patientId, fhirUser);
          const received = m.received || read[m.id];
          const state = mine
            ? received
              ? `Read ${formatDate(received, true)}`
              : "Unread"
            : from(m) === "You"
              ? received
                ? "Read by your care team"
                : "Not read yet"
              : "";
          return (
            <div class="message" key={m.id} data-read={mine ? (received ? "read" : "unread") : undefined}>
              <p class="muted">
                From {from(m)}, {formatDate(m.sent, true)}
                {state && <span class="read-state"> · {state}</span>}
              </p>
              {(m.payload || []).map((part: Json, i: number) => (
                <Part key={i} part={part} />
              ))}
            </div>
          );
        })}
        {problem && (
          <p class="problem" role="alert">
            Could not mark the message as read: {problem}.
          </p>
        )}
        {canSend && sender && <Reply thread={thread} sender={sender} onSent={onSent} />}
      </details>
    </li>
  );
}

interface Person {
  reference: string;
  name: string;
}

/** Whom the patient may write to, from their record: the server takes exactly these
 * (its care relations: general practitioner, managing organization, practitioners of
 * the patient's visits, the patient's care teams and their members). */
async function careTeam(client: Client, patientId: string): Promise<Person[]> {
  const p = encodeURIComponent(patientId);
  const [own, visits, teams] = await Promise.all([
    search(client, `Patient?_id=${p}&_include=Patient:general-practitioner&_include=Patient:organization`, 1),
    search(client, `Encounter?patient=${p}&_sort=-date&_count=50&_include=Encounter:practitioner`, 1),
    search(client, `CareTeam?patient=${p}&status=active&_include=CareTeam:participant`, 1).catch(() => []),
  ]);
  const people = new Map<string, Person>();
  for (const r of [...own, ...visits, ...teams]) {
    if (r.resourceType === "CareTeam") {
      people.set(`CareTeam/${r.id}`, { reference: `CareTeam/${r.id}`, name: `${r.name || "Care team"} (your care team)` });
    } else if (r.resourceType === "Practitioner") {
      people.set(`Practitioner/${r.id}`, { reference: `Practitioner/${r.id}`, name: humanName(r.name) || "A practitioner" });
    } else if (r.resourceType === "Organization") {
      people.set(`Organization/${r.id}`, { reference: `Organization/${r.id}`, name: `${r.name || "Your clinic"} (the clinic)` });
    }
  }
  return [...people.values()];
}

/** Upload a file as a Binary secured by the patient (readable by whoever may read the
 * patient's record: the patient, their caregivers, staff) for a message to refer to. */
async function attach(client: Client, patientId: string, file: File): Promise<Json> {
  const binary = (await client.create({
    resourceType: "Binary",
    contentType: file.type,
    securityContext: { reference: `Patient/${patientId}` },
    data: await base64Of(file),
  } as any)) as Json;
  return { contentType: file.type, url: `Binary/${binary.id}`, title: file.name, size: file.size };
}

/** One part of a message: its text, or its attachment to download. */
function Part({ part }: { part: Json }) {
  const attachment = part.contentAttachment;
  if (!attachment) return <p>{part.contentString || ""}</p>;
  const title = attachment.title || "attachment";
  if (/^Binary\/[^/]+$/.test(attachment.url || "")) {
    return (
      <DownloadButton
        url={attachment.url}
        filename={title}
        label={`Download the attachment ${title}`}
        type={String(attachment.contentType || "application/octet-stream").split(";")[0]}
      />
    );
  }
  return <p>Attachment: {title}</p>;
}

/** What went wrong sending a message (or its attachment), in words. */
function sendProblem(error: any): string {
  return refusalText(error, {
    403: "you can write only to your care team (the people in the list); for anyone else, phone your clinic",
    413: "the attached file is too large (10 MB at most)",
    415: "this kind of file cannot be attached: choose a PDF, PNG, JPEG, HEIC or plain text file",
    422: (said) => said || "the server did not take the message",
  });
}

async function send(client: Client, message: Json): Promise<void> {
  await client.create({
    resourceType: "Communication",
    status: "in-progress",
    sent: new Date().toISOString(),
    ...message,
  } as any);
}

function Compose({ people, sender, onSent }: { people: Person[]; sender: string; onSent: () => void }) {
  const { client, patientId } = useSession();
  const [state, setState] = useState<{ busy?: boolean; done?: string; problem?: string }>({});
  const submit = async (event: Event) => {
    event.preventDefault();
    const form = event.target as HTMLFormElement;
    const value = (name: string) => (form.elements.namedItem(name) as HTMLInputElement).value.trim();
    const to = value("to");
    const subject = value("subject");
    const text = value("text");
    const file = (form.elements.namedItem("attachment") as HTMLInputElement).files?.[0];
    if (!subject || !text) return setState({ problem: "write a subject and a message" });
    if (file && !UPLOAD_TYPES.includes(file.type)) {
      return setState({ problem: "attach a PDF, PNG, JPEG, HEIC or plain text file" });
    }
    if (file && file.size > UPLOAD_MAX_BYTES) return setState({ problem: "the file is larger than 10 MB" });
    setState({ busy: true });
    try {
      const payload: Json[] = [{ contentString: text }];
      if (file) payload.push({ contentAttachment: await attach(client, patientId, file) });
      await send(client, {
        subject: { reference: `Patient/${patientId}` },
        topic: { text: subject },
        recipient: [{ reference: to }],
        sender: { reference: sender },
        payload,
      });
      form.reset();
      onSent();
      setState({ done: `Your message "${subject}" was sent.` });
    } catch (error) {
      setState({ problem: sendProblem(error) });
    }
  };
  return (
    <form onSubmit={submit} class="stack">
      <p class="muted">For questions that are not urgent. Your care team answers within two working days.</p>
      <label for="msg-to">To</label>
      <select id="msg-to" name="to">
        {people.map((person) => (
          <option key={person.reference} value={person.reference}>
            {person.name}
          </option>
        ))}
      </select>
      <label for="msg-subject">Subject</label>
      <input id="msg-subject" name="subject" type="text" maxLength={200} required />
      <label for="msg-text">Message</label>
      <textarea id="msg-text" name="text" rows={5} maxLength={5000} required />
      <label for="msg-attachment">Attach a file (optional: PDF, PNG, JPEG, HEIC or text, up to 10 MB)</label>
      <input id="msg-attachment" name="attachment" type="file" accept={UPLOAD_TYPES.join(",")} />
      <button type="submit" class="primary" disabled={state.busy}>
        {state.busy ? "Sending…" : "Send"}
      </button>
      <p role="status" class={state.problem ? "problem" : "muted"}>
        {state.problem ? `Could not send: ${state.problem}.` : state.done || ""}
      </p>
    </form>
  );
}

/** A reply in a thread: to whoever wrote last from the care team (else the first
 * message's recipients), answering the last message, part of the thread. */
function Reply({ thread, sender, onSent }: { thread: Thread; sender: string; onSent: () => void }) {
  const { client, patientId } = useSession();
  const [problem, setProblem] = useState<string | undefined>();
  const [busy, setBusy] = useState(false);
  const mine = (m: Json) => [sender, `Patient/${patientId}`].includes(m.sender?.reference);
  const theirs = [...thread.messages].reverse().find((m) => !mine(m) && m.sender?.reference);
  const first = thread.messages[0];
  const to = theirs ? [{ reference: theirs.sender.reference }] : (first.recipient || []).map((r: Json) => ({ reference: r.reference }));
  const last = thread.messages.at(-1) as Json;
  const submit = async (event: Event) => {
    event.preventDefault();
    const form = event.target as HTMLFormElement;
    const text = (form.elements.namedItem("reply") as HTMLTextAreaElement).value.trim();
    if (!text) return;
    setBusy(true);
    try {
      await send(client, {
        subject: { reference: `Patient/${patientId}` },
        topic: first.topic,
        recipient: to,
        sender: { reference: sender },
        inResponseTo: [{ reference: `Communication/${last.id}` }],
        partOf: [{ reference: `Communication/${first.id}` }],
        payload: [{ contentString: text }],
      });
      form.reset();
      onSent();
    } catch (error) {
      setProblem(sendProblem(error));
    } finally {
      setBusy(false);
    }
  };
  const id = `reply-${thread.id}`;
  return (
    <form onSubmit={submit} class="stack reply">
      <label for={id}>Reply</label>
      <textarea id={id} name="reply" rows={3} maxLength={5000} required />
      <button type="submit" class="secondary" disabled={busy}>
        {busy ? "Sending…" : "Send reply"}
      </button>
      {problem && (
        <p class="problem" role="alert">
          Could not send: {problem}.
        </p>
      )}
    </form>
  );
}
