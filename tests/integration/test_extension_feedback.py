"""The extension's reports and overrides in real Chromium against a real gateway (the fixtures of
test_extension_browser): "This page is safe" on the overlay and "This page is dangerous" in the
popup are recorded with the tab's scan, "Proceed anyway" and "Always allow" as overrides.

A screenshot of the overlay after a report goes to $MALWARESNIPPER_SCREENS when set.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from test_extension_browser import (  # type: ignore[import-not-found]  # noqa: F401 - fixtures
    Browser,
    Gateway,
    Overlay,
    browser,
    expect,
    gateway,
    site,
    wait_overlay,
    wait_until,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]


def _scan_of(gateway: Gateway, url: str) -> str:  # noqa: F811 - the rig's gateway object
    [summary] = wait_until(lambda: gateway.scans_for(url), 15, f"the capture of {url} in history")
    return str(summary["scan_id"])


def test_overlay_and_popup_reports_and_overrides_reach_the_gateway(gateway: Gateway, browser: Browser) -> None:  # noqa: F811 - fixtures
    browser.configure(gateway)
    url = browser.url("report.evil.test", "/checkout")
    page = browser.context.new_page()
    page.goto(url)
    wait_overlay(page, browser)
    scan_id = _scan_of(gateway, url)

    # The page's own script cannot file a report: its synthetic click is ignored.
    page.evaluate("() => document.documentElement.lastElementChild.dispatchEvent(new MouseEvent('click', {bubbles: true}))")
    Overlay(page).click("report-safe")
    nodes = wait_until(lambda: (n := Overlay(page).nodes()) and "Thank you" in n["reported"]["text"] and n, 15,
                       "the overlay to confirm the report")
    assert "leave" in nodes, "a report does not dismiss the warning"
    folder = os.environ.get("MALWARESNIPPER_SCREENS")
    if folder:
        page.screenshot(path=str(Path(folder) / "extension-overlay-reported.png"))
    reports = gateway.scan(scan_id)["reports"]
    assert [(r["verdict"], r["source"]) for r in reports] == [("safe", "extension")]

    Overlay(page).click("proceed")
    overrides = wait_until(lambda: gateway.scan(scan_id)["overrides"], 15, "the proceed-anyway override")
    assert [(o["action"], o["source"]) for o in overrides] == [("proceed_anyway", "extension")]

    # The popup for that tab: "This page is dangerous".
    state = browser.tab_state(url)
    assert state is not None and state["scan_id"] == scan_id
    popup = browser.context.new_page()
    popup.goto(f"{browser.origin}/popup.html?tab={state['tabId']}")
    expect(popup.locator("#tab-report")).to_be_visible(timeout=15000)
    popup.click("#report-dangerous")
    expect(popup.locator("#report-status")).to_have_text("You reported this page as dangerous.", timeout=15000)
    if folder:
        popup.set_viewport_size({"width": 420, "height": 640})
        popup.screenshot(path=str(Path(folder) / "extension-popup-reported.png"), full_page=True)
    reports = gateway.scan(scan_id)["reports"]
    assert [(r["verdict"], r["source"]) for r in reports] == [("safe", "extension"), ("dangerous", "extension")]

    # "Always allow this site" records an override too.
    allow_url = browser.url("allow-fb.evil.test", "/")
    page2 = browser.context.new_page()
    page2.goto(allow_url)
    wait_overlay(page2, browser)
    allow_scan = _scan_of(gateway, allow_url)
    Overlay(page2).click("allow")
    overrides = wait_until(lambda: gateway.scan(allow_scan)["overrides"], 15, "the always-allow override")
    assert [(o["action"], o["source"]) for o in overrides] == [("always_allow", "extension")]
    for p in (page, page2, popup):
        p.close()
