// MalwareSnipper dashboard: sign-in, live feed, stats and charts, scan detail, history, lists.
//
// Live data comes only from the event stream (snapshot + events); stats are re-read from the API
// after events (debounced), never on a timer. Every string that came from a page is inserted as
// text through dom.js.

import { api, ApiError, onUnauthorized, token } from "./api.js";
import { $, $$, append, clear, el, setText } from "./dom.js";
import { EventStream } from "./stream.js";
import { Charts } from "./charts.js";

const LEVELS = new Set(["BENIGN", "SUSPICIOUS", "MALICIOUS"]);
const SEVERITIES = new Set(["INFO", "LOW", "MEDIUM", "HIGH", "CRITICAL"]);
const STATUS_RANK = { SCAN_STARTED: 0, SCAN_UPDATE: 1, SCAN_COMPLETE: 2 };
const FEED_MAX_ROWS = 200;
const HISTORY_PAGE = 50;
const STATS_DEBOUNCE_MS = 400;
const STATS_MAX_WAIT_MS = 2000;

const state = {
  feed: new Map(),         // scan_id -> { data, row, cells }
  pending: [],             // events waiting for the next animation frame
  flushScheduled: false,
  stats: null,
  history: { offset: 0, total: 0 },
  view: "live",
  detailId: null,
  health: null,
};

let charts = null;
const stream = new EventStream({
  resolveUrl: async () => {
    const health = await api("/api/v1/health", { auth: false });
    state.health = health;
    return health.events_url;
  },
  getToken: () => token.get(),
  onSnapshot: handleSnapshot,
  onEvent: (event) => { state.pending.push(event); scheduleFlush(); },
  onMessage: handleMessage,
  onState: showConnection,
  onUnauthorized: () => signOut("The gateway refused the token. Sign in again."),
});

// ---------------------------------------------------------------- formatting helpers

const levelOf = (value) => (LEVELS.has(value) ? value : null);
const pad = (n) => String(n).padStart(2, "0");

function parseTs(ts) {
  if (ts === undefined || ts === null || ts === "") return null;
  const date = typeof ts === "number" ? new Date(ts < 1e12 ? ts * 1000 : ts) : new Date(ts);
  return Number.isNaN(date.getTime()) ? null : date;
}
function timeText(ts) {
  const d = parseTs(ts);
  return d ? `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}` : "";
}
function dateTimeText(ts) {
  const d = parseTs(ts);
  return d ? `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${timeText(ts)}` : "";
}
function scoreText(score) {
  return typeof score === "number" && Number.isFinite(score) ? score.toFixed(1) : "";
}
function hostOf(url) {
  try { return new URL(url).hostname; } catch { return ""; }
}
function levelBadge(level, fallback = "scanning") {
  const known = levelOf(level);
  return el("span", { class: `badge level-${known || "NONE"}`, text: known || fallback });
}

// ---------------------------------------------------------------- connection + sign-in

function showConnection(stateName, detail) {
  const conn = $("#conn");
  conn.dataset.state = stateName;
  const label = stateName === "online" ? "live" : stateName === "connecting" ? "connecting…" : "offline";
  setText($("#conn-text"), detail && detail !== label ? `${label}: ${detail}` : label);
  conn.title = stream.lastSeq === null ? "" : `last event seq ${stream.lastSeq}`;
}

async function signIn(event) {
  event.preventDefault();
  const input = $("#token-input");
  const value = input.value.trim();
  setText($("#signin-error"), "");
  if (!value) return;
  try {
    await api("/api/v1/stats", { tokenOverride: value });
  } catch (err) {
    setText($("#signin-error"), err instanceof ApiError && err.status === 401
      ? "That token was refused. Print the right one with `malwaresnipper token`."
      : `Could not reach the gateway (${err.message}).`);
    return;
  }
  token.set(value);
  input.value = "";
  start();
}

function signOut(message = "") {
  stream.stop();
  token.clear();
  state.feed.clear();
  clear($("#feed-body"));
  clear($("#history-body"));
  closeDetail();
  $("#signin").hidden = false;
  $("#tabs").hidden = true;
  $("#signout").hidden = true;
  $$(".view").forEach((v) => { v.hidden = true; });
  setText($("#signin-error"), message);
}

function start() {
  $("#signin").hidden = true;
  $("#tabs").hidden = false;
  $("#signout").hidden = false;
  if (!charts) charts = new Charts();
  showView(state.view);
  stream.start();
  openFromHash();
}

// A link to one scan (alerts carry them): <dashboard>/#scan=<scan id> opens its detail once signed in.
const SCAN_LINK = /^#scan=([A-Za-z0-9_-]{1,64})$/;

function openFromHash() {
  const match = SCAN_LINK.exec(window.location.hash);
  if (match && token.get()) openDetail(match[1]);
}

function showView(name) {
  state.view = name;
  for (const tab of $$("#tabs .tab")) tab.setAttribute("aria-selected", String(tab.dataset.view === name));
  for (const view of $$(".view")) view.hidden = view.id !== `view-${name}`;
  if (name === "history") loadHistory();
  if (name === "lists") loadLists();
}

// ---------------------------------------------------------------- snapshot, events, feed

function handleSnapshot(msg, { resumed }) {
  renderStats(msg.stats);
  const recent = Array.isArray(msg.recent) ? msg.recent.slice() : [];
  // Oldest first, so the newest ends up on top of the feed.
  recent.sort((a, b) => (parseTs(a.ts)?.getTime() ?? 0) - (parseTs(b.ts)?.getTime() ?? 0));
  for (const summary of recent) applySummary(summary);
  trimFeed();
  updateEmptyState();
  if (resumed) scheduleStatsRefresh();
}

function handleMessage(msg) {
  if (msg.type === "lists_changed" && state.view === "lists") loadLists();
  if (msg.type === "feedback_changed") {
    // A report or an override was recorded: the open detail and the history marker show it.
    if (state.detailId && msg.scan_id === state.detailId) openDetail(state.detailId);
    if (state.view === "history") loadHistory();
  }
}

function scheduleFlush() {
  if (state.flushScheduled) return;
  state.flushScheduled = true;
  // rAF batches a burst into one DOM update per frame; the timeout keeps a hidden tab current.
  const run = () => { if (state.flushScheduled) flush(); };
  requestAnimationFrame(run);
  setTimeout(run, 500);
}

function flush() {
  state.flushScheduled = false;
  const events = state.pending;
  state.pending = [];
  const dirty = new Set();
  let completed = false;
  for (const event of events) {
    if (applyEvent(event)) dirty.add(event.scan_id);
    if (event.status === "SCAN_COMPLETE") completed = true;
  }
  // Trim first: after a long replay, rows for scans that fall off the feed are never built.
  trimFeed();
  for (const id of dirty) renderRow(state.feed.get(id));
  updateEmptyState();
  if (completed) scheduleStatsRefresh();
  if (state.detailId && dirty.has(state.detailId) && state.feed.get(state.detailId)?.data.status === "SCAN_COMPLETE"
      && $("#detail").dataset.complete !== "true") {
    openDetail(state.detailId);
  }
}

/** "blocked" (the page or script was replaced), "scripts blocked" (a page served with its
 *  MALICIOUS scripts replaced), or "no". */
function blockedBadge(scan) {
  if (scan.blocked) return el("span", { class: "badge blocked", text: "blocked" });
  if (scan.scripts_blocked) return el("span", { class: "badge blocked", text: "scripts blocked" });
  return "no";
}

/** Fold one event into the feed model; true when the row must be redrawn. */
function applyEvent(event) {
  if (typeof event.scan_id !== "string" || !(event.status in STATUS_RANK)) return false;
  let entry = state.feed.get(event.scan_id);
  if (!entry) {
    entry = { data: { scan_id: event.scan_id, ts: event.ts, status: event.status, progress: 0, trail: [] }, row: null };
    state.feed.set(event.scan_id, entry);
  }
  const data = entry.data;
  if (event.status === "SCAN_UPDATE" && event.rejudged === true) {
    // A finished page re-judged with a MALICIOUS script it loads (docs/events.md): its new level.
    Object.assign(data, {
      status: "SCAN_COMPLETE", progress: 100, url: event.url ?? data.url, title: event.title ?? data.title,
      method: event.method ?? data.method, risk_score: event.risk_score, threat_level: event.threat_level,
      classification: event.classification, scripts_blocked: Boolean(event.scripts_blocked),
    });
    return true;
  }
  const rank = STATUS_RANK[event.status];
  // A replayed STARTED/UPDATE must never take a finished scan back to "scanning".
  if (STATUS_RANK[data.status] === 2 && rank < 2) return false;
  data.status = rank >= STATUS_RANK[data.status] ? event.status : data.status;
  if (data.trail[data.trail.length - 1] !== event.status) data.trail.push(event.status);
  data.url = event.url ?? data.url;
  data.title = event.title ?? data.title;
  data.method = event.method ?? data.method;
  data.progress = Math.max(data.progress || 0, Number(event.progress) || 0);
  if (event.status === "SCAN_UPDATE") {
    data.layer = event.layer;
    data.partial_score = event.partial_score;
  }
  if (event.status === "SCAN_COMPLETE") {
    data.progress = 100;
    data.risk_score = event.risk_score;
    data.threat_level = event.threat_level;
    data.classification = event.classification;
    data.blocked = Boolean(event.blocked);
    data.error = event.error || null;
  }
  return true;
}

/** A stored scan summary (snapshot "recent") is a finished scan. */
function applySummary(summary) {
  if (!summary || typeof summary.scan_id !== "string") return;
  let entry = state.feed.get(summary.scan_id);
  if (!entry) {
    entry = { data: { scan_id: summary.scan_id, trail: [] }, row: null };
    state.feed.set(summary.scan_id, entry);
  }
  const done = ["complete", "failed", "unscanned"].includes(summary.status) || levelOf(summary.threat_level) !== null;
  Object.assign(entry.data, {
    ts: entry.data.ts ?? summary.ts,
    url: summary.url,
    title: summary.title,
    method: summary.method,
    status: done ? "SCAN_COMPLETE" : entry.data.status || "SCAN_STARTED",
    progress: done ? 100 : entry.data.progress || 0,
    risk_score: summary.risk_score,
    threat_level: summary.threat_level,
    classification: summary.classification,
    blocked: Boolean(summary.blocked),
    scripts_blocked: Boolean(summary.scripts_blocked),
    error: summary.status === "failed" ? "the scan failed" : summary.status === "unscanned" ? "unscanned" : null,
  });
  renderRow(entry);
}

function buildRow(entry) {
  const cell = (cls) => el("div", { role: "cell", class: cls });
  const cells = {
    time: cell("time"),
    level: cell(),
    score: cell("num"),
    source: cell(),
    blocked: cell(),
    url: el("div", { class: "page-url" }),
    title: el("div", { class: "page-title" }),
    progress: el("progress", { max: 100, value: 0 }),
    status: el("span", { class: "status-text" }),
    classification: el("div", { role: "cell", class: "class-text" }),
  };
  const row = el("div", { class: "feed-row", role: "row", dataset: { scanId: entry.data.scan_id }, on: { click: () => openDetail(entry.data.scan_id) } },
    cells.time, cells.level, cells.score, cells.source, cells.blocked,
    el("div", { role: "cell", class: "page" }, cells.url, cells.title),
    el("div", { role: "cell", class: "progress-cell" }, cells.progress, cells.status),
    cells.classification);
  entry.row = row;
  entry.cells = cells;
  $("#feed-body").prepend(row);
}

function renderRow(entry) {
  if (!entry) return;
  if (!entry.row) buildRow(entry);
  const { data, row, cells } = entry;
  row.dataset.status = data.status;
  row.dataset.trail = data.trail.join(" ");  // the lifecycle states this row went through
  row.dataset.level = levelOf(data.threat_level) || "";
  setText(cells.time, timeText(data.ts));
  cells.time.title = data.ts || "";
  const level = levelOf(data.threat_level);
  const levelKey = level || (data.status === "SCAN_COMPLETE" ? "done" : "");
  if (cells.level.dataset.level !== levelKey) {
    cells.level.dataset.level = levelKey;
    cells.level.replaceChildren(levelBadge(level, data.status !== "SCAN_COMPLETE" ? "scanning" : data.error ? "error" : "unknown"));
  }
  setText(cells.score, data.status === "SCAN_COMPLETE" ? scoreText(data.risk_score) : scoreText(data.partial_score));
  setText(cells.source, data.method || "");
  const blockedState = data.blocked ? "true" : data.scripts_blocked ? "scripts" : "false";
  if (cells.blocked.dataset.blocked !== blockedState) {
    cells.blocked.dataset.blocked = blockedState;
    cells.blocked.replaceChildren(blockedBadge(data));
  }
  setText(cells.url, data.url || "");
  if (cells.url.title !== (data.url || "")) cells.url.title = data.url || "";  // the full URL, as text
  setText(cells.title, data.title || "");
  cells.progress.value = data.progress || 0;
  // State (where the scan is) and classification (what it found) are two columns.
  setText(cells.status, data.status === "SCAN_COMPLETE"
    ? (data.error ? (data.error.startsWith("unscanned") ? data.error : `failed: ${data.error}`) : "done")
    : data.status === "SCAN_UPDATE" ? `${data.layer || "scanning"}…` : "started");
  setText(cells.classification, data.status === "SCAN_COMPLETE" && !data.error && data.classification && data.classification !== "benign"
    ? data.classification.replace(/_/g, " ") : "");
}

function trimFeed() {
  if (state.feed.size <= FEED_MAX_ROWS) {
    setText($("#feed-count"), state.feed.size ? `(${state.feed.size} latest)` : "");
    return;
  }
  // Map keeps insertion order: the first keys are the oldest rows.
  for (const [id, entry] of state.feed) {
    if (state.feed.size <= FEED_MAX_ROWS) break;
    entry.row?.remove();
    state.feed.delete(id);
  }
  setText($("#feed-count"), `(${state.feed.size} latest)`);
}

function updateEmptyState() {
  const total = state.stats && typeof state.stats.total === "number" ? state.stats.total : 0;
  $("#empty").hidden = !(total === 0 && state.feed.size === 0);
  const proxy = state.health?.proxy;
  if (proxy && proxy.host && proxy.port) setText($("#empty-proxy"), `${proxy.host}:${proxy.port}`);
  setText($("#empty-api"), window.location.origin);
}

// ---------------------------------------------------------------- stats (debounced refresh)

let statsTimer = null;
let statsFirstRequest = 0;
let statsInFlight = false;
let statsAgain = false;

function scheduleStatsRefresh() {
  const now = performance.now();
  if (!statsTimer) statsFirstRequest = now;
  clearTimeout(statsTimer);
  const wait = Math.max(0, Math.min(STATS_DEBOUNCE_MS, statsFirstRequest + STATS_MAX_WAIT_MS - now));
  statsTimer = setTimeout(refreshStats, wait);
}

async function refreshStats() {
  statsTimer = null;
  if (statsInFlight) { statsAgain = true; return; }
  statsInFlight = true;
  try {
    renderStats(await api("/api/v1/stats"));
  } catch { /* the connection indicator already tells; the next event retries */ }
  statsInFlight = false;
  if (statsAgain) { statsAgain = false; scheduleStatsRefresh(); }
}

function renderStats(stats) {
  if (!stats || typeof stats !== "object") return;
  state.stats = stats;
  const byLevel = stats.totals_by_level || {};
  const bySource = stats.totals_by_source || {};
  const show = (id, value) => {
    const node = $(`#stat-${id}`);
    const number = Number(value) || 0;
    node.dataset.value = String(number);
    setText(node, number.toLocaleString());
  };
  show("total", stats.total);
  for (const level of LEVELS) show(level, byLevel[level]);
  show("PROXY", bySource.PROXY);
  show("EXTENSION", bySource.EXTENSION);
  show("blocked", stats.blocked);
  charts?.update(stats);
  updateEmptyState();
}

// ---------------------------------------------------------------- scan detail

function closeDetail() {
  state.detailId = null;
  $("#detail").hidden = true;
  clear($("#detail-body"));
}

async function openDetail(scanId) {
  state.detailId = scanId;
  const panel = $("#detail");
  panel.hidden = false;
  panel.dataset.scanId = scanId;
  panel.dataset.complete = "false";
  const allow = $("#detail-allow");
  const block = $("#detail-block");
  allow.disabled = true;
  block.hidden = true;
  allow.className = "";
  setText(allow, "Allow this site");
  setText(block, "Block this site");
  setText($("#detail-message"), "Loading…");
  let scan;
  try {
    scan = await api(`/api/v1/scans/${encodeURIComponent(scanId)}`);
  } catch (err) {
    if (state.detailId !== scanId) return;
    clear($("#detail-body"));
    setText($("#detail-message"), err instanceof ApiError && err.status === 404
      ? "This scan is still running: its detail appears here when it completes."
      : `Could not load the scan: ${err.message}`);
    return;
  }
  if (state.detailId !== scanId) return;
  panel.dataset.complete = "true";
  setText($("#detail-message"), "");
  renderDetail(scan);
  const host = hostOf(scan.url);
  allow.disabled = !host;
  allow.dataset.host = host;
  // On a flagged scan the filled (primary) button is the safe action: block; allowing is secondary.
  const flagged = ["MALICIOUS", "SUSPICIOUS"].includes(scan.verdict?.threat_level);
  block.hidden = !flagged || !host;
  block.disabled = !host;
  block.dataset.host = host;
  allow.className = flagged ? "secondary" : "";
}

/** A link to a scan's own record in this dashboard (#scan=<id>); ids outside the link format are text. */
function scanLink(scanId, text) {
  const id = String(scanId || "");
  const link = el("a", { class: "scan-link", text, dataset: { scanId: id } });
  if (/^[A-Za-z0-9_-]{1,64}$/.test(id)) link.href = `#scan=${id}`;
  return link;
}

function sizeText(bytes) {
  if (bytes === null || bytes === undefined) return "";
  const n = Number(bytes);
  return n >= 1024 ? `${(n / 1024).toFixed(1)} kB` : `${n} B`;
}

/** The scripts and frames a page loaded (or the pages that loaded a resource), each linked to its record. */
function linkedTable(items, { pages = false } = {}) {
  const heads = pages ? ["Page", "Verdict", "Scan"] : ["Kind", "Resource", "Verdict", "Size", "SHA-256", "Scan"];
  return el("table", { class: pages ? "resources loaded-by" : "resources" },
    el("thead", {}, el("tr", {}, ...heads.map((h) => el("th", { text: h })))),
    el("tbody", {}, ...items.map((r) => {
      const level = levelOf(r.threat_level);
      const verdict = el("td", { class: "level" }, r.status ? levelBadge(level, r.status === "complete" ? "unknown" : r.status) : "record removed",
        r.risk_score !== null && r.risk_score !== undefined ? ` ${scoreText(r.risk_score)}` : "");
      const url = el("td", { class: "page-url", title: r.url || "", text: r.url || "" });
      const cells = pages
        ? [url, verdict, el("td", {}, scanLink(r.scan_id, r.scan_id))]
        : [el("td", { text: r.kind || "" }), url, verdict, el("td", { class: "num", text: sizeText(r.size) }),
          el("td", { class: "mono", title: r.sha256 || "", text: String(r.sha256 || "").slice(0, 16) }),
          el("td", {}, scanLink(r.scan_id, r.scan_id))];
      return el("tr", { dataset: { scanId: r.scan_id, kind: r.kind, level: level || "" } }, ...cells);
    })));
}

function fact(label, ...value) {
  return [el("dt", { text: label }), el("dd", {}, ...value)];
}

function renderDetail(scan) {
  const verdict = scan.verdict || {};
  const body = clear($("#detail-body"));
  const models = Object.entries(verdict.model_versions || {}).map(([k, v]) => `${k} ${v}`).join(", ");
  body.append(el("dl", { class: "facts" },
    fact("URL", el("span", { class: "mono detail-url", text: scan.url ?? verdict.url ?? "" })),
    fact("Title", el("span", { class: "detail-title", text: scan.title ?? "" })),
    fact("Scanned", dateTimeText(scan.ts)),
    fact("Verdict", levelBadge(verdict.threat_level, "unknown"), ` ${scoreText(verdict.risk_score)} / 100`,
      verdict.classification ? ` · ${verdict.classification}` : ""),
    fact("Source", scan.method || ""),
    fact("Gateway", scan.gateway_id || ""),
    fact("Blocked", blockedBadge(scan)),
    fact("Scan time", `${Number(verdict.duration_ms || 0).toFixed(1)} ms`),
    fact("Content", `${Number(verdict.scanned_chars || 0).toLocaleString()} characters${verdict.truncated ? " (truncated)" : ""}`),
    fact("Engine", verdict.engine_version || ""),
    fact("Models", models || "none"),
    fact("Scan id", el("span", { class: "mono", text: scan.scan_id })),
  ));

  // What the page loaded (urlscan-style), and for a script or frame, the pages that loaded it.
  const resources = Array.isArray(scan.resources) ? scan.resources : [];
  const loadedBy = Array.isArray(scan.loaded_by) ? scan.loaded_by : [];
  if (resources.length || !loadedBy.length) {
    body.append(el("h3", { text: `Resources (${resources.length})` }));
    body.append(resources.length ? linkedTable(resources)
      : el("p", { class: "muted", text: scan.method === "PROXY" ? "No scripts or frames of this page were scanned by the proxy." : "Resources are known for pages scanned by the proxy." }));
  }
  if (loadedBy.length) body.append(el("h3", { text: `Loaded by (${loadedBy.length})` }), linkedTable(loadedBy, { pages: true }));

  // Per-layer scores and timings.
  const layers = Object.values(verdict.layers || {});
  body.append(el("h3", { text: "Layers" }), el("table", { class: "layers" },
    el("thead", {}, el("tr", {}, ...["Layer", "Score", "Confidence", "Time (ms)", "Indicators", "Error"].map((h) => el("th", { text: h })))),
    el("tbody", {}, ...layers.map((layer) => el("tr", { dataset: { layer: layer.layer } },
      el("td", { text: layer.layer }),
      el("td", { class: "num", text: scoreText(layer.score) }),
      el("td", { class: "num", text: Number(layer.confidence ?? 0).toFixed(2) }),
      el("td", { class: "num", text: Number(layer.duration_ms ?? 0).toFixed(2) }),
      el("td", { class: "num", text: (layer.indicators || []).length }),
      el("td", { text: layer.error || "" }),
    ))),
  ));

  // Every indicator with its evidence.
  const indicators = Array.isArray(verdict.indicators) ? verdict.indicators : [];
  body.append(el("h3", { text: `Indicators (${indicators.length})` }));
  if (!indicators.length) body.append(el("p", { class: "muted", text: "No indicators: nothing suspicious was found." }));
  for (const ind of indicators) {
    const severity = SEVERITIES.has(ind.severity) ? ind.severity : "INFO";
    body.append(el("div", { class: "indicator", dataset: { indicatorId: ind.id } },
      el("div", { class: "indicator-head" },
        el("span", { class: `badge sev-${severity}`, text: severity }),
        el("strong", { class: "indicator-title", text: ind.title ?? "" }),
        el("span", { class: "indicator-id", text: `${ind.id} · ${ind.layer} · ${ind.category}${ind.classification ? ` · ${ind.classification}` : ""}` })),
      ...(Array.isArray(ind.evidence) ? ind.evidence : []).map((ev) => el("div", { class: "evidence" },
        el("div", { class: "evidence-location", text: `${ev.location ?? ""}${ev.offset !== null && ev.offset !== undefined ? ` @ offset ${ev.offset}` : ""}` }),
        el("pre", { class: "snippet", text: ev.snippet ?? "" }))),
    ));
  }

  renderFeedback(scan);

  // The scripts the engine analysed.
  const scripts = Array.isArray(verdict.scripts) ? verdict.scripts : [];
  body.append(el("h3", { text: `Scripts analysed (${scripts.length})` }));
  if (scripts.length) {
    body.append(el("table", { class: "scripts" },
      el("thead", {}, el("tr", {}, ...["Location", "Source", "Characters", "SHA-256"].map((h) => el("th", { text: h })))),
      el("tbody", {}, ...scripts.map((s) => el("tr", {},
        el("td", { text: s.location ?? "" }),
        el("td", { class: "page-url", text: s.inline ? "inline" : (s.url ?? "") }),
        el("td", { class: "num", text: `${Number(s.chars || 0).toLocaleString()}${s.truncated ? " (truncated)" : ""}` }),
        el("td", { class: "mono", title: s.sha256 || "", text: String(s.sha256 || "").slice(0, 16) }),
      ))),
    ));
  }
}

// ---------------------------------------------------------------- feedback: reports and overrides

const OVERRIDE_TEXT = { proceed_once: "Proceed once", proceed_anyway: "Proceed anyway", always_allow: "Always allow" };
const SOURCE_TEXT = { blockpage: "block page", extension: "extension", dashboard: "dashboard", api: "API", gateway: "gateway" };

/** Reports ("this page is safe/dangerous") and overrides of this scan, and the report buttons. */
function renderFeedback(scan) {
  const body = $("#detail-body");
  const reports = Array.isArray(scan.reports) ? scan.reports : [];
  const overrides = Array.isArray(scan.overrides) ? scan.overrides : [];
  const comment = el("input", { type: "text", name: "comment", class: "report-comment", title: "comment (optional)" });
  comment.placeholder = "comment (optional)";
  comment.maxLength = 1000;
  const message = el("p", { class: "muted report-message", role: "status" });
  const send = (verdict) => async () => {
    try {
      await api(`/api/v1/scans/${encodeURIComponent(scan.scan_id)}/reports`, { method: "POST", body: { verdict, comment: comment.value, source: "dashboard" } });
      if (state.detailId === scan.scan_id) openDetail(scan.scan_id);
    } catch (err) {
      setText(message, `Could not record the report: ${err.message}`);
    }
  };
  body.append(el("section", { class: "feedback", id: "detail-feedback" },
    el("h3", { text: `Reports (${reports.length})` }),
    el("div", { class: "report-actions" },
      el("button", { type: "button", class: "secondary", id: "report-safe", on: { click: send("safe") } }, "Report: safe"),
      el("button", { type: "button", class: "secondary", id: "report-dangerous", on: { click: send("dangerous") } }, "Report: dangerous"),
      comment),
    message,
    reports.length ? el("table", { class: "reports" },
      el("thead", {}, el("tr", {}, ...["Time", "Says", "From", "Comment", ""].map((h) => el("th", { text: h })))),
      el("tbody", {}, ...reports.map((r) => el("tr", { dataset: { reportId: r.report_id, verdict: r.verdict } },
        el("td", { class: "time", text: dateTimeText(r.ts) }),
        el("td", {}, el("span", { class: `badge report-${r.verdict === "safe" ? "safe" : "dangerous"}`, text: r.verdict === "safe" ? "safe" : "dangerous" })),
        el("td", { text: SOURCE_TEXT[r.source] ?? String(r.source ?? "") }),
        el("td", { class: "report-text", text: r.comment ?? "" }),
        el("td", {}, listButton(r, message)),
      ))),
    ) : el("p", { class: "muted", text: "No reports: nobody said this verdict was wrong." }),
    el("h3", { text: `Overrides (${overrides.length})` }),
    overrides.length ? el("table", { class: "overrides" },
      el("thead", {}, el("tr", {}, ...["Time", "Action", "From"].map((h) => el("th", { text: h })))),
      el("tbody", {}, ...overrides.map((o) => el("tr", { dataset: { action: o.action } },
        el("td", { class: "time", text: dateTimeText(o.ts) }),
        el("td", { text: OVERRIDE_TEXT[o.action] ?? String(o.action ?? "") }),
        el("td", { text: SOURCE_TEXT[o.source] ?? String(o.source ?? "") }),
      ))),
    ) : el("p", { class: "muted", text: "No overrides: nobody went past this verdict." }),
  ));
}

/** One click from a report to a list entry: "safe" allows the page's site, "dangerous" blocks it. */
function listButton(report, message) {
  const host = hostOf(report.url);
  if (!host) return "";
  const list = report.verdict === "safe" ? "allow" : "block";
  const button = el("button", { type: "button", class: "secondary report-to-list" }, list === "allow" ? `Allow ${host}` : `Block ${host}`);
  button.addEventListener("click", async () => {
    button.disabled = true;
    try {
      await api(`/api/v1/lists/${list}`, { method: "POST", body: { entry: host, kind: "domain", note: `from report ${report.report_id} on scan ${report.scan_id}` } });
      setText(button, list === "allow" ? "Allowed" : "Blocked");
      setText(message, `${host} is on the ${list}list.`);
    } catch (err) {
      button.disabled = false;
      setText(message, `Could not add ${host} to the ${list}list: ${err.message}`);
    }
  });
  return button;
}

/** The history row's marker: how many reports (by what they say) and overrides a scan has. */
function feedbackMark(feedback) {
  if (!feedback) return "";
  const parts = [];
  if (feedback.safe) parts.push(`${feedback.safe} reported safe`);
  if (feedback.dangerous) parts.push(`${feedback.dangerous} reported dangerous`);
  if (feedback.overrides) parts.push(`${feedback.overrides} override${feedback.overrides === 1 ? "" : "s"}`);
  return parts.length ? el("span", { class: "badge feedback-mark", title: "reports and overrides", text: parts.join(" · ") }) : "";
}

async function blockCurrentSite() {
  const button = $("#detail-block");
  const host = button.dataset.host;
  const scanId = state.detailId;
  if (!host) return;
  button.disabled = true;
  try {
    await api("/api/v1/lists/block", { method: "POST", body: { entry: host, kind: "domain", note: `blocked from the dashboard (scan ${scanId})` } });
    setText(button, "Blocked");
    setText($("#detail-message"), `${host} is on the blocklist: in block mode its pages are refused.`);
  } catch (err) {
    button.disabled = false;
    setText($("#detail-message"), `Could not block ${host}: ${err.message}`);
  }
}

async function allowCurrentSite() {
  const button = $("#detail-allow");
  const host = button.dataset.host;
  const scanId = state.detailId;
  if (!host) return;
  button.disabled = true;
  try {
    await api("/api/v1/lists/allow", { method: "POST", body: { entry: host, kind: "domain", note: `allowed from the dashboard (scan ${scanId})` } });
    setText(button, "Allowed");
    setText($("#detail-message"), `${host} is on the allowlist: its next scans are BENIGN.`);
  } catch (err) {
    button.disabled = false;
    setText($("#detail-message"), `Could not allow ${host}: ${err.message}`);
  }
}

// ---------------------------------------------------------------- history

function historyFilters() {
  const form = $("#history-form");
  const value = (name) => form.elements[name].value.trim();
  const iso = (name) => {
    const v = value(name);
    if (!v) return "";
    const date = new Date(v);  // datetime-local: the user's local time
    return Number.isNaN(date.getTime()) ? "" : date.toISOString();
  };
  return { q: value("q"), level: value("level"), source: value("source"), domain: value("domain"), since: iso("since"), until: iso("until") };
}

async function loadHistory() {
  const error = $("#history-error");
  setText(error, "");
  let page;
  try {
    page = await api("/api/v1/scans", { params: { ...historyFilters(), limit: HISTORY_PAGE, offset: state.history.offset } });
  } catch (err) {
    setText(error, `Could not load history: ${err.message}`);
    return;
  }
  state.history.total = Number(page.total) || 0;
  const items = Array.isArray(page.items) ? page.items : [];
  const tbody = clear($("#history-body"));
  for (const item of items) {
    tbody.append(el("tr", { dataset: { scanId: item.scan_id, level: levelOf(item.threat_level) || "" }, on: { click: () => openDetail(item.scan_id) } },
      el("td", { class: "time", text: dateTimeText(item.ts) }),
      el("td", {}, levelBadge(item.threat_level, "—")),
      el("td", { class: "num", text: scoreText(item.risk_score) }),
      el("td", { text: item.method ?? "" }),
      el("td", {}, blockedBadge(item)),
      el("td", {}, el("div", { class: "page-url", text: item.url ?? "" }), el("div", { class: "page-title", text: item.title ?? "" })),
      el("td", { class: "top-indicator", text: topIndicatorText(item.top_indicator) }),
      el("td", { class: "feedback-cell" }, feedbackMark(item.feedback)),
    ));
  }
  const first = items.length ? state.history.offset + 1 : 0;
  const last = state.history.offset + items.length;
  setText($("#history-summary"), state.history.total
    ? `${first.toLocaleString()}–${last.toLocaleString()} of ${state.history.total.toLocaleString()} scans`
    : "No scans match these filters.");
  $("#history-prev").disabled = state.history.offset <= 0;
  $("#history-next").disabled = last >= state.history.total;
}

/** The summary's most severe indicator, unless it is only informational (model unavailable ...). */
function topIndicatorText(top) {
  if (!top) return "";
  if (typeof top !== "object") return String(top);
  if (top.severity === "INFO") return "";
  return top.title ?? top.id ?? "";
}

async function exportHistory(format) {
  const error = $("#history-error");
  setText(error, "");
  try {
    // "Full verdicts": every indicator of each scan, not only the top one.
    const full = $("#export-full").checked ? { full: "true" } : {};
    const response = await api("/api/v1/export", { params: { ...historyFilters(), format, ...full }, raw: true });
    const blob = await response.blob();
    const url = URL.createObjectURL(blob);
    const link = document.createElement("a");
    link.href = url;  // a blob: URL we just created, never page data
    link.download = `malwaresnipper-scans.${format}`;
    document.body.append(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(url), 10_000);
  } catch (err) {
    setText(error, `Export failed: ${err.message}`);
  }
}

// ---------------------------------------------------------------- allow / block lists

async function loadLists() {
  for (const section of $$("#view-lists section[data-list]")) {
    const list = section.dataset.list;
    const error = $(".list-error", section);
    try {
      const data = await api(`/api/v1/lists/${list}`);
      setText(error, "");
      const tbody = clear($("tbody", section));
      const items = Array.isArray(data.items) ? data.items : [];
      if (!items.length) tbody.append(el("tr", {}, el("td", { colspan: 5, class: "muted", text: "Empty." })));
      for (const item of items) {
        tbody.append(el("tr", { dataset: { entry: item.entry } },
          el("td", { class: "mono", text: item.entry }),
          el("td", { text: item.kind ?? "" }),
          el("td", { text: item.note ?? "" }),
          el("td", { class: "time", text: dateTimeText(item.ts) }),
          el("td", {}, el("button", { type: "button", class: "danger", text: "Remove", on: { click: () => removeEntry(list, item.entry, error) } })),
        ));
      }
    } catch (err) {
      setText(error, `Could not load the ${list}list: ${err.message}`);
    }
  }
}

async function addEntry(event) {
  event.preventDefault();
  const form = event.currentTarget;
  const list = form.dataset.list;
  const error = $(".list-error", form.closest("section"));
  const body = { entry: form.elements.entry.value.trim(), kind: form.elements.kind.value };
  const note = form.elements.note.value.trim();
  if (note) body.note = note;
  try {
    await api(`/api/v1/lists/${list}`, { method: "POST", body });
    form.reset();
    setText(error, "");
    await loadLists();
  } catch (err) {
    setText(error, err.message);
  }
}

async function removeEntry(list, entry, error) {
  try {
    await api(`/api/v1/lists/${list}`, { method: "DELETE", params: { entry } });
    await loadLists();
  } catch (err) {
    setText(error, err.message);
  }
}

// ---------------------------------------------------------------- wiring

function init() {
  onUnauthorized(() => signOut("The gateway refused the token. Sign in again."));
  $("#signin-form").addEventListener("submit", signIn);
  $("#signout").addEventListener("click", () => signOut());
  for (const tab of $$("#tabs .tab")) tab.addEventListener("click", () => showView(tab.dataset.view));
  $("#detail-close").addEventListener("click", closeDetail);
  $("#detail-allow").addEventListener("click", allowCurrentSite);
  $("#detail-block").addEventListener("click", blockCurrentSite);
  document.addEventListener("keydown", (e) => { if (e.key === "Escape") closeDetail(); });
  $("#history-form").addEventListener("submit", (e) => { e.preventDefault(); state.history.offset = 0; loadHistory(); });
  $("#history-form").addEventListener("reset", () => { state.history.offset = 0; setTimeout(loadHistory, 0); });
  $("#history-prev").addEventListener("click", () => { state.history.offset = Math.max(0, state.history.offset - HISTORY_PAGE); loadHistory(); });
  $("#history-next").addEventListener("click", () => { state.history.offset += HISTORY_PAGE; loadHistory(); });
  $("#export-csv").addEventListener("click", () => exportHistory("csv"));
  $("#export-jsonl").addEventListener("click", () => exportHistory("jsonl"));
  for (const form of $$(".list-form")) form.addEventListener("submit", addEntry);
  window.addEventListener("online", () => stream.nudge());
  window.addEventListener("hashchange", openFromHash);
  showConnection("offline", "signed out");
  if (token.get()) start();
}

init();
