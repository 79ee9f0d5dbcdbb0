// The toolbar badge per tab: what the extension knows about the page in that tab.

export const BADGES = Object.freeze({
  scanning: { text: "…", color: "#6b7280", title: "MalwareSnipper: scanning this page" },
  queued: { text: "…", color: "#9ca3af", title: "MalwareSnipper: gateway offline, this page will be scanned later" },
  timeout: { text: "?", color: "#9ca3af", title: "MalwareSnipper: the gateway has not answered yet" },
  error: { text: "?", color: "#9ca3af", title: "MalwareSnipper: this page could not be scanned" },
  benign: { text: "OK", color: "#15803d", title: "MalwareSnipper: no threat found" },
  suspicious: { text: "!", color: "#d97706", title: "MalwareSnipper: suspicious page" },
  malicious: { text: "X", color: "#dc2626", title: "MalwareSnipper: dangerous page" },
  allowed: { text: "", color: "#15803d", title: "MalwareSnipper: you allowed this site" },
  skipped: { text: "", color: "#6b7280", title: "MalwareSnipper" },
});

/** Show `status` (a key of BADGES) on `tabId`; a closed tab is not an error. */
export async function setBadge(tabId, status, detail = "") {
  const badge = BADGES[status] || BADGES.skipped;
  try {
    await chrome.action.setBadgeBackgroundColor({ tabId, color: badge.color });
    await chrome.action.setBadgeText({ tabId, text: badge.text });
    await chrome.action.setTitle({ tabId, title: detail ? `${badge.title} (${detail})` : badge.title });
  } catch {
    /* the tab is gone */
  }
}
