// Signing in and out with SMART App Launch 2.x (standalone launch, a public client with
// PKCE: https://hl7.org/fhir/smart-app-launch/app-launch.html) through the SMART
// JavaScript client (npm "fhirclient"), and token revocation (RFC 7009) at sign-out.
//
// The FHIR server the portal talks to is a setting: config.json next to the page (the
// server writes it: FHIR_SERVER_PORTAL_FHIR_BASE_URL, FHIR_SERVER_PORTAL_CLIENT_ID), or an
// "iss" query parameter naming another SMART server's FHIR base.
import FHIR from "fhirclient";
import type Client from "fhirclient/lib/Client";

export type { Client };

export interface PortalConfig {
  fhirBaseUrl: string;
  clientId: string;
  scope: string;
  /** false: the server runs without authorization (FHIR_SERVER_AUTH=off). */
  signIn?: boolean;
}

export const ROUTE_KEY = "portal.route";

// A public client names itself when it refreshes (RFC 6749 section 6: the server needs
// to know whose refresh token it is; there is no client secret to send instead).
FHIR.oauth2.settings.refreshTokenWithClientId = true;

export async function loadConfig(): Promise<PortalConfig> {
  const response = await fetch("config.json", { cache: "no-store" });
  if (!response.ok) throw new Error(`config.json: HTTP ${response.status}`);
  const config = (await response.json()) as PortalConfig;
  const iss = new URLSearchParams(location.search).get("iss");
  if (iss) config.fhirBaseUrl = iss;
  return config;
}

/** The page's own address without query or fragment: the redirect URI. */
export function redirectUri(): string {
  return new URL("./", location.href).href;
}

/** Start a sign-in: to the server's login (and patient picker, and consent) pages. */
export async function signIn(config: PortalConfig, route: string): Promise<void> {
  sessionStorage.setItem(ROUTE_KEY, route);
  await FHIR.oauth2.authorize({
    iss: config.fhirBaseUrl,
    clientId: config.clientId,
    scope: config.scope,
    redirectUri: redirectUri(),
    pkceMode: "required",
  });
}

/** Whether this page load comes back from the authorization server, or a session is kept. */
export function hasSession(): boolean {
  const params = new URLSearchParams(location.search);
  return params.has("code") || params.has("error") || !!sessionStorage.getItem("SMART_KEY");
}

/** The signed-in client: completes the redirect (code exchange) or restores the session. */
export function ready(): Promise<Client> {
  return FHIR.oauth2.ready();
}

/** The discovery document of the server the client signed in to. */
export async function smartConfiguration(client: Client): Promise<Record<string, any>> {
  const base = client.state.serverUrl.replace(/\/$/, "");
  const response = await fetch(`${base}/.well-known/smart-configuration`);
  return response.ok ? response.json() : {};
}

/** Revoke the refresh token (and with it the grant's access tokens), then the access
 * token itself, then forget the session in this browser. Revocation failures do not keep
 * the person signed in here. */
export async function signOut(client: Client): Promise<boolean> {
  let revoked = false;
  try {
    const discovery = await smartConfiguration(client);
    const endpoint = discovery.revocation_endpoint as string | undefined;
    const tokens = client.state.tokenResponse || {};
    if (endpoint) {
      revoked = true;
      for (const [token, hint] of [
        [tokens.refresh_token, "refresh_token"],
        [tokens.access_token, "access_token"],
      ]) {
        if (!token) continue;
        const response = await fetch(endpoint, {
          method: "POST",
          headers: { "Content-Type": "application/x-www-form-urlencoded" },
          body: new URLSearchParams({
            token: token as string,
            token_type_hint: hint as string,
            client_id: client.state.clientId || "",
          }),
        });
        revoked = revoked && response.ok;
      }
    }
  } finally {
    forget();
  }
  return revoked;
}

/** Forget every trace of the session in this browser tab. */
export function forget(): void {
  const key = sessionStorage.getItem("SMART_KEY");
  if (key) sessionStorage.removeItem(JSON.parse(key));
  sessionStorage.removeItem("SMART_KEY");
}
