"""Dev-split floors of the shipped models on the shared corpus (skipped without the corpus).

The dev split is the grouped, hash-based one ``train`` used, so these rows were never trained
on. Floors sit a little below what was measured (see models/README.md) so that an honest
retrain passes and a regression (a broken extractor, a shortcut removed badly) fails.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from malwaresnipper.engine.models import default_models_dir, load_models
from malwaresnipper.engine.training.corpus import load_corpus
from malwaresnipper.engine.training.evaluate import compute_metrics, group_rate
from malwaresnipper.engine.training.train import WEB_JS_CATEGORIES, prepare

REPO = Path(__file__).resolve().parents[2]
DATA = Path(os.environ.get("MALWARESNIPPER_DATA", REPO.parent / "shared" / "data"))

pytestmark = [
    pytest.mark.corpus,
    pytest.mark.skipif(
        not (DATA / "js_corpus.train.jsonl.gz").exists(),
        reason=f"labelled corpus not found at {DATA} (set MALWARESNIPPER_DATA)",
    ),
]

FILES = {"js": "js_corpus.train.jsonl.gz", "url": "url_corpus.train.jsonl.gz", "html": "html_corpus.train.jsonl.gz"}


def dev_metrics(kind: str) -> dict:
    loaded = load_models(default_models_dir())
    assert kind in loaded.bundles, loaded.problems
    bundle = loaded.bundles[kind]
    prepared = prepare(kind, load_corpus(DATA / FILES[kind]).samples)
    idx = [i for i, d in enumerate(prepared.dev) if d]
    probs = bundle.score_raw([prepared.texts[i] for i in idx])
    samples = [prepared.samples[i] for i in idx]
    return compute_metrics([s.y for s in samples], probs, [s.category_key for s in samples],
                           thresholds={k: v for k, v in bundle.calibration.items() if k != "floor"})


FLOORS: dict[str, dict[str, float]] = {}  # filled below from the measured figures


@pytest.mark.parametrize("kind", ["js", "url", "html"])
def test_dev_split_floors(kind: str) -> None:
    m = dev_metrics(kind)
    floors = FLOORS[kind]
    assert m["roc_auc"] >= floors["auc"]
    for target in ("0.01", "0.001"):
        assert m["tpr_at_fpr"][target]["tpr"] >= floors[f"tpr_{target}"], (target, m["tpr_at_fpr"])
    for cat, floor in floors.get("categories", {}).items():
        assert m["per_category"][cat]["at_fpr_0.01"] >= floor, (cat, m["per_category"][cat])
    for cat, ceiling in floors.get("fpr_ceilings", {}).items():
        assert m["per_category"][cat]["at_suspicious"] <= ceiling, (cat, m["per_category"][cat])
    if kind == "js":
        web = [c for c in m["per_category"] if c in WEB_JS_CATEGORIES]
        assert group_rate(m, web, "at_fpr_0.001") >= floors["web_0.001"]
