"""Ctrl-C during ``malwaresnipper train`` (a real subprocess) leaves no half-written files."""

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
