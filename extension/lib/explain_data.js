// Generated from engine/data/explain.json by `malwaresnipper extension explain`: do not edit.
export const EXPLAIN = {
  "headlines": {
    "blocklisted": "This site is on your gateway's block list.",
    "cryptominer": "This page uses your computer to mine cryptocurrency without asking.",
    "dropper": "This page tries to download or run malicious software on your computer.",
    "exploit_kit": "This page tries to attack your browser to take over your computer.",
    "incomplete": "This page could not be checked completely, so MalwareSnipper could not rule out a threat.",
    "keylogger": "This page may record what you type, such as passwords, and send it to someone else.",
    "malware": "This page tries to deliver malicious software to your computer.",
    "obfuscated": "This page runs deliberately hidden code, as malicious pages do to avoid being recognised.",
    "phishing": "This page looks like a phishing page: it may try to steal your passwords or card details.",
    "redirect": "This page sends visitors on to dangerous pages.",
    "scam": "This page looks like a scam.",
    "skimmer": "This page may steal the payment card details you type into it.",
    "unscanned": "This page could not be checked, and your gateway is set to stop what it cannot check."
  },
  "levels": {
    "BENIGN": "No threat found.",
    "MALICIOUS": "MalwareSnipper found strong signs that this page is dangerous.",
    "SUSPICIOUS": "MalwareSnipper found signs that this page may be dangerous. Be careful with what you type into it.",
    "UNKNOWN": "This page could not be checked."
  },
  "reasons": {
    "_comment": "Which findings a user reads as reasons (engine/explain.py user_reasons, extension/lib/explain.js userReasons): never a context finding (a known library, how the scan went); under 'No threat found' only what proves something on its own; otherwise what carries the verdict (strong strengths, and weaker findings of a notable severity), or, when nothing does, every finding that is not context.",
    "benign": [
      "decisive",
      "behaviour"
    ],
    "limit": 5,
    "never": [
      "context"
    ],
    "notable_severities": [
      "CRITICAL",
      "HIGH",
      "MEDIUM"
    ],
    "strong": [
      "decisive",
      "behaviour"
    ]
  }
};
