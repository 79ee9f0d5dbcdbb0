// The popup renders what the worker keeps in chrome.storage.session and re-renders on every change
// (storage.onChanged), so it follows the gateway's event stream live without any timer.
import { loadSettings } from "./lib/settings.js";

const $ = (id) => document.getElementById(id);

const STATUS_TEXT = {
  online: "Online",
  offline: "Offline",
  unauthorized: "Token rejected",
  unconfigured: "Not set up",
  disabled: "Off",
  connecting: "Connecting…",
};

const VERDICT_TEXT = {
  scanning: "Scanning…",
  queued: "Waiting for the gateway (offline)",
  timeout: "The gateway has not answered yet",
  error: "Could not be scanned",
  benign: "No threat found",
  suspicious: "Suspicious",
  malicious: "Malicious",
  allowed: "Allowed by you",
  skipped: "Not scanned",
};

/** The tab this popup describes: ?tab=N when opened as a page, else the active tab. */
async function targetTabId() {
  const param = new URLSearchParams(location.search).get("tab");
  if (param && /^\d+$/.test(param)) return Number(param);
  const [active] = await chrome.tabs.query({ active: true, currentWindow: true });
  if (active && !(active.url || "").startsWith(chrome.runtime.getURL(""))) return active.id;
  const { lastContentTab } = await chrome.storage.session.get("lastContentTab");
  return lastContentTab ?? (active && active.id);
}

let tabId = null;

function renderStatus(conn, settings, queueLength) {
  const status = settings.enabled ? conn.status || "connecting" : "disabled";
  $("status").dataset.status = status;
  $("status").textContent = STATUS_TEXT[status] || status;
  let detail = conn.message || "";
  if (status === "online" && conn.version) detail = `Gateway ${conn.version} at ${settings.gatewayUrl}`;
  if (queueLength) detail += ` ${queueLength} page(s) waiting to be sent.`;
  $("status-detail").textContent = detail.trim();
}

function renderCounts(counts) {
  $("count-total").textContent = String((counts && counts.total) || 0);
  $("count-suspicious").textContent = String((counts && counts.SUSPICIOUS) || 0);
  $("count-malicious").textContent = String((counts && counts.MALICIOUS) || 0);
}

function renderTab(tab) {
  const verdict = $("tab-verdict");
  const list = $("tab-indicators");
  list.replaceChildren();
  // A report needs the gateway's scan of this page.
  $("tab-report").hidden = !(tab && tab.scan_id);
  if (tab && tab.reported) $("report-status").textContent = `You reported this page as ${tab.reported}.`;
  if (!tab) {
    verdict.dataset.level = "none";
    verdict.textContent = "No page scanned in this tab.";
    $("tab-url").textContent = "";
    return;
  }
  verdict.dataset.level = tab.status;
  let text = VERDICT_TEXT[tab.status] || tab.status;
  if (["benign", "suspicious", "malicious"].includes(tab.status)) {
    text += ` (risk ${Math.round(tab.risk_score || 0)}`;
    if (tab.classification && tab.classification !== "unknown" && tab.classification !== "benign") text += `, ${tab.classification}`;
    text += ")";
  }
  if (tab.status === "skipped" && tab.reason) text += `: ${tab.reason}`;
  if (tab.status === "error" && tab.error) text += `: ${tab.error}`;
  verdict.textContent = text;
  $("tab-url").textContent = tab.url || "";
  for (const indicator of tab.indicators || []) {
    const item = document.createElement("li");
    item.dataset.severity = indicator.severity;
    item.textContent = indicator.title;
    list.append(item);
  }
}

function renderAlerts(alerts) {
  const list = $("alerts");
  list.replaceChildren();
  for (const alert of alerts || []) {
    const item = document.createElement("li");
    item.dataset.level = alert.threat_level;
    const level = document.createElement("span");
    level.className = "level";
    level.textContent = alert.threat_level;
    const url = document.createElement("span");
    url.className = "url";
    url.textContent = alert.url;
    item.append(level, url);
    if (alert.top_indicator) {
      const why = document.createElement("span");
      why.className = "why";
      why.textContent = alert.top_indicator;
      item.append(why);
    }
    list.append(item);
  }
  $("alerts-empty").hidden = Boolean(alerts && alerts.length);
}

async function renderAll() {
  const tabKey = `tab:${tabId}`;
  const [settings, session] = await Promise.all([
    loadSettings(),
    chrome.storage.session.get(["conn", "counts", "recent", "queueLength", tabKey]),
  ]);
  renderStatus(session.conn || {}, settings, session.queueLength || 0);
  renderCounts(session.counts);
  renderTab(tabId === null ? null : session[tabKey]);
  renderAlerts(session.recent);
}

async function main() {
  tabId = await targetTabId();
  await renderAll();
  chrome.storage.onChanged.addListener((changes) => {
    if (Object.keys(changes).some((key) => !key.startsWith("q:"))) renderAll(); // not queued captures
  });
  $("open-options").addEventListener("click", () => chrome.runtime.openOptionsPage());
  $("open-dashboard").addEventListener("click", async () => {
    const settings = await loadSettings();
    chrome.tabs.create({ url: `${settings.gatewayUrl}/` });
  });
  for (const [id, verdict] of [["report-safe", "safe"], ["report-dangerous", "dangerous"]]) {
    $(id).addEventListener("click", async () => {
      $("report-status").textContent = "Sending…";
      const answer = await chrome.runtime.sendMessage({ type: "report", tabId, verdict }).catch((err) => ({ ok: false, error: String(err) }));
      $("report-status").textContent = answer && answer.ok ? `You reported this page as ${verdict}.` : (answer && answer.error) || "The gateway could not be reached.";
    });
  }
  // Wake the worker: it reconnects to the event stream if it was stopped.
  chrome.runtime.sendMessage({ type: "popup_opened" }).catch(() => undefined);
}

main();
