// The one way the console talks to the server: JSON in and out, and every failure turned
// into an `ApiError` carrying the server's own `{"error": "..."}` message.

export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.name = 'ApiError';
    this.status = status;
  }
}

/** Fired on `window` whenever a request reaches the server (`ok`) or does not. */
export const CONNECTION_EVENT = 'freshet:connection';

function reportConnection(ok) {
  window.dispatchEvent(new CustomEvent(CONNECTION_EVENT, { detail: { ok } }));
}

/**
 * `api('/api/v1/topics')`, `api(path, { method: 'POST', body })`. Resolves to the parsed
 * JSON (null for an empty answer); rejects with an `ApiError`.
 */
export async function api(path, { method = 'GET', body, token } = {}) {
  const headers = { accept: 'application/json' };
  if (body !== undefined) headers['content-type'] = 'application/json';
  if (token) headers.authorization = `Bearer ${token}`;
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
    throw new ApiError(response.status, message);
  }
  return json;
}

/** A path segment, escaped: topic and group names may hold any character. */
export function segment(value) {
  return encodeURIComponent(String(value));
}
