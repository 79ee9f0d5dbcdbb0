// The HTTP API client: the token from sessionStorage goes in the Authorization header only.

const TOKEN_KEY = "malwaresnipper.token";

/** The gateway token, kept for this tab only (sessionStorage), never in a URL. */
export const token = {
  get() { return sessionStorage.getItem(TOKEN_KEY); },
  set(value) { sessionStorage.setItem(TOKEN_KEY, value); },
  clear() { sessionStorage.removeItem(TOKEN_KEY); },
};

/** A non-2xx answer, with the API's error code and the message that says what to fix. */
export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

let unauthorizedHandler = () => {};
/** Called when the API answers 401 (wrong or revoked token). */
export function onUnauthorized(handler) { unauthorizedHandler = handler; }

/** Drop empty values so filters left blank do not reach the query string. */
function buildUrl(path, params) {
  const url = new URL(path, window.location.origin);
  for (const [key, value] of Object.entries(params || {})) {
    if (value !== undefined && value !== null && value !== "") url.searchParams.set(key, String(value));
  }
  return url;
}

/**
 * Call the API. Returns parsed JSON, or the Response itself with `raw: true` (exports).
 * Throws ApiError on an HTTP error and TypeError when the gateway cannot be reached.
 */
export async function api(path, { method = "GET", params, body, raw = false, auth = true, tokenOverride } = {}) {
  const headers = { Accept: raw ? "*/*" : "application/json" };
  const bearer = tokenOverride ?? token.get();
  if (auth && bearer) headers.Authorization = `Bearer ${bearer}`;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const response = await fetch(buildUrl(path, params), {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
    cache: "no-store",
    credentials: "omit",
    referrerPolicy: "no-referrer",
  });
  if (!response.ok) {
    let code = `http_${response.status}`;
    let message = response.statusText || `HTTP ${response.status}`;
    try {
      const data = await response.json();
      if (data && data.error) {
        code = data.error.code || code;
        message = data.error.message || message;
      }
    } catch { /* not JSON: keep the status text */ }
    if (response.status === 401 && auth && tokenOverride === undefined) unauthorizedHandler();
    throw new ApiError(response.status, code, message);
  }
  if (raw) return response;
  if (response.status === 204) return null;
  return response.json();
}
