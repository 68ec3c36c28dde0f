// The portal's entry: the welcome page with "Sign in", the return from the authorization
// server (code exchange with PKCE), and the signed-in portal.
import { render } from "preact";
import { useState } from "preact/hooks";
import "./styles.css";
import { Portal, Emergency, Offline, currentRoute } from "./app";
import {
  Capabilities,
  SessionContext,
  clearCache,
  isOffline,
  onSessionEnded,
  problemText,
  type Session,
} from "./data";
import {
  ROUTE_KEY,
  forget,
  hasSession,
  loadConfig,
  ready,
  signIn,
  signOut,
  type PortalConfig,
} from "./smart";

const root = document.getElementById("app") as HTMLElement;

function Welcome({ config, message, offline }: { config: PortalConfig | null; message?: string; offline?: boolean }) {
  const [busy, setBusy] = useState(false);
  const [problem, setProblem] = useState<string | undefined>();
  const start = async () => {
    if (!config) return;
    setBusy(true);
    try {
      await signIn(config, location.hash);
    } catch (error) {
      setBusy(false);
      setProblem(problemText(error));
    }
  };
  return (
    <>
      <header class="top">
        <div class="brand">Patient portal</div>
      </header>
      <Offline />
      <main id="content" class="page welcome">
        <h1>Welcome to your patient portal</h1>
        {message && (
          <p class="notice" role="status">
            {message}
          </p>
        )}
        <p>See your health record, test results, medications and more.</p>
        {config && config.signIn === false ? (
          <p class="problem" role="alert">
            Signing in is turned off on this server (it runs without authorization,
            FHIR_SERVER_AUTH=off), and the portal needs it.
          </p>
        ) : offline ? (
          <p class="problem" role="alert">
            You are offline. The portal needs the internet to show your record: connect, then reload
            this page.
          </p>
        ) : config ? (
          <button type="button" class="primary" onClick={start} disabled={busy}>
            {busy ? "Signing in…" : "Sign in"}
          </button>
        ) : (
          <p class="problem" role="alert">
            The portal is not set up: its settings could not be loaded.
          </p>
        )}
        {problem && (
          <p class="problem" role="alert">
            Could not start signing in: {problem}
          </p>
        )}
      </main>
      <Emergency />
    </>
  );
}

function showWelcome(config: PortalConfig | null, message?: string, offline?: boolean) {
  render(<Welcome config={config} message={message} offline={offline} />, root);
}

/** The offline service worker (sw.js: it keeps the app shell, never data). */
function keepTheShell() {
  if ("serviceWorker" in navigator) navigator.serviceWorker.register("sw.js").catch(() => undefined);
}

async function start() {
  keepTheShell();
  let config: PortalConfig | null = null;
  try {
    config = await loadConfig();
  } catch (error) {
    showWelcome(null, undefined, isOffline(error));
    if (isOffline(error)) addEventListener("online", () => location.reload(), { once: true });
    return;
  }
  const denied = new URLSearchParams(location.search).get("error");
  if (!hasSession()) {
    showWelcome(config);
    return;
  }
  let session: Session;
  try {
    const client = await ready();
    const patientId = client.patient.id;
    if (!patientId) throw new Error("the sign-in gave no patient to show");
    const fhirUser = client.getFhirUser() || `Patient/${patientId}`;
    session = { client, patientId, fhirUser, capabilities: await Capabilities.load(client) };
  } catch (error) {
    forget();
    history.replaceState(null, "", location.pathname);
    const message = denied
      ? "Sign-in was cancelled: the portal was not given access."
      : `Please sign in again (${problemText(error)}).`;
    showWelcome(config, message);
    return;
  }
  const saved = sessionStorage.getItem(ROUTE_KEY);
  if (saved !== null) {
    sessionStorage.removeItem(ROUTE_KEY);
    if (saved && saved !== location.hash) location.hash = saved;
  }
  onSessionEnded(() => {
    onSessionEnded(() => undefined); // once, however many requests fail together
    forget();
    clearCache();
    history.replaceState(null, "", location.pathname);
    showWelcome(config, "Your session has ended. Please sign in again.");
  });
  const onSignOut = async () => {
    const revoked = await signOut(session.client);
    clearCache();
    history.replaceState(null, "", location.pathname);
    showWelcome(
      config,
      revoked
        ? "You have signed out. Your session on this device has ended."
        : "You have signed out on this device.",
    );
  };
  const onSwitch = async () => {
    // a new launch: the server's pages ask whom to act for (SMART's patient picker)
    const route = `#/${currentRoute()[0]}`;
    await signOut(session.client);
    clearCache();
    await signIn(config as PortalConfig, route);
  };
  render(
    <SessionContext.Provider value={session}>
      <Portal onSignOut={onSignOut} onSwitch={onSwitch} />
    </SessionContext.Provider>,
    root,
  );
}

start();
