// Plain words for a verdict, shown in the overlay, the popup and the notification. The sentences
// and the reasons rule come from the gateway's engine/data/explain.json (copied into
// explain_data.js by `malwaresnipper extension explain`), so the extension and the block page say
// the same thing in the same words.
import { EXPLAIN } from "./explain_data.js";

const SEVERITY_ORDER = { CRITICAL: 4, HIGH: 3, MEDIUM: 2, LOW: 1, INFO: 0 };

function plain(i) {
  return {
    id: String(i.id || ""),
    title: String(i.title || i.id || ""),
    severity: String(i.severity || ""),
    category: String(i.category || ""),
    strength: String(i.strength || "trait"),
  };
}

/** The indicators that matter most first, trimmed to what the popup and overlay show. */
export function topIndicators(indicators, n = 5) {
  return [...(indicators || [])]
    .sort((a, b) => (SEVERITY_ORDER[b.severity] ?? 0) - (SEVERITY_ORDER[a.severity] ?? 0))
    .slice(0, n)
    .map(plain);
}

/** Whether a finding may be shown to a user as a reason (engine/explain.py is_reason). */
function isReason(indicator, level, strongOnly) {
  const rule = EXPLAIN.reasons;
  const strength = String(indicator.strength || "trait").toLowerCase();
  if (rule.never.includes(strength)) return false;
  if (level === "BENIGN") return rule.benign.includes(strength);
  if (strongOnly) return rule.strong.includes(strength) || rule.notable_severities.includes(String(indicator.severity).toUpperCase());
  return true;
}

/** The findings a user reads as reasons for a verdict of `level` (engine/explain.py user_reasons):
 * never a known library's context, nothing weak under "No threat found". */
export function userReasons(indicators, level, n = EXPLAIN.reasons.limit) {
  const sorted = topIndicators(indicators, Infinity);
  let chosen = sorted.filter((i) => isReason(i, level, true));
  if (!chosen.length && level !== "BENIGN") chosen = sorted.filter((i) => isReason(i, level, false));
  return chosen.slice(0, n);
}

/** The sentence that says what the page is (engine/explain.py headline). */
export function headlineFor(classification, level = "MALICIOUS") {
  if (level !== "BENIGN" && classification && EXPLAIN.headlines[classification]) return EXPLAIN.headlines[classification];
  return EXPLAIN.levels[level] || EXPLAIN.levels.MALICIOUS;
}

export function explainVerdict(verdict) {
  const classification = String(verdict.classification || "unknown");
  const level = String(verdict.threat_level || "MALICIOUS");
  const indicators = userReasons(verdict.indicators, level, 4);
  let headline = EXPLAIN.headlines[classification];
  if (!headline && (verdict.indicators || []).some((i) => String(i.id || "").includes("blocklisted"))) headline = EXPLAIN.headlines.blocklisted;
  if (!headline) headline = headlineFor(null, level);
  return { headline, reasons: indicators.map((i) => i.title), classification };
}
