// The extension's service worker: decides which pages are sent, posts captures to the gateway,
// keeps the event stream open for the popup, and turns verdicts into badges, notifications and
// the warning overlay. All state lives in chrome.storage (see lib/state.js): MV3 may stop this
// worker at any time, and every entry point below starts by reconnecting.

import { capturePolicy } from "./lib/policy.js";
import { loadSettings } from "./lib/settings.js";
import * as gateway from "./lib/gateway.js";
import * as state from "./lib/state.js";
import { enqueue, drain, queueLength } from "./lib/queue.js";
import { EventStream } from "./lib/events.js";
import { setBadge } from "./lib/badge.js";
import { explainVerdict, topIndicators, userReasons } from "./lib/explain.js";

/** What the content script collects at most (characters); keeps captures small and fast. */
const CAPTURE_LIMITS = Object.freeze({
  maxHtmlChars: 500_000,
  maxInlineScripts: 50,
  maxScriptChars: 200_000,
  maxTotalScriptChars: 2_000_000, // inline and external together
  maxExternalScripts: 20,
  maxExternalScriptBytes: 300_000,
  externalFetchTimeoutMs: 3000,
  maxForms: 50,
  maxIframes: 50,
  maxTextExcerpt: 2000,
});

const LEVELS = ["BENIGN", "SUSPICIOUS", "MALICIOUS"];

// ---------------------------------------------------------------- connection to the gateway

// Messages are handled one at a time, in order: counts and alerts are read-modify-write.
let messageChain = Promise.resolve();

const stream = new EventStream({
  onOpen: () => onStreamOpen(),
  onMessage: (msg) => {
    messageChain = messageChain.then(() => onStreamMessage(msg)).catch((err) => console.warn("event handling failed", err));
  },
  onClose: (info) => onStreamClose(info),
  onRetry: () => ensureConnected(),
});

let connecting = null;

/** Open the event stream if it is not open (single flight); records the outcome in `conn`. */
function ensureConnected() {
  if (!connecting) {
    connecting = connect().finally(() => {
      connecting = null;
    });
  }
  return connecting;
}

async function connect() {
  const settings = await loadSettings();
  if (!settings.enabled) {
    stream.close();
    await state.setConn({ status: "disabled", message: "Protection is turned off." });
    return;
  }
  if (!settings.token) {
    stream.close();
    await state.setConn({ status: "unconfigured", message: "Set the gateway token in the options." });
    return;
  }
  if (stream.isActive) return;
  const health = await gateway.getHealth(settings);
  if (!health.ok || !health.data) {
    await state.setConn({ status: "offline", message: `Gateway offline at ${settings.gatewayUrl}.` });
    stream.retryLater();
    return;
  }
  const eventsUrl = health.data.events_url || "ws://127.0.0.1:8765/";
  await state.setConn({ version: health.data.version || "", eventsOrigin: eventsUrl.replace(/^ws/, "http") });
  stream.connect(eventsUrl, settings.token);
}

async function onStreamOpen() {
  await state.setConn({ status: "online", message: "Connected to the gateway." });
  const settings = await loadSettings();
  await Promise.all([refreshTodayCounts(settings), refreshAllowlist(settings)]);
  await flushQueue();
}

async function onStreamClose({ code, reason }) {
  if (code === 4401) {
    await state.setConn({ status: "unauthorized", message: "The gateway rejected the token; check the options." });
  } else {
    const settings = await loadSettings();
    if (settings.enabled && settings.token) {
      await state.setConn({ status: "offline", message: `Gateway offline at ${settings.gatewayUrl}.${reason ? ` (${reason})` : ""}` });
    }
  }
}

async function onStreamMessage(msg) {
  if (msg.type === "snapshot") {
    const alerts = (msg.recent || []).filter((s) => s.threat_level && s.threat_level !== "BENIGN").map(alertFromSummary);
    await state.setRecentAlerts(alerts);
  } else if (msg.type === "lists_changed") {
    await refreshAllowlist(await loadSettings());
  } else if (msg.type === "event" && msg.status === "SCAN_COMPLETE") {
    await onScanComplete(msg);
  }
}

async function onScanComplete(ev) {
  if (isToday(ev.ts) && !ev.replay) {
    // (replays and older events are already in the totals fetched at connect time)
    const counts = await state.getCounts();
    counts.total += 1;
    counts[ev.threat_level] = (counts[ev.threat_level] || 0) + 1;
    await state.setCounts(counts);
  }
  if (ev.threat_level !== "BENIGN") {
    const top = topIndicators(ev.indicators, 1)[0];
    await state.addRecentAlert(
      alertFromSummary({ ...ev, top_indicator: top ? top.title : "" }),
    );
  }
  // A verdict for a page open in a tab that is still waiting (its POST timed out, or the proxy
  // scanned it): show it there too.
  for (const tab of await state.allTabs()) {
    if (tab.url === ev.url && ["scanning", "timeout", "queued"].includes(tab.status)) {
      const unread = Array.isArray(tab.unread) ? tab.unread : [];
      const verdict = unread.length ? await withKnownScripts(await loadSettings(), unread, ev) : ev;
      await applyVerdict(tab.tabId, ev.url, ev.scan_id, verdict, ev.method);
    }
  }
}

function isToday(ts) {
  const when = ts ? new Date(ts) : new Date();
  return state.localDay(when) === state.localDay();
}

function alertFromSummary(s) {
  let indicator = s.top_indicator;
  if (indicator && typeof indicator === "object") indicator = indicator.title || indicator.id || "";
  return {
    scan_id: String(s.scan_id || ""),
    ts: String(s.ts || ""),
    url: String(s.url || ""),
    threat_level: String(s.threat_level || ""),
    classification: String(s.classification || ""),
    method: String(s.method || ""),
    top_indicator: String(indicator || ""),
  };
}

/** Today's totals by level, from the history API (the stream then adds live events). */
async function refreshTodayCounts(settings) {
  const midnight = new Date();
  midnight.setHours(0, 0, 0, 0);
  const since = encodeURIComponent(midnight.toISOString());
  const counts = { total: 0, BENIGN: 0, SUSPICIOUS: 0, MALICIOUS: 0 };
  for (const level of LEVELS) {
    const res = await gateway.callGateway(settings, "GET", `/api/v1/scans?level=${level}&since=${since}&limit=1`, { timeoutMs: 5000 });
    if (!res.ok || !res.data) return;
    counts[level] = Number(res.data.total) || 0;
    counts.total += counts[level];
  }
  await state.setCounts(counts);
}

async function refreshAllowlist(settings) {
  const res = await gateway.getAllowlist(settings);
  if (res.ok && res.data && Array.isArray(res.data.items)) {
    await state.setAllowEntries(res.data.items.map((i) => ({ entry: String(i.entry), kind: String(i.kind || "domain") })));
  }
}

// ---------------------------------------------------------------- captures

async function policyFor(url, tab) {
  const settings = await loadSettings();
  const gatewayOrigins = [settings.gatewayUrl];
  const conn = await state.getConn();
  if (conn.eventsOrigin) gatewayOrigins.push(conn.eventsOrigin);
  const decision = capturePolicy(url, {
    enabled: settings.enabled,
    incognito: Boolean(tab && tab.incognito),
    scanIncognito: settings.scanIncognito,
    gatewayOrigins,
    pausedSites: settings.pausedSites,
    allowEntries: await state.getAllowEntries(),
  });
  return { settings, decision };
}

async function onPageLoaded(tab, url) {
  await chrome.storage.session.set({ lastContentTab: tab.id });
  const { decision } = await policyFor(url, tab);
  if (!decision.capture) {
    await state.setTab(tab.id, { status: "skipped", url, reason: decision.reason });
    await setBadge(tab.id, "skipped");
    return { capture: false, reason: decision.reason };
  }
  await state.setTab(tab.id, { status: "scanning", url });
  await setBadge(tab.id, "scanning");
  ensureConnected();
  return { capture: true, limits: CAPTURE_LIMITS };
}

async function onCapture(tab, pageUrl, capture) {
  if (!capture || typeof capture !== "object" || capture.url !== pageUrl) {
    return { accepted: false, reason: "the capture does not match the tab" };
  }
  const { settings, decision } = await policyFor(capture.url, tab);
  if (!decision.capture) return { accepted: false, reason: decision.reason };
  // The scripts it could not read go with the tab: a SCAN_COMPLETE event for this page may
  // arrive before the POST's answer, and it must be judged with them too.
  const waiting = await state.getTab(tab.id);
  if (waiting && waiting.url === capture.url) {
    await state.setTab(tab.id, { ...waiting, unread: unreadScripts(capture) });
  }
  // Answer the content script at once; the scan goes on in the background.
  processCapture(settings, tab.id, capture).catch((err) => console.warn("capture failed", err));
  return { accepted: true };
}

/** A smaller capture for a gateway that refused the full one as too large (413). */
function slimmed(capture) {
  let budget = 500_000;
  const scripts = [];
  for (const s of capture.scripts || []) {
    const text = typeof s.text === "string" && s.text.length <= budget ? s.text : undefined;
    if (text !== undefined) {
      budget -= text.length;
      scripts.push(s);
    } else if (s.url) {
      scripts.push({ url: s.url, inline: false });
    }
  }
  const { html, ...rest } = capture;
  return { ...rest, scripts };
}

/** Post a capture; one retry without the HTML when the gateway says it is too large. */
async function send(settings, capture) {
  const res = await gateway.submitCapture(settings, capture);
  return res.status === 413 ? gateway.submitCapture(settings, slimmed(capture)) : res;
}

/** At most this many unread scripts are looked up per page (the gateway takes 100). */
const MAX_LOOKUP_SCRIPTS = 50;

/** The URLs of a capture's scripts this extension could not read (cross-origin without CORS). */
function unreadScripts(capture) {
  return (capture.scripts || [])
    .filter((s) => s && !s.inline && typeof s.url === "string" && typeof s.text !== "string")
    .map((s) => s.url)
    .filter((url) => /^https?:\/\//i.test(url) && url.length <= 2048)
    .slice(0, MAX_LOOKUP_SCRIPTS);
}

/**
 * A cross-origin script served without CORS cannot be read here: the capture carries only its
 * URL, and the page's verdict cannot include it. The gateway may have judged that script already
 * (through the proxy, or another page): ask it, and when a script is known MALICIOUS the page's
 * verdict is a warning naming it. MALICIOUS, not SUSPICIOUS as in the gateway's record: with the
 * extension alone nothing replaced the script, it runs in this page.
 */
async function withKnownScripts(settings, unread, verdict) {
  if (!unread.length || verdict.threat_level === "MALICIOUS") return verdict;
  const res = await gateway.lookupVerdicts(settings, { scripts: unread.map((url) => ({ url })) });
  if (!res.ok || !res.data || !Array.isArray(res.data.scripts)) return verdict;
  const bad = res.data.scripts.filter((s) => s && s.known && s.known.threat_level === "MALICIOUS");
  if (!bad.length) return verdict;
  const found = bad.map((s) => ({
    id: "engine.malicious_script",
    title: `A script this page loads was judged dangerous by your gateway: ${s.url}`,
    severity: "CRITICAL",
    layer: "engine",
    category: "engine",
    classification: String(s.known.classification || "") || null,
    strength: "decisive",
    evidence: [
      { snippet: String(s.url).slice(0, 160), location: "script url", offset: null },
      { snippet: `scan ${s.known.scan_id}`, location: "script scan", offset: null },
    ],
  }));
  const classification = String(bad[0].known.classification || "") || verdict.classification;
  return {
    ...verdict,
    threat_level: "MALICIOUS",
    risk_score: Math.max(Number(verdict.risk_score) || 0, Number(bad[0].known.risk_score) || 0),
    classification,
    indicators: [...found, ...(verdict.indicators || [])],
  };
}

async function processCapture(settings, tabId, capture) {
  const res = await send(settings, capture);
  if (res.ok && res.data && res.data.verdict) {
    await markOnline();
    const verdict = await withKnownScripts(settings, unreadScripts(capture), res.data.verdict);
    await applyVerdict(tabId, capture.url, res.data.scan_id, verdict, "EXTENSION");
    if ((await queueLength()) > 0) flushQueue();
    return;
  }
  if (res.ok && res.data && res.data.status === "pending") {
    await markOnline();
    await markTab(tabId, capture.url, "timeout"); // scan still running: its SCAN_COMPLETE event follows
    return;
  }
  if (res.offline && !(res.timedOut && stream.isOpen)) {
    const waiting = await enqueue({ tabId, capture });
    await state.setConn({ status: "offline", message: `Gateway offline at ${settings.gatewayUrl}; ${waiting} page(s) waiting.` });
    await markTab(tabId, capture.url, "queued");
    ensureConnected();
    return;
  }
  if (res.timedOut) {
    await markTab(tabId, capture.url, "timeout"); // the verdict may still arrive as an event
    return;
  }
  if (res.status === 401 || res.status === 403) {
    await state.setConn({ status: "unauthorized", message: "The gateway rejected the token; check the options." });
  }
  await markTab(tabId, capture.url, "error", res.error);
}

async function markOnline() {
  const conn = await state.getConn();
  if (conn.status !== "online") await state.setConn({ status: "online", message: "Connected to the gateway." });
}

async function markTab(tabId, url, status, error = "") {
  const tab = await state.getTab(tabId);
  if (!tab || tab.url !== url) return;
  await state.setTab(tabId, { ...tab, status, error });
  await setBadge(tabId, status, error);
}

/** Send queued captures; a verdict still reaches its tab if the tab shows the same page. */
async function flushQueue() {
  if ((await queueLength()) === 0) return;
  const settings = await loadSettings();
  if (!settings.enabled || !settings.token) return;
  const result = await drain(async (entry) => {
    const res = await send(settings, entry.capture);
    if (res.ok && res.data && res.data.verdict) {
      const verdict = await withKnownScripts(settings, unreadScripts(entry.capture), res.data.verdict);
      await applyVerdict(entry.tabId, entry.capture.url, res.data.scan_id, verdict, "EXTENSION");
      return true;
    }
    if (res.offline) return false;
    return true; // refused (4xx): retrying the same body cannot succeed
  });
  if (result.delivered) await markOnline();
}

async function applyVerdict(tabId, url, scanId, verdict, method) {
  const tab = await state.getTab(tabId);
  if (!tab || tab.url !== url) return; // the user has moved on
  const level = String(verdict.threat_level || "BENIGN");
  const status = level.toLowerCase();
  const repeated = tab.scan_id === scanId && tab.status === status;
  await state.setTab(tabId, {
    status,
    url,
    scan_id: scanId,
    method,
    risk_score: Number(verdict.risk_score) || 0,
    classification: String(verdict.classification || ""),
    // the reasons a user reads: never a known library's code under "No threat found"
    indicators: userReasons(verdict.indicators, level),
    blocked: Boolean(verdict.blocked),
  });
  await setBadge(tabId, status, `risk ${Math.round(Number(verdict.risk_score) || 0)}`);
  if (level === "MALICIOUS" && !repeated && !(await state.hasProceeded(tabId, url))) {
    await warn(tabId, url, scanId, verdict);
  }
}

async function warn(tabId, url, scanId, verdict) {
  const { headline, reasons, classification } = explainVerdict(verdict);
  const host = new URL(url).hostname;
  chrome.notifications.create(`scan:${tabId}:${scanId}`, {
    type: "basic",
    iconUrl: chrome.runtime.getURL("icons/icon128.png"),
    title: `Dangerous page: ${host}`,
    message: headline,
    priority: 2,
  });
  try {
    await chrome.tabs.sendMessage(
      tabId,
      { type: "show_overlay", url, host, headline, reasons, classification, risk_score: Number(verdict.risk_score) || 0 },
      { frameId: 0 },
    );
  } catch {
    /* the tab navigated away or closed */
  }
}

// ---------------------------------------------------------------- overlay buttons

async function onOverlayAction(tab, url, msg) {
  if (msg.action === "leave") {
    try {
      await chrome.tabs.goBack(tab.id);
    } catch {
      await chrome.tabs.update(tab.id, { url: chrome.runtime.getURL("left.html") });
    }
    return { ok: true };
  }
  if (msg.action === "proceed") {
    await state.markProceeded(tab.id, url);
    await recordOverride(tab.id, url, "proceed_anyway");
    return { ok: true };
  }
  if (msg.action === "report_safe" || msg.action === "report_dangerous") {
    return reportTab(tab.id, url, msg.action === "report_safe" ? "safe" : "dangerous");
  }
  if (msg.action === "allow_site") {
    const host = new URL(url).hostname;
    const settings = await loadSettings();
    const res = await gateway.allowSite(settings, host);
    if (!res.ok) return { ok: false, error: `The gateway did not add ${host} to the allowlist: ${res.error}` };
    const entries = await state.getAllowEntries();
    await state.setAllowEntries([...entries.filter((e) => e.entry !== host), { entry: host, kind: "domain" }]);
    await state.markProceeded(tab.id, url);
    const current = await state.getTab(tab.id);
    await state.setTab(tab.id, { ...(current || {}), url, status: "allowed" });
    await setBadge(tab.id, "allowed");
    recordOverride(tab.id, url, "always_allow").catch(() => undefined); // the user never waits for the record
    return { ok: true };
  }
  return { ok: false, error: "unknown action" };
}

// ---------------------------------------------------------------- feedback: reports and overrides

/** The scan this tab's verdict came from, if it is about `url` (the worker's own record, never
 * an id a page could hand us). */
async function scanOfTab(tabId, url) {
  const tab = await state.getTab(tabId);
  return tab && tab.scan_id && (url === undefined || tab.url === url) ? tab.scan_id : "";
}

/** Record on the gateway that the user went past its warning (best effort: the page stays open). */
async function recordOverride(tabId, url, action) {
  const scanId = await scanOfTab(tabId, url);
  if (!scanId) return;
  const res = await gateway.recordOverride(await loadSettings(), scanId, action);
  if (!res.ok) console.warn(`MalwareSnipper: the gateway did not record the override: ${res.error}`);
}

/** "This page is safe" / "This page is dangerous" on the scan of this tab's page. */
async function reportTab(tabId, url, verdict) {
  const scanId = await scanOfTab(tabId, url);
  if (!scanId) return { ok: false, error: "This page has no scan to report on yet." };
  const res = await gateway.reportScan(await loadSettings(), scanId, verdict);
  if (!res.ok) return { ok: false, error: `The gateway did not record the report: ${res.error}` };
  const current = await state.getTab(tabId);
  if (current) await state.setTab(tabId, { ...current, reported: verdict });
  return { ok: true };
}

// ---------------------------------------------------------------- wiring

chrome.runtime.onMessage.addListener((msg, sender, sendResponse) => {
  if (sender.id !== chrome.runtime.id || !msg || typeof msg !== "object") return false;
  const extensionPage = typeof sender.url === "string" && sender.url.startsWith(chrome.runtime.getURL(""));
  const topFrame = !extensionPage && sender.tab && sender.frameId === 0;
  let work = null;
  if (msg.type === "page_loaded" && topFrame) work = onPageLoaded(sender.tab, sender.url);
  else if (msg.type === "capture" && topFrame) work = onCapture(sender.tab, sender.url, msg.capture);
  else if (msg.type === "overlay_action" && topFrame) work = onOverlayAction(sender.tab, sender.url, msg);
  else if (msg.type === "popup_opened" && extensionPage) work = ensureConnected().then(() => ({ ok: true }));
  else if (msg.type === "report" && extensionPage && Number.isInteger(msg.tabId) && ["safe", "dangerous"].includes(msg.verdict)) {
    work = reportTab(msg.tabId, undefined, msg.verdict);
  }
  else if (msg.type === "settings_saved" && extensionPage) {
    // storage.onChanged already restarted the stream; this only wakes a stopped worker.
    work = ensureConnected().then(() => ({ ok: true }));
  }
  if (!work) return false;
  work.then(sendResponse, (err) => sendResponse({ ok: false, error: String((err && err.message) || err) }));
  return true;
});

chrome.tabs.onRemoved.addListener((tabId) => {
  state.removeTab(tabId);
});

chrome.notifications.onClicked.addListener((id) => {
  const tabId = Number(id.split(":")[1]);
  if (Number.isInteger(tabId)) chrome.tabs.update(tabId, { active: true }).catch(() => undefined);
  chrome.notifications.clear(id);
});

chrome.storage.onChanged.addListener((changes, area) => {
  if (area === "local" && changes.settings) {
    stream.close();
    ensureConnected();
  }
});

chrome.alarms.onAlarm.addListener((alarm) => {
  if (alarm.name === "maintain") {
    ensureConnected().then(flushQueue);
  }
});

chrome.runtime.onInstalled.addListener((details) => {
  if (details.reason === "install") chrome.runtime.openOptionsPage();
});

// Every wake (install, browser start, an event after the worker was stopped) comes through here.
chrome.alarms.get("maintain").then((alarm) => {
  if (!alarm) chrome.alarms.create("maintain", { periodInMinutes: 0.5 });
});
ensureConnected().then(flushQueue);

// For the integration tests and for debugging from chrome://inspect.
globalThis.malwaresnipper = { ensureConnected, flushQueue, stream, CAPTURE_LIMITS };
