// Loading data over the FHIR API with the signed-in client, once per view and patient
// (kept for the session so moving between screens does not fetch again), and what the
// server offers (its CapabilityStatement, https://hl7.org/fhir/R4/capabilitystatement.html).
import { createContext } from "preact";
import { useContext, useEffect, useState } from "preact/hooks";
import type { Client } from "./smart";
import { entriesOf, type Json } from "./fhir";

export interface Session {
  client: Client;
  patientId: string;
  /** "Patient/1", "RelatedPerson/2", "Person/3": who signed in. */
  fhirUser: string;
  capabilities: Capabilities;
}

export const SessionContext = createContext<Session | null>(null);

export function useSession(): Session {
  const session = useContext(SessionContext);
  if (!session) throw new Error("no session");
  return session;
}

export interface Loaded<T> {
  data?: T;
  error?: string;
  loading: boolean;
}

const cache = new Map<string, Promise<unknown>>();
let sessionEnded: (() => void) | null = null;

/** What to do when the server no longer accepts the session (a 401, or a refused refresh:
 * the grant was revoked or has expired): the portal then asks to sign in again. */
export function onSessionEnded(handler: () => void): void {
  sessionEnded = handler;
}

function endsSession(error: any): boolean {
  if (isOffline(error)) return false; // no answer: the session may well be alive
  return statusOf(error) === 401 || /refresh/i.test(String(error?.message || ""));
}

export function clearCache(): void {
  cache.clear();
}

/** Forget what was loaded under keys that start with ``prefix`` (the next screen that
 * needs it loads it again: e.g. Home's unread count after a message is read). */
export function dropCached(prefix: string): void {
  for (const key of [...cache.keys()]) if (key.startsWith(prefix)) cache.delete(key);
}

/** Run ``load`` once per key in this session; re-render with its result. */
export function useLoad<T>(key: string, load: () => Promise<T>): Loaded<T> {
  const [state, setState] = useState<Loaded<T>>({ loading: true });
  useEffect(() => {
    let live = true;
    let promise = cache.get(key) as Promise<T> | undefined;
    if (!promise) {
      promise = load();
      cache.set(key, promise);
      promise.catch(() => cache.delete(key));
    }
    promise.then(
      (data) => live && setState({ data, loading: false }),
      (error) => {
        if (endsSession(error) && sessionEnded) sessionEnded();
        else if (live) setState({ error: problemText(error), loading: false });
      },
    );
    return () => {
      live = false;
    };
  }, [key]);
  return state;
}

/** Search the patient's resources: every page (up to ``pages``), as a flat list. */
export async function search(client: Client, query: string, pages = 5): Promise<Json[]> {
  const bundles = (await client.request(query, { pageLimit: pages })) as Json | Json[];
  return entriesOf(bundles);
}

/** The HTTP status of a failed request (fhirclient's HttpError, or our own), if any. */
export function statusOf(error: any): number | undefined {
  const status = error?.status ?? error?.statusCode ?? error?.response?.status;
  return typeof status === "number" ? status : undefined;
}

/** Whether a request failed because the network is down (no answer at all). */
export function isOffline(error: any): boolean {
  if (typeof navigator !== "undefined" && navigator.onLine === false) return true;
  const message = String(error?.message || error);
  return error instanceof TypeError && /fetch|network|load failed/i.test(message);
}

/** The server's words for a refusal: the OperationOutcome's diagnostics (or details). */
export function serverText(error: any): string {
  // fhirclient's HttpError puts the response body after its first line
  const message = String(error?.message || error);
  const start = message.indexOf("{");
  if (start >= 0) {
    try {
      const body = JSON.parse(message.slice(start));
      const issue = body.issue?.[0];
      if (issue?.diagnostics || issue?.details?.text) return issue.diagnostics || issue.details.text;
      if (body.error_description) return body.error_description;
    } catch {
      // not JSON after all
    }
  }
  return "";
}

const BY_STATUS: Record<number, string> = {
  400: "the server could not read the request",
  403: "you are not allowed to do this",
  404: "it was not found (it may have been removed)",
  409: "it was changed by someone else meanwhile: please try again",
  413: "the file is too large",
  415: "this kind of file is not accepted",
  422: "the server refused it",
  429: "too many requests: please wait a minute and try again",
  501: "this is not available on this server",
  502: "a service the server relies on is not answering: please try again later",
  503: "the server is busy: please try again in a minute",
};

/** A sentence for an error: "offline", else the server's OperationOutcome text when
 * there is one, else the HTTP status in words (never a bare code). */
export function problemText(error: any): string {
  if (isOffline(error)) return "you are offline (or the server cannot be reached): try again when you are back online";
  const text = serverText(error);
  if (text) return text;
  const status = statusOf(error);
  if (status !== undefined) {
    if (BY_STATUS[status]) return BY_STATUS[status];
    if (status >= 500) return "the server had a problem: please try again later";
  }
  const message = String(error?.message || error).split("\n")[0];
  return /^\d{3}\b/.test(message) ? "the server refused it" : message;
}

/** A sentence for a refused action: the screen's own words for the statuses it expects
 * (each a text, or a function of the server's text), else :func:`problemText`. */
export function refusalText(
  error: any,
  words: Record<number, string | ((server: string) => string)>,
): string {
  if (isOffline(error)) return problemText(error);
  const status = statusOf(error);
  const said = status !== undefined ? words[status] : undefined;
  if (said === undefined) return problemText(error);
  return typeof said === "function" ? said(serverText(error)) : said;
}

export class Capabilities {
  constructor(private statement: Json) {}

  static async load(client: Client): Promise<Capabilities> {
    try {
      return new Capabilities((await client.request("metadata")) as Json);
    } catch {
      return new Capabilities({});
    }
  }

  private resource(type: string): Json | undefined {
    for (const rest of this.statement.rest || []) {
      for (const resource of rest.resource || []) if (resource.type === type) return resource;
    }
    return undefined;
  }

  /** Whether the server lists the operation ``$name`` on ``type`` (or at system level). */
  operation(type: string, name: string): boolean {
    const ops = [...(this.resource(type)?.operation || [])];
    for (const rest of this.statement.rest || []) ops.push(...(rest.operation || []));
    return ops.some((op: Json) => op.name === name || op.name === `$${name}`);
  }

  /** Whether the server supports the interaction (read, search-type, create...) on ``type``. */
  interaction(type: string, code: string): boolean {
    return (this.resource(type)?.interaction || []).some((i: Json) => i.code === code);
  }
}
