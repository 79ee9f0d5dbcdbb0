// What the worker knows, kept in chrome.storage.session so it survives the MV3 worker being
// stopped, stays in memory (never written to disk) and reaches the popup through onChanged.
// Content scripts cannot read this area (access level stays TRUSTED_CONTEXTS).

const area = chrome.storage.session;

export const MAX_RECENT_ALERTS = 10;

export async function getConn() {
  const { conn } = await area.get("conn");
  return conn || { status: "connecting", message: "" };
}

export async function setConn(patch) {
  const current = await getConn();
  const next = { ...current, ...patch };
  if (current.status !== next.status) next.since = new Date().toISOString();
  await area.set({ conn: next });
  return next;
}

export async function getTab(tabId) {
  const key = `tab:${tabId}`;
  return (await area.get(key))[key] || null;
}

export async function setTab(tabId, value) {
  await area.set({ [`tab:${tabId}`]: { ...value, tabId, updated: new Date().toISOString() } });
}

export async function removeTab(tabId) {
  await area.remove(`tab:${tabId}`);
  const { proceeded } = await area.get("proceeded");
  if (proceeded && tabId in proceeded) {
    delete proceeded[tabId];
    await area.set({ proceeded });
  }
}

/** Every tab state, for matching a verdict that arrives by URL from the event stream. */
export async function allTabs() {
  if (area.getKeys) {
    // Chrome 130+: read only the tab entries, not the offline queue.
    const keys = (await area.getKeys()).filter((key) => key.startsWith("tab:"));
    return Object.values(keys.length ? await area.get(keys) : {});
  }
  const everything = await area.get(null);
  return Object.entries(everything)
    .filter(([key]) => key.startsWith("tab:"))
    .map(([, value]) => value);
}

export function localDay(date = new Date()) {
  const pad = (n) => String(n).padStart(2, "0");
  return `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())}`;
}

export async function getCounts() {
  const { counts } = await area.get("counts");
  if (!counts || counts.day !== localDay()) return { day: localDay(), total: 0, BENIGN: 0, SUSPICIOUS: 0, MALICIOUS: 0 };
  return counts;
}

export async function setCounts(counts) {
  await area.set({ counts: { ...counts, day: localDay() } });
}

export async function addRecentAlert(alert) {
  const { recent } = await area.get("recent");
  const list = (recent || []).filter((a) => a.scan_id !== alert.scan_id);
  list.unshift(alert);
  list.sort((a, b) => String(b.ts).localeCompare(String(a.ts)));
  await area.set({ recent: list.slice(0, MAX_RECENT_ALERTS) });
}

export async function setRecentAlerts(list) {
  await area.set({ recent: list.slice(0, MAX_RECENT_ALERTS) });
}

export async function getAllowEntries() {
  const { allow } = await area.get("allow");
  return allow || [];
}

export async function setAllowEntries(items) {
  await area.set({ allow: items });
}

export async function markProceeded(tabId, url) {
  const { proceeded } = await area.get("proceeded");
  await area.set({ proceeded: { ...(proceeded || {}), [tabId]: url } });
}

export async function hasProceeded(tabId, url) {
  const { proceeded } = await area.get("proceeded");
  return Boolean(proceeded && proceeded[tabId] === url);
}
