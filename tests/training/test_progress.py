"""Progress output of long runs: a bar on a terminal, plain periodic lines in logs."""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
from pathlib import Path

from malwaresnipper.engine.training.progress import Progress
from malwaresnipper.engine.training.synthetic import write_corpus

BAR = re.compile(r"\r(?P<label>[^\r\[]+) \[(?P<bar>[#-]{30})\] (?P<done>\d+)/(?P<total>\d+) +[\d.]+% [\d,.]+/s ETA (\d+:\d\d|\?)")
PLAIN = re.compile(r"^(?P<label>.+): (?P<done>\d+)/(?P<total>\d+) \([\d.]+%\), [\d,.]+/s, about (\d+:\d\d|\?) left$")


def read_all(fd: int) -> str:
    chunks = []
    os.set_blocking(fd, False)
    while True:
        try:
            chunk = os.read(fd, 65536)
        except (BlockingIOError, OSError):
            break
        if not chunk:
            break
        chunks.append(chunk)
    return b"".join(chunks).decode()


def test_a_terminal_gets_a_bar_with_rate_and_time_left() -> None:
    master, slave = os.openpty()
    with os.fdopen(slave, "w") as terminal:
        with Progress(4, "train js", stream=terminal, interval_s=0) as bar:
            for _ in range(4):
                bar.update()
        shown = read_all(master)
    os.close(master)
    frames = [m.groupdict() for m in BAR.finditer(shown)]
    assert [f["done"] for f in frames][:4] == ["1", "2", "3", "4"]
    assert frames[-1]["bar"] == "#" * 30 and frames[-1]["total"] == "4"
    assert shown.endswith("\r\n") or shown.endswith("\n"), "the finished bar ends its line"


def test_a_log_gets_plain_lines_and_no_carriage_returns() -> None:
    log = io.StringIO()
    with Progress(3, "eval urls", stream=log, interval_s=0) as bar:
        for _ in range(3):
            bar.update()
    lines = log.getvalue().splitlines()
    assert "\r" not in log.getvalue()
    assert [PLAIN.match(line)["done"] for line in lines] == ["1", "2", "3"]


def test_plain_lines_are_periodic_not_one_per_sample() -> None:
    log = io.StringIO()
    with Progress(5000, "featurising", stream=log) as bar:  # default interval off a terminal: 5 s
        for _ in range(5000):
            bar.update()
    lines = log.getvalue().splitlines()
    # The first sample (so a log shows the run started) and the last; nothing in between.
    assert [PLAIN.match(line)["done"] for line in lines] == ["1", "5000"]


def test_a_disabled_progress_writes_nothing() -> None:
    log = io.StringIO()
    with Progress(10, "quiet", stream=log, interval_s=0, enabled=False) as bar:
        bar.update(10)
    assert log.getvalue() == ""


def test_eval_on_a_terminal_shows_the_bar(tmp_path: Path) -> None:
    """The real command, its stderr on a pseudo-terminal: the user sees the bar finish."""
    data = write_corpus(tmp_path / "urls.jsonl.gz", "url", n=10)
    master, slave = os.openpty()
    proc = subprocess.run(
        [sys.executable, "-m", "malwaresnipper.cli.main", "eval", "--data", str(data), "--layers", "url"],
        stdout=subprocess.PIPE, stderr=slave, timeout=120, check=False,
    )
    os.close(slave)
    shown = read_all(master)
    os.close(master)
    assert proc.returncode == 0, shown
    frames = [m.groupdict() for m in BAR.finditer(shown)]
    assert frames and frames[-1]["done"] == frames[-1]["total"] == "20"
    assert "eval urls.jsonl.gz" in frames[-1]["label"]
    assert b"roc_auc" in proc.stdout.lower() or b"auc" in proc.stdout.lower()
