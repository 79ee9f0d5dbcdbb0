"""Error responses of sub-resources (a favicon's 404) are not page scans; pages cannot use the rule.

Chromium sends no ``Sec-Fetch-*`` headers to a plain-HTTP site, so its favicon request carries only
an image-first ``Accept``; a server's 404 for it is an HTML "Error response" page that used to be
scanned as a page. The attacker's side: whatever headers a request carries, a navigation or a
successful answer is planned as before, and the browser's ``Sec-Fetch-Dest`` wins when present.
"""

from __future__ import annotations

import pytest

from malwaresnipper.addon.scanplan import first_accepted, plan_scan

CHROMIUM_IMAGE_ACCEPT = "image/avif,image/webp,image/apng,image/svg+xml,image/*,*/*;q=0.8"
CHROMIUM_PAGE_ACCEPT = ("text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,"
                        "image/apng,*/*;q=0.8,application/signed-exchange;v=b3;q=0.7")
HTML = ["text/html; charset=utf-8"]


def test_first_accepted_media_range() -> None:
    assert first_accepted(CHROMIUM_IMAGE_ACCEPT) == "image/avif"
    assert first_accepted(" Text/HTML;q=1 , */*") == "text/html"
    assert first_accepted("") == ""


def test_a_favicon_404_without_sec_fetch_dest_is_not_a_page_scan() -> None:
    plan = plan_scan(HTML, accept=CHROMIUM_IMAGE_ACCEPT, status=404)
    assert (plan.kind, plan.reason) == (None, "image_error")


@pytest.mark.parametrize("status", [200, 204, 301, 302, 304])
def test_an_image_accept_does_not_hide_a_successful_page(status: int) -> None:
    """A client (or a page's fetch() over plain HTTP) sending an image Accept for an HTML answer
    that succeeded is still scanned: only error answers take the image rule."""
    assert plan_scan(HTML, accept=CHROMIUM_IMAGE_ACCEPT, status=status).kind == "html"


@pytest.mark.parametrize("dest", ["document", "iframe", "frame", "empty"])
def test_sec_fetch_dest_wins_over_an_image_accept(dest: str) -> None:
    """A 404 phishing page (a known trick against crawlers) opened as a document is scanned even
    when its request says image/* first; so is a fetch() (``empty``) of its HTML."""
    assert plan_scan(HTML, fetch_dest=dest, accept=CHROMIUM_IMAGE_ACCEPT, status=404).kind == "html"


def test_a_navigation_to_an_error_page_is_scanned() -> None:
    for content_types in (HTML, [], ["text/plain"]):
        plan = plan_scan(content_types, accept=CHROMIUM_PAGE_ACCEPT, status=404)
        assert plan.kind is not None, content_types
        assert plan_scan(content_types, fetch_dest="document", status=500).kind is not None
    # curl's */* and no Accept at all may be anything: a page
    assert plan_scan([], accept="*/*", status=404).kind == "sniff"
    assert plan_scan([], status=404).kind == "sniff"


def test_a_subresources_untyped_error_answer_is_not_sniffed() -> None:
    assert plan_scan(["text/plain"], fetch_dest="empty", status=404).reason == "error_response"
    assert plan_scan([], accept="application/json", status=500).reason == "error_response"
    # the same answers with 200 are sniffed as before
    assert plan_scan(["text/plain"], fetch_dest="empty", status=200).kind == "sniff"
    assert plan_scan([], accept="application/json", status=200).kind == "sniff"


def test_script_destinations_keep_their_rules_on_errors() -> None:
    assert plan_scan(["text/plain"], fetch_dest="script", status=404).kind == "js"
    assert plan_scan(["image/png"], fetch_dest="script", status=404).kind is None
