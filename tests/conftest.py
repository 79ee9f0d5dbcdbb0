"""Fixtures for every test: an isolated data dir, the CI completeness check, a fresh PostgreSQL database.

Shared helper code lives in ``tests/helpers/`` (imported as ``helpers.<module>``; pyproject.toml puts
``tests/`` on ``sys.path``); fixtures live in the ``conftest.py`` of the folder that uses them.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from helpers.corpus import DATA_DIR
from helpers.postgres import fresh_database


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


@pytest.fixture
async def postgres_dsn() -> AsyncIterator[str]:
    """The DSN of a fresh, empty database (dropped after the test)."""
    async with fresh_database() as dsn:
        yield dsn

