// Which pages the extension may send to the gateway. Pure functions, no chrome.* calls, so the
// worker, the popup and the tests all use the same rules.

/** Hostnames that never leave the machine's own network, whatever they resolve to. */
const LOCAL_SUFFIXES = [".localhost", ".local", ".internal", ".lan", ".home.arpa", ".intranet"];

/** Parse a dotted IPv4 literal (already normalised by the URL parser) into four numbers. */
function ipv4Parts(host) {
  const m = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/.exec(host);
  if (!m) return null;
  const parts = m.slice(1).map(Number);
  return parts.every((p) => p <= 255) ? parts : null;
}

/** True for loopback, private, link-local, shared (CGNAT) and unspecified IPv4 addresses. */
function isPrivateIPv4([a, b]) {
  return (
    a === 0 || a === 10 || a === 127 ||
    (a === 100 && b >= 64 && b <= 127) ||
    (a === 169 && b === 254) ||
    (a === 172 && b >= 16 && b <= 31) ||
    (a === 192 && b === 168)
  );
}

/** Expand an IPv6 literal (without brackets) into eight 16-bit groups, or null. */
function ipv6Groups(host) {
  if (!host.includes(":")) return null;
  let text = host.toLowerCase();
  const v4 = /(\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3})$/.exec(text);
  if (v4) {
    // "::ffff:1.2.3.4" -> "::ffff:102:304" so only hex groups remain
    const p = ipv4Parts(v4[1]);
    if (!p) return null;
    text = text.slice(0, -v4[1].length) + ((p[0] << 8) | p[1]).toString(16) + ":" + ((p[2] << 8) | p[3]).toString(16);
  }
  const halves = text.split("::");
  if (halves.length > 2) return null;
  const parse = (s) => (s ? s.split(":").map((g) => parseInt(g, 16)) : []);
  const head = parse(halves[0]);
  const rest = halves.length === 2 ? parse(halves[1]) : [];
  const fill = 8 - head.length - rest.length;
  if (fill < 0 || (halves.length === 1 && fill !== 0)) return null;
  const groups = [...head, ...new Array(fill).fill(0), ...rest];
  return groups.length === 8 && groups.every((g) => Number.isInteger(g) && g >= 0 && g <= 0xffff) ? groups : null;
}

function isPrivateIPv6(g) {
  if (g.slice(0, 7).every((x) => x === 0) && (g[7] === 0 || g[7] === 1)) return true; // :: and ::1
  if ((g[0] & 0xfe00) === 0xfc00) return true; // fc00::/7 unique local
  if ((g[0] & 0xffc0) === 0xfe80) return true; // fe80::/10 link local
  if (g.slice(0, 5).every((x) => x === 0) && g[5] === 0xffff) {
    // ::ffff:a.b.c.d, an IPv4-mapped address
    return isPrivateIPv4([g[6] >> 8, g[6] & 0xff, g[7] >> 8, g[7] & 0xff]);
  }
  return false;
}

/**
 * True when `hostname` (as `new URL(..).hostname` gives it) names this machine or a private
 * network: loopback and private IP literals, `localhost`, local-only suffixes and single-label
 * intranet names. The extension cannot resolve DNS, so a public name that resolves to a private
 * address is not detected (the gateway's proxy path sees real addresses).
 */
export function isPrivateHost(hostname) {
  const host = String(hostname || "").toLowerCase().replace(/\.$/, "");
  if (!host) return true;
  if (host.startsWith("[") && host.endsWith("]")) {
    const g = ipv6Groups(host.slice(1, -1));
    return g ? isPrivateIPv6(g) : true;
  }
  const v4 = ipv4Parts(host);
  if (v4) return isPrivateIPv4(v4);
  if (host === "localhost" || LOCAL_SUFFIXES.some((s) => host.endsWith(s))) return true;
  return !host.includes("."); // "router", "intranet": single-label names are local
}

/** `host` is `domain` or one of its subdomains. */
export function hostMatches(host, domain) {
  host = String(host || "").toLowerCase().replace(/\.$/, "");
  domain = String(domain || "").toLowerCase().replace(/^\*\./, "").replace(/^\./, "").replace(/\.$/, "");
  return Boolean(domain) && (host === domain || host.endsWith("." + domain));
}

/**
 * Turn what a user types as a paused site ("example.com", "*.example.com",
 * "https://example.com/path") into a bare host, or "" when it is not one.
 */
export function normalizeSite(entry) {
  let text = String(entry || "").trim().toLowerCase();
  if (!text || text.startsWith("#")) return "";
  text = text.replace(/^\*\./, "");
  try {
    const url = new URL(text.includes("://") ? text : `http://${text}`);
    return url.hostname.replace(/\.$/, "");
  } catch {
    return "";
  }
}

/**
 * Decide whether a top-level page may be captured and sent.
 *
 * `ctx` = { enabled, incognito, scanIncognito, gatewayOrigins: [origin...], pausedSites: [host...],
 *           allowEntries: [{entry, kind}] } ; returns { capture: bool, reason: string }.
 */
export function capturePolicy(pageUrl, ctx = {}) {
  if (ctx.enabled === false) return { capture: false, reason: "protection is off" };
  let url;
  try {
    url = new URL(pageUrl);
  } catch {
    return { capture: false, reason: "not a valid URL" };
  }
  if (url.protocol !== "http:" && url.protocol !== "https:") {
    return { capture: false, reason: `${url.protocol} pages are never sent` };
  }
  if (ctx.incognito && !ctx.scanIncognito) return { capture: false, reason: "incognito tab" };
  for (const origin of ctx.gatewayOrigins || []) {
    try {
      const g = new URL(origin);
      if (g.hostname === url.hostname && (g.port || defaultPort(g)) === (url.port || defaultPort(url))) {
        return { capture: false, reason: "this is the gateway itself" };
      }
    } catch {
      /* ignore a malformed gateway address here; the options page reports it */
    }
  }
  if (isPrivateHost(url.hostname)) return { capture: false, reason: "local or private address" };
  for (const site of ctx.pausedSites || []) {
    if (hostMatches(url.hostname, normalizeSite(site))) return { capture: false, reason: "paused on this site" };
  }
  if (isAllowlisted(url, ctx.allowEntries || [])) return { capture: false, reason: "on the gateway's allowlist" };
  return { capture: true, reason: "" };
}

function defaultPort(url) {
  if (url.protocol === "https:" || url.protocol === "wss:") return "443";
  return "80";
}

/** Match the gateway's allowlist entries (kind domain or url) against a page URL. */
export function isAllowlisted(url, entries) {
  const u = url instanceof URL ? url : new URL(url);
  for (const item of entries) {
    const kind = item.kind || "domain";
    if (kind === "domain" && hostMatches(u.hostname, item.entry)) return true;
    if (kind === "url" && stripHash(item.entry) === stripHash(u.href)) return true;
  }
  return false;
}

function stripHash(href) {
  try {
    const u = new URL(href);
    u.hash = "";
    return u.href;
  } catch {
    return String(href);
  }
}
