// The signed-in portal: header (who is signed in, whom they act for, switch and sign
// out), the navigation, one screen per URL (#/results...), and the notice that the
// portal is not for emergencies.
import { useEffect, useRef, useState } from "preact/hooks";
import type { ComponentType } from "preact";
import { useLoad, useSession, problemText } from "./data";
import { humanName, type Json } from "./fhir";
import { Home } from "./views/home";
import { HealthRecord } from "./views/record";
import { Results } from "./views/results";
import { Medications } from "./views/medications";
import { Appointments } from "./views/appointments";
import { Messages } from "./views/messages";
import { Billing } from "./views/billing";
import { Documents } from "./views/documents";
import { Settings } from "./views/settings";

export interface View {
  path: string;
  label: string;
  component: ComponentType<{ rest: string }>;
}

export const VIEWS: View[] = [
  { path: "", label: "Home", component: Home },
  { path: "record", label: "Health record", component: HealthRecord },
  { path: "results", label: "Results", component: Results },
  { path: "appointments", label: "Appointments", component: Appointments },
  { path: "messages", label: "Messages", component: Messages },
  { path: "medications", label: "Medications", component: Medications },
  { path: "billing", label: "Billing", component: Billing },
  { path: "documents", label: "Documents", component: Documents },
  { path: "settings", label: "Settings", component: Settings },
];

/** "#/results/4548-4" -> ["results", "4548-4"] */
export function currentRoute(): [string, string] {
  const path = location.hash.replace(/^#\/?/, "");
  const [first, ...rest] = path.split("/");
  return [decodeURIComponent(first || ""), rest.map(decodeURIComponent).join("/")];
}

function useRoute(): [string, string] {
  const [route, setRoute] = useState(currentRoute());
  useEffect(() => {
    const changed = () => setRoute(currentRoute());
    addEventListener("hashchange", changed);
    return () => removeEventListener("hashchange", changed);
  }, []);
  return route;
}

interface Props {
  onSignOut: () => void;
  onSwitch: () => void;
}

export function Portal({ onSignOut, onSwitch }: Props) {
  const [path, rest] = useRoute();
  const view = VIEWS.find((v) => v.path === path);
  const heading = useRef<HTMLHeadingElement>(null);
  const first = useRef(true);
  useEffect(() => {
    document.title = `${view ? view.label : "Not found"} – Patient portal`;
    if (first.current) {
      first.current = false;
      return;
    }
    heading.current?.focus(); // screen readers hear the new screen's name
  }, [path]);
  const Screen = view?.component;
  return (
    <>
      <a class="skip" href="#content" onClick={skipTo}>
        Skip to content
      </a>
      <Header onSignOut={onSignOut} onSwitch={onSwitch} />
      <Offline />
      <nav aria-label="Portal" class="nav">
        <ul>
          {VIEWS.map((v) => (
            <li key={v.path}>
              <a href={`#/${v.path}`} aria-current={v.path === path ? "page" : undefined}>
                {v.label}
              </a>
            </li>
          ))}
          <li>
            <button type="button" class="link" onClick={onSignOut}>
              Sign out
            </button>
          </li>
        </ul>
      </nav>
      <main id="content" class="page">
        <h1 ref={heading} tabIndex={-1}>
          {view ? view.label : "Page not found"}
        </h1>
        {Screen ? <Screen rest={rest} /> : <p>There is no such page. Choose one in the menu.</p>}
      </main>
      <Emergency />
    </>
  );
}

function skipTo(event: Event) {
  event.preventDefault();
  document.getElementById("content")?.querySelector("h1")?.focus();
}

/** A plain notice while the browser has no network (the app shell still shows). */
export function Offline() {
  const [online, setOnline] = useState(navigator.onLine);
  useEffect(() => {
    const on = () => setOnline(true);
    const off = () => setOnline(false);
    addEventListener("online", on);
    addEventListener("offline", off);
    return () => {
      removeEventListener("online", on);
      removeEventListener("offline", off);
    };
  }, []);
  if (online) return null;
  return (
    <p class="offline" role="status">
      <strong>You are offline.</strong> What you see may be out of date, and nothing can be sent
      until you are back online.
    </p>
  );
}

/** On every screen: what the portal is not for. */
export function Emergency() {
  return (
    <aside class="emergency" aria-label="When to contact a medical professional">
      <p>
        <strong>This portal is not for emergencies.</strong> If you have a medical emergency, call
        911 or your local emergency number now. For urgent symptoms, phone your care team; messages
        here may take up to two working days to be read.
      </p>
    </aside>
  );
}

function Header({ onSwitch }: Props) {
  const { client, fhirUser, patientId } = useSession();
  const patient = useLoad(`patient:${patientId}`, () => client.patient.read());
  const user = useLoad(`user:${fhirUser}:${patientId}`, () => userName(client, fhirUser));
  const patientName = patient.data ? humanName((patient.data as Json).name) : "";
  const caregiver = !fhirUser.startsWith("Patient/");
  return (
    <header class="top">
      <div class="brand">
        <a href="#/">Patient portal</a>
      </div>
      <div class="who">
        <p>
          Signed in as <strong data-testid="user-name">{user.data || (user.loading ? "…" : "you")}</strong>
        </p>
        {caregiver && (
          <p>
            Acting for <strong data-testid="acting-for">{patientName || "…"}</strong>{" "}
            <button type="button" class="small" onClick={onSwitch}>
              Switch patient
            </button>
          </p>
        )}
        {patient.error && <p class="problem">{problemText(patient.error)}</p>}
      </div>
    </header>
  );
}

/** The signed-in person's name: their FHIR resource (fhirUser) when the token may read
 * it, else OpenID Connect userinfo when the server offers it. */
async function userName(client: any, fhirUser: string): Promise<string> {
  try {
    const me = (await client.request(fhirUser)) as Json;
    const name = humanName(me.name);
    if (name) return name;
  } catch {
    // a caregiver's Person is not in the patient's compartment: not readable here
  }
  try {
    const base = client.state.serverUrl.replace(/\/$/, "");
    const discovery = await (await fetch(`${base}/.well-known/openid-configuration`)).json();
    if (discovery.userinfo_endpoint) {
      const response = await fetch(discovery.userinfo_endpoint, {
        headers: { Authorization: `Bearer ${client.state.tokenResponse.access_token}` },
      });
      if (response.ok) {
        const info = await response.json();
        if (info.name) return info.name as string;
      }
    }
  } catch {
    // no userinfo
  }
  return fhirUser.startsWith("Patient/") ? "you" : "a caregiver";
}
