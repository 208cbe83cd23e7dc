// The one way the console talks to the server: JSON in and out, and every failure turned
// into an `ApiError` carrying the server's own `{"error": "..."}` message.
//
// A server with users wants a sign-in: every call carries this tab's session token (kept in
// sessionStorage, gone when the tab closes) and the console's header, which makes the server
// challenge with `Bearer` rather than `Basic` so the browser shows no dialog of its own. A
// 401 from the sign-in realm ends the session and fires `SIGN_IN_EVENT`; main.js then shows
// the sign-in form.

export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.name = 'ApiError';
    this.status = status;
  }
}

/** Fired on `window` whenever a request reaches the server (`ok`) or does not. */
export const CONNECTION_EVENT = 'freshet:connection';

/** Fired on `window` when the server asks for a sign-in; `detail.sessionEnded` says whether
 * this tab had a session the server no longer takes (expired, or its user removed). */
export const SIGN_IN_EVENT = 'freshet:sign-in';

/** Fired on `window` when this tab signs in or out. */
export const SESSION_EVENT = 'freshet:session';

const SESSION_KEY = 'freshet.session';

/** The sign-in realm's challenge; the guard's admin token has a realm of its own. */
const SIGN_IN_REALM = /realm="freshet"/;

function reportConnection(ok) {
  window.dispatchEvent(new CustomEvent(CONNECTION_EVENT, { detail: { ok } }));
}

/** This tab's session: `{ token, principal, expires_at }`, or null. */
export function session() {
  try {
    return JSON.parse(window.sessionStorage.getItem(SESSION_KEY));
  } catch {
    return null;
  }
}

/** Keeps the answer of `POST /api/v1/auth/token` as this tab's session. */
export function startSession(grant) {
  window.sessionStorage.setItem(SESSION_KEY, JSON.stringify(grant));
  window.dispatchEvent(new CustomEvent(SESSION_EVENT));
}

export function endSession() {
  window.sessionStorage.removeItem(SESSION_KEY);
  window.dispatchEvent(new CustomEvent(SESSION_EVENT));
}

/** Gets a token for `username` and keeps it as this tab's session. */
export async function signIn(username, password) {
  const grant = await api('/api/v1/auth/token', { method: 'POST', body: { username, password }, signingIn: true });
  startSession(grant);
  return grant;
}

/**
 * `api('/api/v1/topics')`, `api(path, { method: 'POST', body })`. Resolves to the parsed
 * JSON (null for an empty answer); rejects with an `ApiError`. `token` replaces the session's
 * (the guard's admin token): its 401 is about that token, so it does not end the session.
 */
export async function api(path, { method = 'GET', body, token, signingIn = false } = {}) {
  const headers = { accept: 'application/json', 'x-freshet-console': '1' };
  if (body !== undefined) headers['content-type'] = 'application/json';
  const bearer = token || (signingIn ? null : session()?.token);
  if (bearer) headers.authorization = `Bearer ${bearer}`;
  let response;
  try {
    response = await fetch(path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      cache: 'no-store',
    });
  } catch (error) {
    reportConnection(false);
    throw new ApiError(0, `the server did not answer (${error.message})`);
  }
  reportConnection(true);
  const text = await response.text();
  let json = null;
  if (text) {
    try {
      json = JSON.parse(text);
    } catch {
      json = null;
    }
  }
  if (!response.ok) {
    const message = json && typeof json.error === 'string'
      ? json.error
      : `${response.status} ${response.statusText}`.trim();
    if (response.status === 401 && !token && !signingIn) askForSignIn(response);
    throw new ApiError(response.status, message);
  }
  return json;
}

function askForSignIn(response) {
  if (!SIGN_IN_REALM.test(response.headers.get('www-authenticate') ?? '')) return;
  const sessionEnded = session() !== null;
  if (sessionEnded) endSession();
  window.dispatchEvent(new CustomEvent(SIGN_IN_EVENT, { detail: { sessionEnded } }));
}

/** A path segment, escaped: topic and group names may hold any character. */
export function segment(value) {
  return encodeURIComponent(String(value));
}
