// Settings: who accessed the record (the server's AuditEvents about this patient,
// AuditEvent?patient=…, after the IHE Basic Audit Log Patterns), the apps connected to
// the account (the server's account API next to its token endpoint:
// GET/DELETE …/auth/account/apps, with the session's token), and notification
// preferences (the server's FHIR form of them: a Basic coded
// urn:fhir-server:notification|preferences whose subject is the person, one opt-out
// extension per channel and kind turned off, and the person's quiet hours: one
// urn:fhir-server:notification-quiet-hours extension with a start and an end time and an
// optional IANA time zone). Saving rewrites only those two kinds of extension: every
// other extension of the Basic is kept as it was.
import { useEffect, useState } from "preact/hooks";
import { problemText, search, useLoad, useSession } from "../data";
import { formatDate, type Json } from "../fhir";
import { smartConfiguration, type Client } from "../smart";
import { Empty, Loading, NotAvailable, Problem, Section, Show, TableWrap } from "../ui";

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
      <Section title="Notifications" id="settings-notifications">
        <Notifications />
      </Section>
      <Section title="Connected apps" id="settings-apps">
        <ConnectedApps />
      </Section>
      <Section title="Who accessed my record" id="settings-audit">
        <AccessLog />
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
    // AuditEvent.entity.role is a Coding in R4 (a CodeableConcept in R5): read both
    const role = [entity.role?.code, ...(entity.role?.coding || []).map((c: Json) => c.code)];
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
    search(client, `AuditEvent?patient=Patient/${encodeURIComponent(patientId)}&_sort=-date&_count=20`, 1),
  );
  if (loaded.error !== undefined) {
    return <NotAvailable feature="The record of who accessed your health record" />;
  }
  return (
    <Show loaded={loaded} what="the record of access">
      {(list) =>
        list.length ? (
          <ul class="items" aria-label="The latest 20 accesses, newest first">
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

/** The account API's address: ``account/apps`` next to the token endpoint. */
async function appsUrl(client: Client): Promise<string | undefined> {
  const token = (await smartConfiguration(client)).token_endpoint as string | undefined;
  return token ? new URL("account/apps", token).href : undefined;
}

async function account(client: Client, url: string, method = "GET"): Promise<Response> {
  await client.refreshIfNeeded();
  const token = client.state.tokenResponse?.access_token;
  return fetch(url, { method, headers: { Authorization: `Bearer ${token}` } });
}

/** What an app may do, in words, from its scopes. */
function allowed(scope: string): string {
  const words = scope.split(" ");
  // the permissions of each data scope: "rs" of patient/*.rs, "c" of …DocumentReference.c
  const letters = words
    .filter((w) => /^(patient|user)\//.test(w))
    .map((w) => w.split("?")[0].split(".").pop() || "")
    .map((p) => (p === "read" ? "rs" : p === "write" ? "cud" : p === "*" ? "cruds" : p));
  const has = (letter: string) => letters.some((l) => l.includes(letter));
  const parts: string[] = [];
  if (has("u") || has("d")) parts.push("read and change your record");
  else if (has("c")) parts.push("read your record and add to it");
  else if (letters.length) parts.push("read your record");
  if (words.includes("offline_access")) parts.push("keep access while you are away");
  return parts.join(", ") || "know who you are";
}

interface AppsState {
  apps?: Json[];
  unavailable?: boolean;
  problem?: string;
}

function ConnectedApps() {
  const { client } = useSession();
  const [state, setState] = useState<AppsState>({});
  const [version, setVersion] = useState(0);
  useEffect(() => {
    let live = true;
    (async () => {
      const url = await appsUrl(client);
      if (!url) return { unavailable: true };
      const response = await account(client, url);
      if (response.status === 404 || response.status === 405) return { unavailable: true };
      if (!response.ok) return { problem: problemText({ status: response.status }) };
      return { apps: ((await response.json()).apps || []) as Json[] };
    })().then(
      (next) => live && setState(next),
      (error) => live && setState({ problem: problemText(error) }),
    );
    return () => {
      live = false;
    };
  }, [version]);
  const disconnect = async (app: Json) => {
    const url = await appsUrl(client);
    if (!url) return;
    const response = await account(client, `${url}/${encodeURIComponent(app.client_id)}`, "DELETE");
    if (response.status === 401 || app.client_id === client.state.clientId) {
      location.reload(); // this portal's own access ended: sign in again
      return;
    }
    if (!response.ok && response.status !== 404) setState({ problem: problemText({ status: response.status }) });
    setVersion((v) => v + 1);
  };
  if (state.unavailable) {
    return <NotAvailable feature="Seeing and disconnecting the apps that have access to your record" />;
  }
  if (state.problem) return <Problem text={state.problem} />;
  if (!state.apps) return <Loading what="your connected apps" />;
  if (!state.apps.length) return <Empty>No apps are connected to your account.</Empty>;
  return (
    <ul class="items">
      {state.apps.map((app) => {
        const self = app.client_id === client.state.clientId;
        return (
          <li key={app.client_id}>
            <strong>{app.client_name}</strong>
            {self && <span class="muted"> (this portal)</span>}
            <div class="muted">
              May {allowed(app.scope || "")}. Connected {formatDate(app.granted_at, true)}, last used{" "}
              {formatDate(app.last_used, true)}.
            </div>
            <button type="button" class="secondary" onClick={() => disconnect(app)}>
              {self ? "Disconnect this portal (signs you out)" : `Disconnect ${app.client_name}`}
            </button>
          </li>
        );
      })}
    </ul>
  );
}

const PREFERENCES = "urn:fhir-server:notification|preferences";
const OPT_OUT = "urn:fhir-server:notification-opt-out";
const QUIET_HOURS = "urn:fhir-server:notification-quiet-hours";
const NOTIFICATION_KINDS: [string, string][] = [
  ["new-result", "New test results"],
  ["new-message", "New messages"],
  ["new-document", "New documents"],
  ["new-invoice", "New bills"],
  ["appointment-booked", "Appointment booked"],
  ["appointment-changed", "Appointment moved"],
  ["appointment-cancelled", "Appointment cancelled"],
  ["appointment-reminder", "Appointment reminders"],
  ["health-maintenance", "Reminders of tests and care due"],
  ["refill-decided", "Refill request answered"],
];
const CHANNELS: [string, string][] = [
  ["email", "Email"],
  ["sms", "Text message"],
];

/** The (channel, kind) pairs turned off in a preferences Basic ("*": any). */
function optOuts(basic: Json | undefined): Set<string> {
  const off = new Set<string>();
  for (const ext of basic?.extension || []) {
    if (ext.url !== OPT_OUT) continue;
    const parts: Record<string, string> = {};
    for (const part of ext.extension || []) parts[part.url] = part.valueCode;
    off.add(`${parts.channel || "*"} ${parts.kind || "*"}`);
  }
  return off;
}

/** Whether an opt-out is one of the table's: its channel and kind each a wildcard or
 * one the table shows (any other is kept as it is when saving). */
function shown(ext: Json): boolean {
  const parts: Record<string, string> = {};
  for (const part of ext.extension || []) parts[part.url] = part.valueCode;
  const channelShown = !parts.channel || CHANNELS.some(([c]) => c === parts.channel);
  const kindShown = !parts.kind || NOTIFICATION_KINDS.some(([k]) => k === parts.kind);
  return channelShown && kindShown;
}

function quietExtension(basic: Json | undefined): Json | undefined {
  return (basic?.extension || []).find((ext: Json) => ext.url === QUIET_HOURS);
}

function quietParts(ext: Json | undefined): Record<string, string> {
  const parts: Record<string, string> = {};
  for (const part of ext?.extension || []) {
    const key = Object.keys(part).find((k) => k.startsWith("value"));
    if (key) parts[part.url] = String(part[key]);
  }
  return parts;
}

/** "22:00:00" → "22:00" (what an <input type=time> shows). */
function hhmm(time: string | undefined): string {
  return /^\d\d:\d\d/.test(time || "") ? (time as string).slice(0, 5) : "";
}

/** "22:00" → "22:00:00" (a FHIR time has its seconds). */
function fhirTime(value: string): string {
  return value.length === 5 ? `${value}:00` : value;
}

function browserZone(): string {
  try {
    return Intl.DateTimeFormat().resolvedOptions().timeZone || "";
  } catch {
    return "";
  }
}

/** The IANA time zones the browser knows (empty where it cannot list them). */
function knownZones(): string[] {
  const list = (Intl as any).supportedValuesOf?.("timeZone");
  return Array.isArray(list) ? list : [];
}

/** The quiet-hours extension to save from the form: undefined for none, or a sentence
 * saying what to correct. Off keeps stored quiet hours as "none" (start = end): the
 * person's choice then also overrides a default the clinic may set for everyone. */
function quietHoursOf(form: HTMLFormElement, current: Json | undefined): Json | undefined | string {
  const field = (name: string) => (form.elements.namedItem(name) as HTMLInputElement | null)?.value || "";
  const stored = quietExtension(current);
  const on = (form.elements.namedItem("quiet-on") as HTMLInputElement | null)?.checked;
  const others = (stored?.extension || []).filter((p: Json) => !["start", "end", "timezone"].includes(p.url));
  let start = field("quiet-start");
  let end = field("quiet-end");
  let zone = field("quiet-zone");
  if (!on) {
    if (!stored) return undefined;
    const parts = quietParts(stored);
    start = hhmm(parts.start) || "00:00";
    end = start;
    zone = parts.timezone || "";
  } else if (!start || !end) {
    return "choose the time your quiet hours start and the time they end";
  } else if (start === end) {
    return "quiet hours need different start and end times";
  }
  return {
    ...stored,
    url: QUIET_HOURS,
    extension: [
      ...others,
      { url: "start", valueTime: fhirTime(start) },
      { url: "end", valueTime: fhirTime(end) },
      ...(zone ? [{ url: "timezone", valueCode: zone }] : []),
    ],
  };
}

/** Quiet hours: on or off, from and until (local times), and the time zone they are in. */
function QuietHoursFields({ stored }: { stored: Json | undefined }) {
  const parts = quietParts(stored);
  const storedOn = !!stored && hhmm(parts.start) !== "" && hhmm(parts.start) !== hhmm(parts.end);
  const [on, setOn] = useState(storedOn);
  const here = browserZone();
  const chosen = stored ? parts.timezone || "" : here;
  const zones = knownZones();
  for (const zone of [here, chosen]) if (zone && !zones.includes(zone)) zones.unshift(zone);
  return (
    <fieldset class="quiet">
      <legend>Quiet hours</legend>
      <p class="muted" id="quiet-help">
        No email or text message during these hours: what comes in them is sent when they end.
      </p>
      <label class="check">
        <input
          type="checkbox"
          id="quiet-on"
          name="quiet-on"
          checked={on}
          aria-describedby="quiet-help"
          onChange={(e) => setOn((e.target as HTMLInputElement).checked)}
        />{" "}
        Hold my notifications during quiet hours
      </label>
      <div class="stack" hidden={!on}>
        <label for="quiet-start">From</label>
        <input id="quiet-start" name="quiet-start" type="time" defaultValue={storedOn ? hhmm(parts.start) : "22:00"} />
        <label for="quiet-end">Until</label>
        <input id="quiet-end" name="quiet-end" type="time" defaultValue={storedOn ? hhmm(parts.end) : "07:00"} />
        <label for="quiet-zone">Time zone</label>
        <select id="quiet-zone" name="quiet-zone">
          <option value="" selected={chosen === ""}>
            The clinic's time zone
          </option>
          {zones.map((zone) => (
            <option key={zone} value={zone} selected={zone === chosen}>
              {zone.replace(/_/g, " ")}
              {zone === here ? " (this device)" : ""}
            </option>
          ))}
        </select>
      </div>
    </fieldset>
  );
}

function isOn(off: Set<string>, channel: string, kind: string): boolean {
  return ![`${channel} ${kind}`, `${channel} *`, `* ${kind}`, "* *"].some((k) => off.has(k));
}

function Notifications() {
  const { client, fhirUser } = useSession();
  const person = /^(Patient|RelatedPerson)\//.test(fhirUser) ? fhirUser : undefined;
  const [version, setVersion] = useState(0);
  const [status, setStatus] = useState<{ busy?: boolean; text?: string; problem?: string }>({});
  const loaded = useLoad(`preferences:${person}:${version}`, async () => {
    if (!person) return undefined;
    const found = await search(client, `Basic?code=${encodeURIComponent(PREFERENCES)}&subject=${encodeURIComponent(person)}`, 1);
    return found[0] ?? null;
  });
  if (!person) {
    return <NotAvailable feature="Choosing notifications for this kind of sign-in" />;
  }
  const save = async (event: Event) => {
    event.preventDefault();
    const form = event.target as HTMLFormElement;
    const current = loaded.data as Json | null | undefined;
    const quiet = quietHoursOf(form, current ?? undefined);
    if (typeof quiet === "string") {
      setStatus({ problem: quiet });
      return;
    }
    // every extension this screen does not manage is kept, and so are opt-outs of
    // channels or kinds it does not show
    const extension: Json[] = (current?.extension || []).filter(
      (ext: Json) => (ext.url !== OPT_OUT || !shown(ext)) && ext.url !== QUIET_HOURS,
    );
    if (quiet) extension.push(quiet);
    for (const [kind] of NOTIFICATION_KINDS) {
      for (const [channel] of CHANNELS) {
        const box = form.elements.namedItem(`${channel}-${kind}`) as HTMLInputElement;
        if (!box.checked) {
          extension.push({
            url: OPT_OUT,
            extension: [
              { url: "channel", valueCode: channel },
              { url: "kind", valueCode: kind },
            ],
          });
        }
      }
    }
    const basic: Json = {
      ...(current || {}),
      resourceType: "Basic",
      code: { coding: [{ system: "urn:fhir-server:notification", code: "preferences" }] },
      subject: { reference: person },
      extension,
    };
    if (extension.length === 0) delete basic.extension;
    setStatus({ busy: true });
    try {
      if (current?.id) await client.update(basic as any);
      else await client.create(basic as any);
      setVersion((v) => v + 1);
      setStatus({ text: "Your choices are saved." });
    } catch (error) {
      setStatus({ problem: problemText(error) });
    }
  };
  return (
    <Show loaded={loaded} what="your notification choices">
      {(basic) => {
        const off = optOuts(basic ?? undefined);
        return (
          <form onSubmit={save} key={String(version)}>
            <p class="muted">
              What your clinic's server tells you about, and how (when it is set up to send email and
              text messages). A notification never contains medical details: sign in to read them.
            </p>
            <TableWrap label="Notification choices">
              <table>
                <caption class="sr-only">Notifications by kind and channel</caption>
                <thead>
                  <tr>
                    <th scope="col">Tell me about</th>
                    {CHANNELS.map(([, label]) => (
                      <th scope="col" key={label}>
                        {label}
                      </th>
                    ))}
                  </tr>
                </thead>
                <tbody>
                  {NOTIFICATION_KINDS.map(([kind, label]) => (
                    <tr key={kind}>
                      <th scope="row">{label}</th>
                      {CHANNELS.map(([channel, channelLabel]) => (
                        <td key={channel}>
                          <input
                            type="checkbox"
                            id={`${channel}-${kind}`}
                            name={`${channel}-${kind}`}
                            defaultChecked={isOn(off, channel, kind)}
                            aria-label={`${label} by ${channelLabel.toLowerCase()}`}
                          />
                        </td>
                      ))}
                    </tr>
                  ))}
                </tbody>
              </table>
            </TableWrap>
            <QuietHoursFields stored={quietExtension(basic ?? undefined)} />
            <button type="submit" class="primary" disabled={status.busy}>
              {status.busy ? "Saving…" : "Save my choices"}
            </button>
            <p role="status" class={status.problem ? "problem" : "muted"}>
              {status.problem ? `Could not save: ${status.problem}` : status.text || ""}
            </p>
          </form>
        );
      }}
    </Show>
  );
}
