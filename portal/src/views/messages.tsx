// Messages: the patient's threads with the care team (Communications grouped by the
// message that started them); writing messages needs the server's messaging workflow.
import { search, useLoad, useSession } from "../data";
import { conceptText, formatDate, humanName, type Json } from "../fhir";
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
  const { client, patientId } = useSession();
  const p = encodeURIComponent(patientId);
  const loaded = useLoad(`messages:${patientId}`, () =>
    search(client, `Communication?patient=${p}&_sort=-sent&_count=100&_include=Communication:sender`, 2),
  );
  return (
    <>
      <Section title="Conversations with your care team" id="msg-threads">
        <Show loaded={loaded} what="messages">
          {(found) => {
            const list = found.filter((r) => r.resourceType === "Communication");
            const names = new Map(
              found.filter((r) => r.resourceType !== "Communication").map((r) => [`${r.resourceType}/${r.id}`, humanName(r.name)]),
            );
            const from = (m: Json) => {
              const ref = m.sender?.reference || "";
              if (ref === `Patient/${patientId}`) return "You";
              return m.sender?.display || names.get(ref) || "your care team";
            };
            const all = threads(list);
            if (!all.length) return <Empty>No messages.</Empty>;
            return (
              <ul class="items">
                {all.map((t) => (
                  <li key={t.id}>
                    <details>
                      <summary>
                        <strong>{t.topic}</strong>{" "}
                        <span class="muted">
                          {t.messages.length} {t.messages.length === 1 ? "message" : "messages"}, last{" "}
                          {formatDate(t.messages.at(-1)?.sent, true)}
                        </span>
                      </summary>
                      {t.messages.map((m) => (
                        <div class="message" key={m.id}>
                          <p class="muted">
                            From {from(m)}, {formatDate(m.sent, true)}
                            {m.received ? "" : " (unread)"}
                          </p>
                          {(m.payload || []).map((part: Json, i: number) => (
                            <p key={i}>{part.contentString || (part.contentAttachment ? `Attachment: ${part.contentAttachment.title || "file"}` : "")}</p>
                          ))}
                        </div>
                      ))}
                    </details>
                  </li>
                ))}
              </ul>
            );
          }}
        </Show>
      </Section>
      <Section title="Write to your care team" id="msg-compose">
        <NotAvailable
          feature="Sending messages"
          detail="For questions about your care, phone your clinic."
        />
      </Section>
    </>
  );
}
