// The gateway's HTTP API as the extension uses it. Every call has a timeout and never throws:
// it resolves to { ok, status, data, offline, error } so callers can decide what to do.

export const REQUEST_TIMEOUT_MS = 10_000;

/**
 * A page's strings (title, HTML, script text) can hold unpaired UTF-16 surrogates, and slicing
 * a string can split a pair; the gateway refuses such JSON (RFC 7493), which would leave the page
 * unscanned. Replace each with U+FFFD, as the browser does when it encodes text as UTF-8.
 */
const wellFormed = (_key, value) => (typeof value === "string" ? value.toWellFormed() : value);

export async function callGateway(settings, method, path, { body, timeoutMs = REQUEST_TIMEOUT_MS, auth = true } = {}) {
  const controller = new AbortController();
  const timer = setTimeout(() => controller.abort(), timeoutMs);
  const headers = { Accept: "application/json" };
  if (auth && settings.token) headers.Authorization = `Bearer ${settings.token}`;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  try {
    const response = await fetch(settings.gatewayUrl + path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body, wellFormed),
      signal: controller.signal,
      credentials: "omit",
      cache: "no-store",
    });
    let data = null;
    try {
      data = await response.json();
    } catch {
      data = null;
    }
    const error = response.ok ? "" : (data && data.error && data.error.message) || `HTTP ${response.status}`;
    return { ok: response.ok, status: response.status, data, offline: false, timedOut: false, error };
  } catch (err) {
    const timedOut = err && err.name === "AbortError";
    return {
      ok: false,
      status: 0,
      data: null,
      offline: true,
      timedOut,
      error: timedOut ? `no answer within ${timeoutMs / 1000} s` : "gateway unreachable",
    };
  } finally {
    clearTimeout(timer);
  }
}

export const getHealth = (settings, timeoutMs = 3000) =>
  callGateway(settings, "GET", "/api/v1/health", { auth: false, timeoutMs });

/** Submit a capture and wait for its verdict (see README: why ?wait=true). */
export const submitCapture = (settings, capture) =>
  callGateway(settings, "POST", "/api/v1/scans?wait=true", { body: capture });

/** What the gateway already judged of scripts (by URL or sha256) and pages: POST /api/v1/verdicts/lookup. */
export const lookupVerdicts = (settings, body) =>
  callGateway(settings, "POST", "/api/v1/verdicts/lookup", { body, timeoutMs: 5000 });

export const allowSite = (settings, host) =>
  callGateway(settings, "POST", "/api/v1/lists/allow", {
    body: { entry: host, kind: "domain", note: "allowed from the browser extension" },
  });

/** "This page is safe" / "This page is dangerous" about the gateway's scan `scanId`. */
export const reportScan = (settings, scanId, verdict) =>
  callGateway(settings, "POST", `/api/v1/scans/${encodeURIComponent(scanId)}/reports`, {
    body: { verdict, source: "extension" },
  });

/** The user went past the warning about scan `scanId` ("proceed_anyway" or "always_allow"). */
export const recordOverride = (settings, scanId, action) =>
  callGateway(settings, "POST", `/api/v1/scans/${encodeURIComponent(scanId)}/overrides`, {
    body: { action, source: "extension" },
  });

export const getAllowlist = (settings) => callGateway(settings, "GET", "/api/v1/lists/allow", { timeoutMs: 5000 });

/** Check the address and the token: health (no auth), then an authenticated call. */
export async function testConnection(settings) {
  const health = await getHealth(settings, 5000);
  if (!health.ok || !health.data || health.data.status !== "ok") {
    return { ok: false, message: `Cannot reach a MalwareSnipper gateway at ${settings.gatewayUrl} (${health.error || "unexpected answer"}).` };
  }
  if (!settings.token) return { ok: false, message: "The gateway answers, but no token is set. Run `malwaresnipper token` and paste it here." };
  const stats = await callGateway(settings, "GET", "/api/v1/stats", { timeoutMs: 5000 });
  if (stats.status === 401 || stats.status === 403) {
    return { ok: false, message: "The gateway answers, but it rejected the token. Run `malwaresnipper token` and paste it here." };
  }
  if (!stats.ok) return { ok: false, message: `The gateway answered with an error: ${stats.error}` };
  const version = health.data.version ? ` ${health.data.version}` : "";
  return { ok: true, message: `Connected to MalwareSnipper${version}; the token is accepted.` };
}
