"""MIME types, encodings and the scan decision, against the browsers' own conformance data.

Every vector of the vendored web-platform-tests files (tests/addon/vectors/, BSD-3-Clause, see
README.md there) runs here: MIME Sniffing's parser and groups, Fetch's "extract a MIME type"
over several Content-Type values, the script-blocking rules, and the Encoding Standard's labels.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from malwaresnipper.addon.decode import decode_text, encoding_for_label, prescan
from malwaresnipper.addon.mime import extract_mime_type, parse_mime_type
from malwaresnipper.addon.scanplan import depends_on_destination, is_nosniff, plan_scan

VECTORS = Path(__file__).parent / "vectors"


def _load(name: str) -> list:
    return [v for v in json.loads((VECTORS / name).read_text(encoding="utf-8")) if isinstance(v, dict)]


def _ids(vectors: list, key: str = "input") -> list[str]:
    return [repr(v[key])[:60] for v in vectors]


MIME_TYPES = _load("mime-types.json")
MIME_GROUPS = _load("mime-groups.json")
CONTENT_TYPES = _load("content-types.json")
SCRIPT_CONTENT_TYPES = _load("script-content-types.json")
ENCODINGS = json.loads((VECTORS / "encodings.json").read_text(encoding="utf-8"))
LABELS = [(label, enc["name"]) for group in ENCODINGS for enc in group["encodings"] for label in enc["labels"]]


def test_every_vendored_file_has_its_vectors():
    assert len(MIME_TYPES) == 57 and len(MIME_GROUPS) == 146 and len(CONTENT_TYPES) == 16
    assert len(SCRIPT_CONTENT_TYPES) == 12 and len(LABELS) == 228


@pytest.mark.parametrize("vector", MIME_TYPES, ids=_ids(MIME_TYPES))
def test_wpt_mime_type_parsing(vector):
    parsed = parse_mime_type(vector["input"])
    if vector["output"] is None:
        assert parsed is None
        return
    # this revision of the file writes ";" between parameters as "; " (see vectors/README.md)
    assert parsed is not None and parsed.serialize() == vector["output"].replace("; ", ";")
    if "encoding" in vector:
        expected = vector["encoding"]
        got = encoding_for_label(parsed.charset)
        assert (got or "").lower() == (expected or "").lower()
    if vector.get("navigable"):
        assert plan_scan([vector["input"]], fetch_dest="document").kind == "html"


@pytest.mark.parametrize(
    "text, output",
    [  # later additions upstream (0x0B/0x0C are not HTTP whitespace; spaces around "/")
        ("text/html;charset=\x0bgbk", "text/html"),
        ("text/html;\x0ccharset=gbk", "text/html"),
        ("x/x\n\r\t ;x=x", "x/x;x=x"),
        ("\n\r\t x/x;x=x\n\r\t ", "x/x;x=x"),
        ("x/x;\n\r\t x=x\n\r\t ;x=y", "x/x;x=x"),
        ("\x0bx/x", None),
        ("x/x\x0c", None),
        ("text /html", None),
        ("text/ html", None),
        ('"text/html"', None),
    ],
)
def test_mime_type_parsing_edge_cases(text, output):
    parsed = parse_mime_type(text)
    assert (parsed.serialize() if parsed else None) == output


@pytest.mark.parametrize("vector", MIME_GROUPS, ids=_ids(MIME_GROUPS))
def test_wpt_mime_groups(vector):
    mime = parse_mime_type(vector["input"])
    assert mime is not None
    groups = {
        "image": mime.is_image(), "audio or video": mime.is_audio_or_video(), "font": mime.is_font(),
        "ZIP-based": mime.is_zip_based(), "archive": mime.is_archive(), "XML": mime.is_xml(),
        "HTML": mime.is_html(), "scriptable": mime.is_scriptable(), "JavaScript": mime.is_javascript(),
        "JSON": mime.is_json(),
    }
    assert {name for name, member in groups.items() if member} == set(vector["groups"])


@pytest.mark.parametrize("vector", CONTENT_TYPES, ids=_ids(CONTENT_TYPES))
def test_wpt_extract_a_mime_type_from_several_headers(vector):
    mime = extract_mime_type(vector["input"])
    assert mime is not None and mime.serialize() == vector["mimeType"]
    got = encoding_for_label(mime.charset)
    assert (got or "").lower() == (vector["encoding"] or "").lower()
    # the document the browser makes of it: HTML is a page to scan, text/plain is not markup
    assert mime.essence == vector["documentContentType"]


@pytest.mark.parametrize("vector", SCRIPT_CONTENT_TYPES, ids=_ids(SCRIPT_CONTENT_TYPES))
def test_wpt_script_types_with_nosniff(vector):
    # these vectors are served with X-Content-Type-Options: nosniff to a <script>
    plan = plan_scan(vector["input"], fetch_dest="script", nosniff=True)
    assert (plan.kind == "js") is vector["executes"]
    if vector["executes"]:
        assert (encoding_for_label(plan.charset) or "").lower() == (vector["encoding"] or "").lower()


@pytest.mark.parametrize("label, name", LABELS, ids=[label for label, _ in LABELS])
def test_wpt_encoding_labels(label, name):
    # every label, in any ASCII case and with ASCII whitespace around it, names its encoding
    assert encoding_for_label(label) == name.lower()
    assert encoding_for_label(f" \t{label.upper()}\n") == name.lower()
    # and a script that declares it keeps its ASCII readable (UTF-16: in the UTF-8 view beside it)
    assert "var a = 1;" in decode_text(b"var a = 1;", label, kind="js").text


@pytest.mark.parametrize("label", ["cp037", "utf-32", "utf-7", "base64", "rot13", "hex", "zlib", "idna",
                                   "punycode", "latin-1", "utf8-sig", "utf_16", "no-such-codec", ""])
def test_labels_outside_the_standard_are_ignored(label):
    assert encoding_for_label(label) is None
    payload = b"<script>document.title='PWNED'</script>"
    assert "document.title='PWNED'" in decode_text(payload, label).text
    assert "document.title='PWNED'" in decode_text(payload, label, kind="js").text


def test_a_bom_wins_over_the_header_and_the_meta():
    page = "<meta charset=iso-2022-kr><script>document.title='PWNED'</script>"
    assert decode_text(b"\xef\xbb\xbf" + page.encode(), "utf-16le").text == page
    assert decode_text(b"\xff\xfe" + page.encode("utf-16-le"), "windows-1252").text == page
    assert decode_text(b"\xfe\xff" + page.encode("utf-16-be"), None, kind="js").text == page


def test_replacement_labels_decode_to_one_replacement_character_in_a_page():
    payload = b"<script>document.title='PWNED'</script>"
    for label in ("iso-2022-kr", "csiso2022kr", "hz-gb-2312", "iso-2022-cn", "iso-2022-cn-ext", "replacement"):
        decoded = decode_text(payload, label)
        assert decoded.text == "\ufffd" and decoded.charset == "replacement"
    # a module script or a worker ignores the label and runs UTF-8: that reading is scanned too
    script = decode_text(b"evil()", "iso-2022-kr", kind="js")
    assert script.text == "\ufffd\nevil()" and script.with_utf8_view
    utf16 = decode_text(b"evil()", "utf-16le", kind="js")
    assert utf16.text.endswith("\nevil()") and utf16.with_utf8_view


def test_meta_prescan_follows_the_standard():
    assert prescan(b'<meta charset="koi8-r">') == "koi8-r"
    assert prescan(b"<meta http-equiv=Content-Type content='text/html; charset=\"euc-jp\"'>") == "euc-jp"
    assert prescan(b"<meta content='text/html; charset=euc-jp'>") is None  # no pragma
    assert prescan(b"<!-- <meta charset=iso-2022-kr> --><p>") is None  # inside a comment
    assert prescan(b"<meta charset=utf-16le>") == "utf-8"
    assert prescan(b"<meta charset=x-user-defined>") == "windows-1252"
    assert prescan(b"<meta charset=cp037><meta charset=koi8-r>") == "koi8-r"
    assert prescan(b'<div title="<meta charset=koi8-r>"><meta charset=gbk>') == "gbk"
    # an ASCII-hiding encoding read from a <meta> keeps a UTF-8 reading beside it
    decoded = decode_text(b"<meta charset=iso-2022-kr><script>evil()</script>", None)
    assert decoded.charset == "replacement" and "evil()" in decoded.text


@pytest.mark.parametrize(
    "content_types, dest, nosniff, kind",
    [
        # the tricks: a script-like destination runs what it gets
        (["application/json"], "script", False, "js"),
        (["text/css"], "script", False, "js"),
        (["font/woff2"], "script", False, "js"),
        (["text/xml"], "script", False, "js"),
        (["application/zip"], "script", False, "js"),
        (["application/pdf"], "script", False, "js"),
        (["text/html"], "script", False, "js"),
        (["text/plain"], "worker", False, "js"),
        ([], "serviceworker", False, "js"),
        # ... except image/audio/video/csv, and non-JavaScript types under nosniff
        (["image/png"], "script", False, None),
        (["image/svg+xml"], "script", False, None),
        (["audio/mpeg"], "script", False, None),
        (["video/mp4"], "script", False, None),
        (["text/csv"], "script", False, None),
        (["text/plain"], "script", True, None),
        ([], "script", True, None),
        (["text/javascript"], "script", True, "js"),
        (["text/javascript", "image/png"], "script", False, None),  # the last valid type wins
        # documents: HTML and every XML type are pages; the last valid Content-Type wins
        (["image/png", "text/html"], "document", False, "html"),
        (["image/png, text/html"], "iframe", False, "html"),
        (["text/html", "bogus"], "document", False, "html"),
        (["text/html", "*/*"], "document", False, "html"),
        (["image/svg+xml"], "document", False, "html"),
        (["application/xhtml+xml"], "iframe", False, "html"),
        (["text/xml"], "embed", False, "html"),
        (["application/rss+xml"], "object", False, "html"),
        ([], "document", False, "sniff"),
        (["unknown/unknown"], "document", False, "sniff"),
        (["image/png"], "document", False, None),
        (["text/html", "image/png"], "document", False, None),
        # an <img>, a font, a stylesheet never run script, whatever the type says
        (["image/svg+xml"], "image", False, None),
        (["text/html"], "image", False, None),
        (["text/html"], "style", False, None),
        # no Sec-Fetch-Dest (curl) or fetch(): today's rules, plus XML and the last valid type
        (["image/png", "text/html"], "", False, "html"),
        (["image/svg+xml"], "", False, "html"),
        (["image/svg+xml"], "empty", False, "html"),
        (["text/javascript"], "", False, "js"),
        (["application/json"], "empty", False, None),
        (["text/plain"], "", False, "sniff"),
        (["image/png"], "", False, None),
    ],
)
def test_scan_plan(content_types, dest, nosniff, kind):
    assert plan_scan(content_types, fetch_dest=dest, nosniff=nosniff).kind == kind


def test_nosniff_and_vary():
    assert is_nosniff(["nosniff"]) and is_nosniff(["NoSniff, foo"]) and is_nosniff(["nosniff", "x"])
    assert not is_nosniff([]) and not is_nosniff(["foo, nosniff"]) and not is_nosniff(["no-sniff"])
    # a plan that changes with the destination must not be replayed across destinations by a cache
    assert depends_on_destination(["text/html"]) and depends_on_destination(["application/json"])
    assert not depends_on_destination(["image/png"]) and not depends_on_destination(["text/csv"])
