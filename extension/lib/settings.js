// The user's settings (chrome.storage.local, key "settings") with their defaults.

export const DEFAULT_SETTINGS = Object.freeze({
  gatewayUrl: "http://127.0.0.1:5000",
  token: "",
  enabled: true,
  scanIncognito: false,
  pausedSites: [],
});

export async function loadSettings() {
  const { settings } = await chrome.storage.local.get("settings");
  return { ...DEFAULT_SETTINGS, ...(settings || {}) };
}

export async function saveSettings(patch) {
  const current = await loadSettings();
  const next = { ...current, ...patch };
  next.gatewayUrl = normalizeGatewayUrl(next.gatewayUrl);
  await chrome.storage.local.set({ settings: next });
  return next;
}

/** "127.0.0.1:5000/" -> "http://127.0.0.1:5000"; throws a readable error for anything else. */
export function normalizeGatewayUrl(value) {
  const text = String(value || "").trim();
  let url;
  try {
    url = new URL(text.includes("://") ? text : `http://${text}`);
  } catch {
    throw new Error(`"${text}" is not a gateway address; use something like http://127.0.0.1:5000`);
  }
  if (url.protocol !== "http:" && url.protocol !== "https:") {
    throw new Error("The gateway address must start with http:// or https://");
  }
  return url.origin;
}

/** Loopback gateways are covered by the manifest's host permissions; others need a grant. */
export function gatewayNeedsPermission(gatewayUrl) {
  const host = new URL(gatewayUrl).hostname;
  return !(host === "127.0.0.1" || host === "localhost");
}
