// Options: gateway address, token (with a connection test), on/off, paused sites, incognito.
import { loadSettings, saveSettings, normalizeGatewayUrl, gatewayNeedsPermission } from "./lib/settings.js";
import { normalizeSite } from "./lib/policy.js";
import { testConnection } from "./lib/gateway.js";

const $ = (id) => document.getElementById(id);

function readForm() {
  return {
    enabled: $("enabled").checked,
    gatewayUrl: normalizeGatewayUrl($("gateway-url").value),
    token: $("token").value.trim(),
    scanIncognito: $("scan-incognito").checked,
    pausedSites: $("paused-sites").value.split(/\s+/).map(normalizeSite).filter(Boolean),
  };
}

/** A gateway that is not on this machine needs the user's grant for its origin. */
async function ensurePermission(gatewayUrl) {
  if (!gatewayNeedsPermission(gatewayUrl)) return true;
  return chrome.permissions.request({ origins: [`${gatewayUrl}/*`] });
}

async function fill() {
  const settings = await loadSettings();
  $("enabled").checked = settings.enabled;
  $("gateway-url").value = settings.gatewayUrl;
  $("token").value = settings.token;
  $("scan-incognito").checked = settings.scanIncognito;
  $("paused-sites").value = (settings.pausedSites || []).join("\n");
}

$("show-token").addEventListener("click", () => {
  const shown = $("token").type === "text";
  $("token").type = shown ? "password" : "text";
  $("show-token").textContent = shown ? "Show" : "Hide";
});

$("test").addEventListener("click", async () => {
  const out = $("test-result");
  out.dataset.ok = "";
  out.textContent = "Testing…";
  let form;
  try {
    form = readForm();
  } catch (err) {
    out.dataset.ok = "false";
    out.textContent = err.message;
    return;
  }
  if (!(await ensurePermission(form.gatewayUrl))) {
    out.dataset.ok = "false";
    out.textContent = "Chrome did not grant access to that address.";
    return;
  }
  const result = await testConnection(form);
  out.dataset.ok = String(result.ok);
  out.textContent = result.message;
});

$("form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const out = $("save-result");
  try {
    const form = readForm();
    if (!(await ensurePermission(form.gatewayUrl))) throw new Error("Chrome did not grant access to that address.");
    const saved = await saveSettings(form);
    $("paused-sites").value = saved.pausedSites.join("\n");
    out.dataset.ok = "true";
    out.textContent = "Saved.";
    chrome.runtime.sendMessage({ type: "settings_saved" }).catch(() => undefined);
  } catch (err) {
    out.dataset.ok = "false";
    out.textContent = err.message;
  }
});

fill();
