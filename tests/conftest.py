"""Shared test helpers: where the labelled corpus is, and an isolated data dir per test."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DATA_DIR = Path(os.environ.get("MALWARESNIPPER_DATA", REPO.parent / "shared" / "data"))


def corpus_file(name: str) -> Path:
    """The path of a corpus file; tests using it skip with a reason when it is absent."""
    return DATA_DIR / name


needs_corpus = pytest.mark.skipif(
    not (DATA_DIR / "js_corpus.train.jsonl.gz").exists(),
    reason=f"labelled corpus not found at {DATA_DIR} (set MALWARESNIPPER_DATA); CI has it",
)


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Never let a test touch the user's ~/.malwaresnipper."""
    if "MALWARESNIPPER_HOME" not in os.environ or os.environ.get("MALWARESNIPPER_TEST_HOME_SET") != "1":
        monkeypatch.setenv("MALWARESNIPPER_HOME", str(tmp_path_factory.mktemp("home")))


def pytest_sessionstart(session: pytest.Session) -> None:
    """On CI the corpus and Chromium must be there: a skip there would hide a failure."""
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        missing = []
        if not (DATA_DIR / "js_corpus.train.jsonl.gz").exists():
            missing.append(f"the labelled corpus at {DATA_DIR}")
        if not Path("/usr/bin/chromium").exists():
            missing.append("/usr/bin/chromium")
        if not os.environ.get("MALWARESNIPPER_TEST_POSTGRES_DSN"):
            missing.append("PostgreSQL (MALWARESNIPPER_TEST_POSTGRES_DSN; scripts/services.sh sets it)")
        if shutil.which("redis-server") is None or not os.environ.get("MALWARESNIPPER_TEST_REDIS_URL"):
            missing.append("Redis (redis-server, MALWARESNIPPER_TEST_REDIS_URL; scripts/services.sh sets it)")
        if missing:
            raise pytest.UsageError("CI must run every test, but these are missing: " + ", ".join(missing))
