"""Fixtures of the integration tests: the dashboard's browser and gateway (helpers/dashboard.py)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from helpers.dashboard import CHROMIUM, CHROMIUM_ARGS, Gateway


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """One headless Chromium per test module."""
    if not CHROMIUM.exists():
        pytest.skip("Debian's chromium is not installed at /usr/bin/chromium")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    """A fresh gateway (empty history) for the module."""
    gw = Gateway(tmp_path_factory.mktemp("gateway"))
    gw.start()
    try:
        yield gw
    finally:
        gw.stop()

