"""Ctrl-C during ``malwaresnipper train`` or ``eval`` (real subprocesses) leaves no half-written files."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from malwaresnipper.engine.training.synthetic import write_corpus


def test_sigint_during_training_keeps_previous_models(tmp_path: Path) -> None:
    data = write_corpus(tmp_path / "js.jsonl.gz", "js", n=20_000)
    out = tmp_path / "models"
    out.mkdir()
    (out / "manifest.json").write_text('{"previous": true}\n')
    proc = subprocess.Popen(
        [sys.executable, "-m", "malwaresnipper.cli.main", "train", "--data", str(data), "--out", str(out)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert proc.stderr is not None
    for line in proc.stderr:  # wait until it is busy featurising, then press Ctrl-C
        if "featurising" in line:
            break
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "interrupted" in err
    assert sorted(p.name for p in out.iterdir()) == ["manifest.json"]
    assert (out / "manifest.json").read_text() == '{"previous": true}\n'


def test_sigint_during_eval_leaves_no_scores_file(tmp_path: Path) -> None:
    """A scores file is only ever a finished run's: Ctrl-C mid-run leaves none (nor a temporary)."""
    data = write_corpus(tmp_path / "urls.jsonl.gz", "url", n=20_000)
    scores = tmp_path / "out" / "scores.jsonl"
    proc = subprocess.Popen(
        [sys.executable, "-m", "malwaresnipper.cli.main", "eval", "--data", str(data), "--layers", "url",
         "--scores", str(scores)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert proc.stderr is not None
    for line in proc.stderr:  # the first progress line: it is scanning and writing scores
        if line.startswith("eval urls.jsonl.gz:"):
            break
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "interrupted" in err
    assert list(scores.parent.iterdir()) == []


def test_eval_scores_file_is_complete_after_a_finished_run(tmp_path: Path) -> None:
    data = write_corpus(tmp_path / "urls.jsonl.gz", "url", n=30)
    scores = tmp_path / "scores.jsonl"
    scores.write_text("stale\n")
    proc = subprocess.run(
        [sys.executable, "-m", "malwaresnipper.cli.main", "eval", "--data", str(data), "--layers", "url",
         "--quiet", "--scores", str(scores)],
        capture_output=True, text=True, timeout=120, check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert len(scores.read_text().splitlines()) == 60
    assert sorted(p.name for p in tmp_path.iterdir()) == ["scores.jsonl", "urls.jsonl.gz"]
