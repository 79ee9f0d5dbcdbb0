"""The non-ML layers over the labelled corpus: a floor on detection, a ceiling on false positives.

The bounds were measured on the train/dev files in ``../shared/data`` (figures in the issue notes
and below) and set a little below/above what we reach, so a regression in any heuristic layer
shows up here. The ML layer is measured separately (tests/training/test_corpus_floors.py).
"""

from __future__ import annotations

import gzip
import json
import re
from collections import Counter
from collections.abc import Iterator

import pytest

from helpers.corpus import DATA_DIR, needs_corpus
from malwaresnipper.engine import Capture, CaptureError, RiskEngine

pytestmark = [needs_corpus, pytest.mark.corpus]

HEURISTIC_LAYERS = ["url", "reputation", "javascript", "dom", "signatures"]
SUSPICIOUS = 40.0
ORIGINAL_URL = re.compile(r"""<link[^>]+rel=["\']?original["\']?[^>]*href=["\']([^"\']+)""")


def rows(name: str) -> Iterator[dict]:
    with gzip.open(DATA_DIR / name, "rt", encoding="utf-8") as fh:
        for line in fh:
            yield json.loads(line)


def flagged_rates(pairs: list[tuple[str, bool]]) -> dict[str, float]:
    total: Counter[str] = Counter()
    hits: Counter[str] = Counter()
    for key, hit in pairs:
        total[key] += 1
        hits[key] += hit
    return {key: hits[key] / total[key] for key in total}


@pytest.fixture(scope="module")
def engine() -> RiskEngine:
    return RiskEngine(layers=HEURISTIC_LAYERS)


def test_url_corpus(engine: RiskEngine) -> None:
    pairs = []
    for row in rows("url_corpus.train.jsonl.gz"):
        try:
            capture = Capture.build(row["url_norm"])
        except CaptureError:
            continue  # a handful of ftp:// rows
        pairs.append((row["label"], engine.scan(capture).risk_score >= SUSPICIOUS))
    rates = flagged_rates(pairs)
    print("url corpus, share with risk >= 40:", rates)
    assert rates["phishing"] >= 0.30  # measured 34.5%
    assert rates["benign"] <= 0.002  # measured 0.13%


def test_js_corpus(engine: RiskEngine) -> None:
    pairs = []
    for row in rows("js_corpus.train.jsonl.gz"):
        url = "https://www.example.org/static/app.js"
        if row.get("format") == "html":
            capture = Capture.build(url.replace("app.js", "page.html"), html=row["content"])
        else:
            capture = Capture.build(url, scripts=[{"url": url, "text": row["content"], "inline": False}])
        hit = engine.scan(capture).risk_score >= SUSPICIOUS
        key = row["label"] if row["label"] == "malicious" else f"benign/{row['category']}/{'min' if row.get('minified') else 'plain'}"
        pairs.append((key, hit))
        pairs.append((f"{row['label']}/{row['category']}", hit))
    rates = flagged_rates(pairs)
    print("js corpus, share with risk >= 40:", json.dumps(rates, indent=1))
    benign = [v for k, v in rates.items() if k.startswith("benign/") and k.count("/") == 2]
    assert max(benign) <= 0.02  # measured at most 1.1% (minified site bundles)
    assert rates["benign/library"] <= 0.005  # measured 0.14%
    assert rates["malicious"] >= 0.82  # measured 87.4%
    assert rates["malicious/wsh_dropper"] >= 0.90  # measured 94.9%
    assert rates["malicious/exploit_kit"] >= 0.78  # measured 84.3%


def test_html_corpus(engine: RiskEngine) -> None:
    pairs = []
    for row in rows("html_corpus.train.jsonl.gz"):
        # A gateway sees the page's real URL: the login snapshots keep it in <link rel=original>;
        # other rows have none and get a neutral placeholder.
        original = ORIGINAL_URL.search(row["content"])
        url = original.group(1) if original else "https://site.example/index.html"
        capture = Capture.build(url, html=row["content"])
        hit = engine.scan(capture).risk_score >= SUSPICIOUS
        pairs.append((f"{row['label']}/{row['category']}", hit))
    rates = flagged_rates(pairs)
    print("html corpus, share with risk >= 40:", json.dumps(rates, indent=1))
    assert rates["benign/login_page"] <= 0.08  # measured 6.7%: real sign-in pages are the hard negatives
    assert rates["benign/article_page"] <= 0.05  # measured 3.4%
    for category in ("doc_page", "demo_page", "app_page"):
        assert rates[f"benign/{category}"] <= 0.01  # measured 0%
    assert rates["phishing/phishing_kit_page"] >= 0.50  # measured 57.9%
    assert rates["phishing/phishing_kit_data_page"] >= 0.40  # measured 46.7%
