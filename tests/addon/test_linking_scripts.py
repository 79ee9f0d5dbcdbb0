"""PageLinker and scripts judged MALICIOUS: their texts stay out of the page's capture (their
verdicts are folded in instead), and a cross-origin script request naming only the page's origin
is still linked to the page."""

from __future__ import annotations

from malwaresnipper.addon.linking import PageLinker
from malwaresnipper.engine.verdict import ScriptVerdict

HTML = '<html><head><script src="https://cdn.evil/pay.js"></script><script src="/app.js"></script></head></html>'
PAGE = "https://shop.example/checkout"


def test_a_malicious_script_is_folded_not_scanned_again_with_the_page() -> None:
    linker = PageLinker()
    linker.script_seen("https://cdn.evil/pay.js", "steal()")
    linker.script_seen("https://shop.example/app.js", "app()")
    assert [s["url"] for s in linker.known_scripts(HTML, PAGE)] == ["https://cdn.evil/pay.js",
                                                                    "https://shop.example/app.js"]
    bad = ScriptVerdict(url="https://cdn.evil/pay.js", sha256="ab" * 32, scan_id="s1", classification="skimmer")
    linker.script_judged("https://cdn.evil/pay.js#x", bad)
    assert [s["url"] for s in linker.known_scripts(HTML, PAGE)] == ["https://shop.example/app.js"]
    assert linker.malicious_scripts(HTML, PAGE) == [bad]
    linker.script_judged("https://cdn.evil/pay.js", None)  # its latest verdict is not MALICIOUS
    assert linker.malicious_scripts(HTML, PAGE) == []
    assert len(linker.known_scripts(HTML, PAGE)) == 2


def test_a_cross_origin_request_with_the_pages_origin_finds_the_page() -> None:
    linker = PageLinker()
    linker.page_seen(PAGE, "conn-1", "scan-page")
    ref = linker.page_for(referer="https://shop.example/", client_id="conn-2")
    assert ref is not None and (ref.url, ref.scan_id) == (PAGE, "scan-page")
    other = linker.page_for(referer="https://other.example/", client_id="conn-3")
    assert other is not None and other.scan_id is None
