"""Known code without the corpus: the canonical form, the parser check, chunks, matching, databases."""

from __future__ import annotations

import json
import random
import re
import time

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from helpers.known_code import BANNER, EXFIL, acme_database, acme_known, acme_library
from malwaresnipper.engine.known_code import (
    KnownCode,
    KnownCodeDatabase,
    KnownCodeError,
    KnownCodeMatch,
    SourceFile,
    Status,
    build_database,
    canonical_form,
    fingerprint,
)
from malwaresnipper.engine.known_code.canonical import (
    Fingerprint,
    Unfingerprintable,
    statement_offsets,
)
from malwaresnipper.engine.known_code.verify import verify

LIB = acme_library()
KNOWN = acme_known()


def code_hash(text: str) -> int:
    return fingerprint(text).code_hash


# -- the canonical form ---------------------------------------------------------------------------

SAME_CODE = {
    "other banner": acme_library(banner="/*! Acme Widgets v1.4.2 | rebuilt by ShopCMS, see LICENSE.txt */\n"),
    "no banner": acme_library(banner=""),
    "CRLF line endings": LIB.replace("\n", "\r\n"),
    "byte-order mark": "\ufeff" + LIB,
    "line comments removed": re.sub(r"  // [^\n]*\n", "", LIB),
    "indented with tabs": LIB.replace("    ", "\t").replace("  ", "\t"),
    "indentation removed": re.sub(r"\n[ \t]+", "\n", LIB),
    "source map comment": LIB + "//# sourceMappingURL=acme.min.js.map\n",
    "trailing block comment": LIB + "/* end of file\n */",
    "double quotes": LIB.replace("'", '"'),
    "another version string": LIB.replace("'1.4.2'", "'1.4.3'"),
    "spaces around operators": LIB.replace(" = ", "=").replace(" < ", "<"),
}


@pytest.mark.parametrize("variant", sorted(SAME_CODE))
def test_comments_whitespace_banner_quotes_and_version_do_not_change_the_code_hash(variant: str) -> None:
    assert SAME_CODE[variant] != LIB
    assert code_hash(SAME_CODE[variant]) == code_hash(LIB)


CHANGED_CODE = {
    "name": ("var opts = extend", "var optz = extend"),
    "string": ("'widget3: element expected'", "'https://collect.example/'"),
    "number": ("count += 1 * k / 2", "count += 2 * k / 2"),
    "regular expression": ("/^x4-\\d+$/", "/^x4-\\w+$/"),
    "operator": ("k < items.length", "k <= items.length"),
    "template": ("`${count}px`", "`${count}em`"),
    "strict mode dropped": ("'use strict';", ""),
    "statement inserted": ("var VERSION = '1.4.2';", "var VERSION = '1.4.2';" + EXFIL),
    "statement removed": ("  root.widget7 = widget7;\n", ""),
    "comment turned into code": ("// widget 9: counts", "steal(); // widget 9: counts"),
    "return followed by a line break": ("return { count", "return\n{ count"),
    "decoder replaced": ("new Function(atob(s))", "new Function(unescape(s))"),
}


@pytest.mark.parametrize("change", sorted(CHANGED_CODE))
def test_every_code_change_changes_the_code_hash(change: str) -> None:
    old, new = CHANGED_CODE[change]
    assert old in LIB
    assert code_hash(LIB.replace(old, new, 1)) != code_hash(LIB)


def test_swapping_two_functions_changes_the_code_hash() -> None:
    one = LIB[LIB.index("  // widget 1:"):LIB.index("  // widget 2:")]
    two = LIB[LIB.index("  // widget 2:"):LIB.index("  // widget 3:")]
    assert code_hash(LIB.replace(one + two, two + one)) != code_hash(LIB)


@pytest.mark.parametrize("first, second", [
    ("function f(){ return\nx }", "function f(){ return x }"),  # returns undefined vs x
    ("a\n++b", "a++\nb"),  # a; ++b  vs  a++; b
    ("a + +b", "a++b"),
    ("a - -b", "a--b"),
    ("x = a / /re/.source", "x = a // re/.source"),
    ("x = 1 .toString()", "x = 1.toString()"),
    ("x = /re/ in y", "x = /re/in y"),
])
def test_spaces_and_line_breaks_count_where_they_change_the_tokens(first: str, second: str) -> None:
    assert canonical_form(first) != canonical_form(second)


def test_canonical_form_keeps_code_and_drops_the_rest() -> None:
    form = canonical_form("/*! x v1.0 */ var a = 'b' ; // c\n if ( a ) { a = a / 2 }")
    assert form == ';\x01var a="b";\x01if(a){a=a/ 2}'


def test_reserved_characters_make_a_text_unfingerprintable() -> None:
    with pytest.raises(Unfingerprintable):
        fingerprint("var a = 1;\x00")
    assert KNOWN.match(LIB + "\x00").status is Status.UNKNOWN


# -- the lexer against a real parser ----------------------------------------------------------------

TRICKY = [
    "x = a / b / c; y = /re/g.test(z); z = a /= 2;",
    "function f(s) { return /x/.test(s) ? /y/ : s / 2; }",
    "a = b\n/re/g.exec(c)",
    "x = `a${ `b${c}` }d` + '${not}' + \"q\" + `${ {a: '}'}.a }`;",
    "s = 'it\\'s' + \"\\\"\" + 'line\\\ncontinued';",
    "x = y /* c */ / 2; // end /* not a comment start\nq = 1;",
    "z = a ? .5 : 1; w = a?.b; v = a ?? b; u = a?.[0];",
    "if (a) { /[/]/.test(b) }",
    "x = [/a/, /b\\/c/]; y = (/c/); t = typeof /re/; v = void /re/;",
    "a = b++ / 2; c = d-- / 3;",
    "var \u00e9t\u00e9 = 1;\u00a0x = 2;\u2028y = 3; s = '\u00fc\u00f6';",
    "label: for (;;) { break label; }",
    "class A { #p = 1; get x() { return this.#p / 2; } static s = /re/; }",
    "async function g() { for await (const x of y) { yield /re/; } }",
]


@pytest.mark.parametrize("code", TRICKY)
def test_lexer_agrees_with_tree_sitter(code: str) -> None:
    assert verify(code).ok, verify(code).reason


@pytest.mark.parametrize("code", [
    "if (a) /[//]/.test(b); steal();",  # a regex after if (...): the lexer would see a comment
    "x = 1;\n<!-- steal();\n",  # an HTML-like comment
    "#!/usr/bin/env node\nx = 1;",
    "x = <div>{a}</div>;",  # JSX: not JavaScript a browser runs
    "x = (;",
])
def test_verify_refuses_what_the_lexer_would_misread(code: str) -> None:
    assert not verify(code).ok


def test_a_file_the_lexer_would_misread_never_enters_a_database() -> None:
    bad = LIB.replace("root.widget5 = widget5;", "if (root) /[//]/.test(root); root.widget5 = widget5;")
    db = build_database([SourceFile(bad, "bad", "1", "bad.js"), SourceFile(LIB, "acme-widgets", "1.4.2", "a.js")])
    assert [f.library for f in db.files] == ["acme-widgets"]
    assert db.excluded == {"parser disagrees: only the parser sees a regex": 1}


# -- chunks ---------------------------------------------------------------------------------------

def test_an_insertion_changes_only_the_chunks_around_it() -> None:
    starts = statement_offsets(LIB)
    at = starts[len(starts) // 2]
    before = fingerprint(LIB).chunk_hashes
    after = fingerprint(LIB[:at] + EXFIL + LIB[at:]).chunk_hashes
    assert len(before) > 20
    assert len(set(before) - set(after)) <= 2
    assert len(set(after) - set(before)) <= 3


def test_statement_offsets_line_up_with_the_canonical_statements() -> None:
    for text in (LIB, SAME_CODE["CRLF line endings"], "a;b;c", "x = /a;b/; y = 'c;}'; z = `;${1}`", ";;}}"):
        fp = fingerprint(text)
        assert len(statement_offsets(text)) == sum(fp.chunk_statements) == fp.canonical.count("\x01") + 1


# -- matching ------------------------------------------------------------------------------------

def test_an_unmodified_copy_is_recognised_with_its_name() -> None:
    match = KNOWN.match(SAME_CODE["other banner"])
    assert match.status is Status.UNMODIFIED
    assert match.description == "Acme Widgets v1.4.2 (unmodified)"
    assert match.library is not None and match.library.path == "dist/acme.js"


#: Where a statement can go (a syntax error would make the browser run nothing): the start, the
#: end, before each top-level statement of the wrapper and inside each function.
STATEMENT_STARTS = [0] + [m.end() for m in re.finditer(r"\n(?=  (?://|root\.)|    var items)", LIB)] + [len(LIB)]


@pytest.mark.parametrize("where", [0.0, 0.1, 0.25, 0.5, 0.75, 0.99, 1.0])
def test_one_statement_anywhere_is_never_unmodified_and_is_isolated(where: float) -> None:
    at = STATEMENT_STARTS[min(len(STATEMENT_STARTS) - 1, int(where * len(STATEMENT_STARTS)))]
    text = LIB[:at] + EXFIL + LIB[at:]
    match = KNOWN.match(text)
    assert match.status is Status.FOREIGN, match.reason
    assert any(s <= at and at + len(EXFIL) <= e for s, e in match.foreign), (at, match.foreign)
    assert EXFIL in match.foreign_text(text)
    assert match.foreign_chars < 4000  # the chunk(s) around it, not the library


@pytest.mark.parametrize("place", ["appended", "prepended", "inserted"])
def test_foreign_code_is_located_and_described(place: str) -> None:
    code = "\n(function(){ var f = document.forms[0]; " + EXFIL + " })();\n"
    middle = STATEMENT_STARTS[len(STATEMENT_STARTS) // 2]
    text = {"appended": LIB + code, "prepended": code + LIB, "inserted": LIB[:middle] + code + LIB[middle:]}[place]
    match = KNOWN.match(text)
    assert match.status is Status.FOREIGN
    assert match.placement == place
    assert match.description.startswith("Acme Widgets v1.4.2 with ")
    assert match.description.endswith(f"of foreign code {place}")
    assert code.strip() in match.foreign_text(text)


def test_a_truncated_copy_is_never_unmodified() -> None:
    assert KNOWN.match(LIB).status is Status.UNMODIFIED
    assert KNOWN.match(LIB, truncated=True).status is not Status.UNMODIFIED


def test_known_chunks_in_another_arrangement_are_not_skipped() -> None:
    fp = fingerprint(LIB)
    starts = statement_offsets(LIB)
    bounds = np.cumsum(fp.chunk_statements)
    b1, b2 = starts[int(bounds[5])], starts[int(bounds[9])]
    doubled = LIB[:b2] + LIB[b1:b2] + LIB[b2:]  # chunks 6-9 twice: every chunk known, no such file
    match = KNOWN.match(doubled)
    assert match.status is Status.UNKNOWN
    assert "arrangement" in match.reason


def test_unrelated_and_short_scripts_are_unknown() -> None:
    assert KNOWN.match("var a = 1; " * 500).status is Status.UNKNOWN
    assert KNOWN.match("x();").status is Status.UNKNOWN
    assert KnownCode([]).match(LIB).status is Status.UNKNOWN


def test_a_second_database_adds_libraries() -> None:
    other = acme_library(functions=40, banner="/*! Other Lib v2.0.0 */\n").replace("widget", "gadget")
    known = KnownCode([acme_database(), build_database([SourceFile(other, "other-lib", "2.0.0", "other.js")])])
    assert known.match(other).description == "Other Lib v2.0.0 (unmodified)"
    assert known.match(LIB).description == "Acme Widgets v1.4.2 (unmodified)"


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=st.one_of(st.text(max_size=3000), st.binary(max_size=3000).map(lambda b: b.decode("latin-1"))))
def test_match_never_raises(text: str) -> None:
    match = KNOWN.match(text)
    assert match.status in (Status.UNKNOWN, Status.FOREIGN)
    changed = LIB[:5000] + text + LIB[5000:]
    if KNOWN.match(changed).status is Status.UNMODIFIED:  # only if the text changed no code
        assert canonical_form(changed) == canonical_form(LIB)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 10**6))
def test_random_comments_and_spaces_between_statements_keep_the_copy_unmodified(seed: int) -> None:
    rng = random.Random(seed)
    starts = statement_offsets(LIB)[1:]
    text = LIB
    for at in sorted(rng.sample(starts, 10), reverse=True):
        text = text[:at] + rng.choice(["  ", "\n\t", "/* x */", "// y\n", "\r\n", "\u00a0"]) + text[at:]
    assert KNOWN.match(text).status is Status.UNMODIFIED


@pytest.mark.parametrize("text", [
    "/* a " * 200_000,
    "[/" * 300_000,
    "a=/[" * 150_000,
    "'" * 200_001,
    "`${" * 30_000,
    "x" * 1_000_000,
])
def test_pathological_text_is_quick(text: str) -> None:
    started = time.process_time()
    KNOWN.match(text)
    assert time.process_time() - started < 2.0


# -- databases ------------------------------------------------------------------------------------

def test_database_round_trip() -> None:
    db = acme_database()
    again = KnownCodeDatabase.from_bytes(db.to_bytes())
    assert again.to_bytes() == db.to_bytes()
    assert again.files == db.files
    assert KnownCode([again]).match(LIB).status is Status.UNMODIFIED


def test_building_is_deterministic_whatever_the_input_order() -> None:
    sources = [SourceFile(acme_library(n), f"lib{n}", "1.0", f"lib{n}.js") for n in (20, 30, 40)]
    first = build_database(sources).to_bytes()
    shuffled = sources[::-1] + sources[:1]  # another order, and a duplicate
    assert build_database(shuffled).to_bytes() == first


def test_a_database_holds_no_code(tmp_path) -> None:
    path = tmp_path / "acme.known"
    acme_database().save(path)
    data = path.read_bytes()
    assert b"querySelectorAll" not in data and b"element expected" not in data
    assert b"Acme Widgets v1.4.2" in data  # the display name is there


@pytest.mark.parametrize("damage, message", [
    (lambda b: b"NOTADB" + b[6:], "not a known-code database"),
    (lambda b: b[:-5], "damaged"),
    (lambda b: b.replace(b'"fingerprint":"strict-1"', b'"fingerprint":"strict-0"'), "rebuild it"),
])
def test_a_damaged_or_stale_database_is_refused(tmp_path, damage, message: str) -> None:
    path = tmp_path / "x.known"
    path.write_bytes(damage(acme_database().to_bytes()))
    with pytest.raises(KnownCodeError, match=message):
        KnownCodeDatabase.load(path)


def test_a_missing_database_file_is_a_clear_error(tmp_path) -> None:
    with pytest.raises(KnownCodeError, match="cannot read"):
        KnownCode.load([tmp_path / "nope.known"], bundled=False)


def test_a_failure_inside_the_matcher_means_unknown_and_a_full_scan(monkeypatch: pytest.MonkeyPatch) -> None:
    from malwaresnipper.engine.known_code import matcher

    def broken(text: str) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr(matcher, "fingerprint", broken)
    # Not the file's exact bytes: those are known by their text hash, without a fingerprint.
    match = KNOWN.match(SAME_CODE["source map comment"])
    assert match.status is Status.UNKNOWN and "RuntimeError" in match.reason


# -- the exact-text table (issue 17) -------------------------------------------------------------

def test_a_files_exact_bytes_are_known_without_the_canonical_form(monkeypatch: pytest.MonkeyPatch) -> None:
    from malwaresnipper.engine.known_code import matcher

    db = acme_database()
    assert len(db.text_hashes) == 1 and db.text_files.tolist() == [0]
    calls: list[int] = []
    real = matcher.fingerprint  # type: ignore[attr-defined]  # the name the matcher calls

    def counted(text: str) -> Fingerprint:
        calls.append(len(text))
        return real(text)

    monkeypatch.setattr(matcher, "fingerprint", counted)
    exact = KnownCode([db]).match(LIB)
    assert exact.status is Status.UNMODIFIED and exact.library == db.files[0] and calls == []
    # The same code in other bytes still takes the full match, with the same answer.
    crlf = SAME_CODE["CRLF line endings"]
    other = KnownCode([db]).match(crlf)
    assert calls and other == KnownCodeMatch(Status.UNMODIFIED, db.files[0], known_chars=len(crlf))


def test_the_text_table_gives_the_full_matchs_answer(monkeypatch: pytest.MonkeyPatch) -> None:
    """With two databases whose files share code, the shortcut names the first database's file,
    as the full match does; a truncated copy is never unmodified."""
    twin = acme_database(LIB.replace(BANNER, "/*! Acme Widgets Twin v9.9.9 */\n", 1))
    both = KnownCode([twin, acme_database()])
    fast = both.match(LIB)
    for db in both.databases:
        monkeypatch.setattr(db, "_by_text", {})
    slow = both.match(LIB)
    assert fast == slow and fast.library is not None and fast.library.banner == "Acme Widgets Twin v9.9.9"
    assert both.match(LIB, truncated=True).status is not Status.UNMODIFIED


def test_a_format_1_database_still_loads_without_the_text_table() -> None:
    db = acme_database()
    data = db.to_bytes()
    size = int.from_bytes(data[12:16], "little")
    header = json.loads(data[16:16 + size])
    header["format_version"] = 1
    del header["counts"]["texts"]
    blob = json.dumps(header, sort_keys=True, separators=(",", ":")).encode()
    blob += b" " * (-len(blob) % 8)
    tables = data[16 + size:len(data) - 12 * len(db.text_hashes)]  # without the text table
    loaded = KnownCodeDatabase.from_bytes(data[:12] + len(blob).to_bytes(4, "little") + blob + tables)
    assert len(loaded.text_hashes) == 0 and loaded.files == db.files
    assert KnownCode([loaded]).match(LIB).status is Status.UNMODIFIED  # through the canonical form
