"""Metrics checked against numbers worked out by hand, and ``eval`` end to end."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from malwaresnipper.engine.training.evaluate import compute_metrics, roc_auc, threshold_at_fpr
from malwaresnipper.engine.training.synthetic import write_corpus

# 4 positives, 6 negatives.
LABELS = [1, 1, 1, 1, 0, 0, 0, 0, 0, 0]
SCORES = [90, 80, 55, 30, 60, 35, 20, 10, 5, 0]
CATS = ["ek", "ek", "skimmer", "skimmer", "lib", "lib", "lib", "site", "site", "site"]


def test_auc_by_hand() -> None:
    # Pairs (pos, neg) where pos > neg: 90 and 80 beat all 6 (12); 55 beats 5 (all but 60);
    # 30 beats 20, 10, 5, 0 (4). Total 21 of 24.
    assert roc_auc(LABELS, SCORES) == pytest.approx(21 / 24)
    assert roc_auc([1, 0], [5, 5]) == pytest.approx(0.5)  # a tie counts half
    assert roc_auc([1, 1], [1, 2]) is None


def test_threshold_at_fpr_by_hand() -> None:
    negatives = [60, 35, 20, 10, 5, 0]
    # FPR <= 1/6 allows one negative at or above t: t just above 35 (only 60 passes).
    t = threshold_at_fpr(negatives, 1 / 6)
    assert 35 < t < 35.001
    # FPR <= 1 % allows none: t just above 60.
    assert 60 < threshold_at_fpr(negatives, 0.01) < 60.001
    assert threshold_at_fpr([], 0.01) is None


def test_compute_metrics_by_hand() -> None:
    m = compute_metrics(LABELS, SCORES, CATS, thresholds={"suspicious": 40, "malicious": 70})
    assert set(m) == {"n", "roc_auc", "tpr_at_fpr", "at_thresholds", "per_category", "samples_per_s"}
    assert m["n"] == 10
    # At FPR 1 % (no negative allowed) the threshold sits above 60: TPR = 2/4 (90, 80).
    assert m["tpr_at_fpr"]["0.01"]["tpr"] == pytest.approx(0.5)
    assert m["tpr_at_fpr"]["0.001"]["fpr"] == 0.0
    sus = m["at_thresholds"]["suspicious"]  # >= 40: TP 90, 80, 55; FP 60
    assert sus["tpr"] == pytest.approx(3 / 4)
    assert sus["fpr"] == pytest.approx(1 / 6)
    assert sus["precision"] == pytest.approx(3 / 4)
    mal = m["at_thresholds"]["malicious"]  # >= 70: TP 90, 80; no FP
    assert (mal["tpr"], mal["fpr"], mal["precision"]) == (0.5, 0.0, 1.0)
    pc = m["per_category"]
    assert pc["ek"]["metric"] == "recall" and pc["ek"]["at_suspicious"] == 1.0
    assert pc["skimmer"]["at_suspicious"] == 0.5 and pc["skimmer"]["at_malicious"] == 0.0
    assert pc["lib"]["metric"] == "fpr" and pc["lib"]["at_suspicious"] == pytest.approx(1 / 3)
    assert pc["site"]["at_suspicious"] == 0.0


def test_eval_command_json_matches_scores_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``eval --json`` over a fixture: the metrics are recomputed here from the per-sample scores."""
    from malwaresnipper.cli.main import main

    data = write_corpus(tmp_path / "urls.jsonl.gz", "url", n=15)
    scores_path = tmp_path / "scores.jsonl"
    rc = main(["eval", "--data", str(data), "--json", "--quiet", "--layers", "url",
               "--scores", str(scores_path)])
    assert rc == 0
    out = json.loads(capsys.readouterr().out)
    assert set(out) == {"n", "roc_auc", "tpr_at_fpr", "at_thresholds", "per_category", "samples_per_s"}
    assert set(out["tpr_at_fpr"]) == {"0.01", "0.001"}
    assert set(out["at_thresholds"]) == {"suspicious", "malicious"}
    rows = [json.loads(line) for line in scores_path.read_text().splitlines()]
    assert out["n"] == len(rows) == 30
    assert {r["label"] for r in rows} == {"benign", "phishing"}
    assert set(rows[0]) == {"id", "label", "category", "risk_score", "threat_level"}
    pos = [r["risk_score"] for r in rows if r["label"] == "phishing"]
    neg = [r["risk_score"] for r in rows if r["label"] == "benign"]
    wins = sum(1.0 if p > n else 0.5 if p == n else 0.0 for p in pos for n in neg)
    assert out["roc_auc"] == pytest.approx(wins / (len(pos) * len(neg)), abs=1e-9)
    tpr_sus = sum(p >= 40 for p in pos) / len(pos)
    fpr_sus = sum(n >= 40 for n in neg) / len(neg)
    assert out["at_thresholds"]["suspicious"]["tpr"] == pytest.approx(tpr_sus)
    assert out["at_thresholds"]["suspicious"]["fpr"] == pytest.approx(fpr_sus)
    assert out["per_category"]["phishing"]["n"] == 15
    assert out["samples_per_s"] > 0


def test_eval_command_rejects_missing_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from malwaresnipper.cli.main import main

    assert main(["eval", "--data", str(tmp_path / "nope.jsonl"), "--quiet"]) == 2
    assert "no such file" in capsys.readouterr().err
