// Plain words for a verdict, shown in the overlay and the notification.

const BY_CLASSIFICATION = {
  phishing: "This page looks like a phishing page: it may try to steal your passwords or card details.",
  skimmer: "This page may steal the payment card details you type into it.",
  malware: "This page tries to deliver malicious software to your computer.",
  dropper: "This page tries to download or run malicious software on your computer.",
  cryptominer: "This page uses your computer to mine cryptocurrency without asking.",
  exploit_kit: "This page tries to attack your browser to take over your computer.",
  redirect: "This page sends visitors on to dangerous pages.",
  scam: "This page looks like a scam.",
  blocklisted: "This site is on your gateway's block list.",
};

const SEVERITY_ORDER = { CRITICAL: 4, HIGH: 3, MEDIUM: 2, LOW: 1, INFO: 0 };

/** The indicators that matter most first, trimmed to what the popup and overlay show. */
export function topIndicators(indicators, n = 5) {
  return [...(indicators || [])]
    .sort((a, b) => (SEVERITY_ORDER[b.severity] ?? 0) - (SEVERITY_ORDER[a.severity] ?? 0))
    .slice(0, n)
    .map((i) => ({ id: String(i.id || ""), title: String(i.title || i.id || ""), severity: String(i.severity || ""), category: String(i.category || "") }));
}

export function explainVerdict(verdict) {
  const classification = String(verdict.classification || "unknown");
  const indicators = topIndicators(verdict.indicators, 4);
  let headline = BY_CLASSIFICATION[classification];
  if (!headline && indicators.some((i) => i.id.includes("block"))) headline = BY_CLASSIFICATION.blocklisted;
  if (!headline) headline = "MalwareSnipper found strong signs that this page is dangerous.";
  return { headline, reasons: indicators.map((i) => i.title), classification };
}
