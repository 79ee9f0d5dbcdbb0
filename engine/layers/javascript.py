"""Layer 3: static analysis of each script (obfuscation, dangerous sinks, malicious behaviours).

Each script is judged on its own: :func:`assess_script` turns the script's
:class:`~malwaresnipper.engine.features.javascript.JsFeatures` into catalogue findings
(``engine/data/findings.toml``: title, severity, points) and combines them with the one noisy-OR
(two independent signs of obfuscation weigh more than one). The layer's score is the worst
script's score.

The hard case is minified library code: short names, long lines, ``Function("return this")``,
numeric tables, ``fromCharCode`` in codecs. None of these is scored on its own. What scores is what
bundlers never produce: code hidden in escapes or encoded strings and then executed, packer and
encoder families, Windows Script Host objects, miner endpoints, card fields sent to another site.
Nothing is ever executed; every rule reads counts and offsets the extractor already computed, and
the few rules that look closer (iframe styling, URL hosts) do so only when a trigger matched.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

from ..features.javascript import JsFeatures
from ..findings import Finding, catalogue
from ..findings import combine as combine
from ..results import Evidence, Indicator, LayerResult, Severity, snippet

if TYPE_CHECKING:
    from ..capture import Capture
    from ..config import EngineConfig
    from ..features import Features, ScriptView

#: Evidence entries kept per indicator (one per script, the worst scripts first).
MAX_EVIDENCE = 3
#: Scripts below this size get the "small script does one thing" rules (redirect stubs).
SMALL_SCRIPT = 3000
_URL_RE = re.compile(r"""https?://([A-Za-z0-9.-]+)""")
_HIDDEN_NEAR_IFRAME = re.compile(
    r"""(?:width|height)\s*[=:]\s*['"]?[01](?:px)?\b|visibility\s*[=:]\s*['"]?hidden|display\s*[=:]\s*['"]?none"""
    r"""|(?:left|top)\s*[=:]\s*['"]?-\d{3,}""",
    re.IGNORECASE,
)


@dataclass(frozen=True, slots=True)
class ScriptFinding:
    """A catalogue finding seen in one script, and where (before it becomes an indicator)."""

    finding: Finding
    offset: int = -1
    length: int = 24

    @property
    def name(self) -> str:
        return self.finding.id.split(".", 1)[1]

    @property
    def score(self) -> float:
        return self.finding.points

    @property
    def severity(self) -> Severity:
        return self.finding.severity

    @property
    def category(self) -> str:
        return self.finding.spec.category

    @property
    def classification(self) -> str | None:
        return self.finding.spec.classification

    @property
    def title(self) -> str:
        return self.finding.title


def _hit(name: str, offset: int, length: int, variant: str = "") -> ScriptFinding:
    return ScriptFinding(catalogue().finding(f"javascript.{name}", variant=variant), offset, length)


@dataclass(frozen=True, slots=True)
class ScriptAssessment:
    """A script's combined score and the findings behind it."""

    score: float
    findings: tuple[ScriptFinding, ...]


def _registrable(host: str) -> str:
    try:
        from ..psl import registrable_domain

        return registrable_domain(host) or host
    except Exception:  # noqa: BLE001 - a missing suffix list must not break the layer
        parts = host.lower().rstrip(".").split(".")
        return ".".join(parts[-2:])


def _foreign_hosts(text: str, page_host: str, limit: int = 50) -> list[tuple[str, int]]:
    """URL literals in ``text`` whose site differs from the page's (host, offset)."""
    page_site = _registrable(page_host) if page_host else ""
    out: list[tuple[str, int]] = []
    for i, match in enumerate(_URL_RE.finditer(text)):
        if i >= limit:
            break
        host = match.group(1).lower().rstrip(".")
        if host and (not page_site or _registrable(host) != page_site):
            out.append((host, match.start()))
    return out


def _iframe_hidden_offset(text: str) -> int:
    """Offset of an iframe whose nearby code hides it (zero size, hidden, off-screen), or -1."""
    lower = text.lower()
    pos = lower.find("iframe")
    for _ in range(20):
        if pos < 0:
            break
        if _HIDDEN_NEAR_IFRAME.search(text, max(0, pos - 300), pos + 400):
            return pos
        pos = lower.find("iframe", pos + 6)
    return -1


_ACTIVEX_CALL = re.compile(r"ActiveXObject\s*\(\s*([\"'])?")


def _dynamic_activex_offset(text: str) -> int:
    """Offset of ``new ActiveXObject(expr)`` whose argument is not a plain string, or -1.

    Legitimate old-IE code names its object literally ("Microsoft.XMLHTTP"); droppers compute it.
    """
    for i, match in enumerate(_ACTIVEX_CALL.finditer(text)):
        if i >= 50:
            break
        if match.group(1) is None:
            return match.start()
    return -1


def _in_string_literal(text: str, pos: int) -> bool:
    """Whether the match at ``pos`` sits right after a quote (``"/*@cc_on!@*/false"`` idiom)."""
    return pos > 0 and any(q in text[max(0, pos - 3) : pos] for q in ("'", '"'))


def assess_script(text: str, f: JsFeatures, page_host: str = "") -> ScriptAssessment:
    """All findings for one script, and their combined score."""
    findings: list[ScriptFinding] = []
    add = findings.append
    c = f.count
    kb = max(1.0, f.length / 1000.0)

    # -- encoder and packer families -------------------------------------------------------------
    if c("packer"):
        # Some sites pack ordinary code too: on its own this is "suspicious", not "malicious".
        add(_hit("packer", f.offset("packer"), 40))
    nonws = max(1, f.length - f.whitespace)
    if (f.jsfuck_chars / nonws > 0.75 and nonws >= 300) or (c("jsfuck") >= 3 and f.jsfuck_chars / nonws > 0.4):
        add(_hit("jsfuck", max(0, f.offset("jsfuck")), 40))
    if c("aaencode") >= 2:
        add(_hit("aaencode", f.offset("aaencode"), 40))
    if c("jjencode"):
        add(_hit("jjencode", f.offset("jjencode"), 40))
    hex_names = c("hex_name")
    if hex_names >= 20 and hex_names / kb >= 0.5:
        rotated = c("obfuscator_rotate") > 0
        add(_hit("obfuscator_io", f.offset("hex_name"), 40, "rotated" if rotated else "plain"))

    # -- hidden strings ---------------------------------------------------------------------------
    ascii_escapes = f.escape_hex + f.escape_unicode_ascii + f.escape_percent_u
    if ascii_escapes >= 30 and f.ascii_escape_density > 0.1:
        heavy = f.ascii_escape_density > 0.4
        add(_hit("escaped_code", f.escape_offset, 60, "heavy" if heavy else "light"))
    charcode_dense = f.charcode_list_items * 4.0 / max(1, f.length)
    if f.charcode_list_items >= 50 and charcode_dense >= 0.3 and c("fromcharcode"):
        add(_hit("charcode_payload", f.charcode_list_offset, 60))
    if f.string_concat >= 5 and f.string_concat / kb >= 1:
        add(_hit("string_splitting", text.find('"+"') if '"+"' in text else text.find("'+'"), 40))
    payload = (
        (f.longest_string > 5000 and not f.longest_string_is_data_uri and f.longest_string_code_ratio < 0.05)
        or f.hex_string_chars >= 500
        or f.base64_string_chars >= 2000
    )
    if payload:
        add(_hit("encoded_payload", f.longest_string_offset, 60))
    if c("bracket_call") >= 3:
        add(_hit("bracket_calls", f.offset("bracket_call"), 40))
    if f.comments >= 10 and f.comments / kb >= 2 and f.length / max(1, f.lines) > 200:
        add(_hit("junk_comments", text.find("/*"), 40))
    if c("paren_concat") >= 10 and c("paren_concat") / kb >= 1:
        add(_hit("junk_expressions", f.offset("paren_concat"), 40))
    avg_string = f.string_chars / max(1, f.string_count)
    if c("return_string") >= 20 and c("return_string") / kb >= 3 and avg_string < 8:
        add(_hit("fragment_functions", f.offset("return_string"), 40))
    elif f.string_count >= 50 and avg_string < 5 and f.string_count / kb >= 20:
        add(_hit("fragmented_strings", -1, 40))
    if f.identifier_random_ratio >= 0.3 and f.identifier_count >= 30 and f.base64_string_chars < 1000:
        add(_hit("generated_names", -1, 40))
    runs_code = c("eval") or c("function_ctor") or f.new_function
    if runs_code and f.percent >= 100 and f.percent / kb >= 20:
        add(_hit("percent_encoded_eval", text.find("%"), 60))
    if runs_code and f.escape_hex >= 30 and f.ascii_escape_density >= 0.02:
        add(_hit("escaped_eval", f.escape_offset, 60))
    if f.separator_string_chars >= 500:
        add(_hit("separator_encoding", f.longest_string_offset, 60))
    if c("literal_slicing") and f.length < 5000 and f.identifier_random_ratio >= 0.3:
        # Hex alphabets ("0123456789abcdef".charAt(n)) are everywhere; with random names they are not.
        add(_hit("literal_slicing", f.offset("literal_slicing"), 40))
    if c("call_chain") >= 5:
        add(_hit("junk_call_chain", f.offset("call_chain"), 40))
    if c("reversed_code") >= 2:
        add(_hit("reversed_code", f.offset("reversed_code"), 40))

    # Only clear signs count as "obfuscated": a long string alone is common in bundles (JSON, CSS),
    # so weak signs count only together.
    obfuscation = [x.score for x in findings if x.category == "obfuscation"]
    obfuscated = bool(obfuscation) and (max(obfuscation) >= 30 or sum(obfuscation) >= 35)

    # -- dangerous sinks --------------------------------------------------------------------------
    sink = next((n for n in ("eval", "function_ctor", "string_timer") if c(n)), None)
    if sink is None and f.new_function:
        sink = "new_function"
    decoder = next((n for n in ("unescape", "atob", "fromcharcode", "charcodeat", "reverse") if c(n)), None)
    if c("packer"):
        pass  # the packer finding already is "eval of decoded code"; do not count it twice
    elif sink and decoder:
        where = f.offset(sink) if sink != "new_function" else text.find("new Function(")
        add(_hit("eval_decoded", where, 40, "obfuscated" if obfuscated else "plain"))
    elif sink in ("eval", "function_ctor", "new_function") and obfuscated:
        add(_hit("eval_obfuscated", f.offset(sink) if sink != "new_function" else text.find("new Function("), 40))
    elif sink == "string_timer":
        add(_hit("string_timer", f.offset("string_timer"), 40))
    if c("document_write") and (c("markup_script") or c("markup_iframe")):
        # document.write(unescape("%3Cscript ...")) is the old analytics loader: only hidden code counts.
        add(_hit("write_markup", f.offset("document_write"), 40, "obfuscated" if obfuscated else "plain"))

    # -- Windows Script Host droppers -------------------------------------------------------------
    cc_on = c("cc_on") > 0 and not _in_string_literal(text, f.offset("cc_on"))
    wsh_kinds = [n for n in ("wscript", "wscript_shell", "adodb", "fso", "savetofile", "reversed_marker",
                             "shell_run") if c(n)]
    if cc_on:
        wsh_kinds.append("cc_on")
    wsh_core = [n for n in wsh_kinds if n in ("wscript", "wscript_shell", "adodb", "fso", "savetofile", "reversed_marker")]
    if wsh_core == ["adodb"] and c("plugin_probe") >= 2:
        # Browser fingerprinting lists probe ActiveX names ("AcroPDF.PDF", "Adodb.Stream", ...).
        wsh_core = []
    if c("activex") and c("run_call") and "run_call" not in wsh_kinds:
        wsh_kinds.append("run_call")
    if wsh_core and (len(wsh_kinds) >= 2 or c("activex")):
        add(_hit("wsh_dropper", f.offset(wsh_core[0]), 40))
    elif wsh_core:
        add(_hit("wsh_object", f.offset(wsh_core[0]), 40))
    elif cc_on:
        armed = obfuscated or c("shell_run") or c("activex")
        add(_hit("conditional_compilation", f.offset("cc_on"), 40, "armed" if armed else "plain"))
    elif c("activex") and (dynamic := _dynamic_activex_offset(text)) >= 0 and (
        obfuscated or not c("activex_progid")
    ):
        add(_hit("activex_dynamic", dynamic, 40, "obfuscated" if obfuscated else "plain"))
    elif c("activex") and c("shell_run"):
        add(_hit("activex_exec", f.offset("activex"), 40))

    # -- cryptomining -----------------------------------------------------------------------------
    if c("miner"):
        add(_hit("cryptominer", f.offset("miner"), 40))
    elif c("miner_weak") >= 2 and (c("wasm") or c("worker") or c("websocket")):
        add(_hit("mining_behaviour", f.offset("miner_weak"), 40))

    # -- card skimming ----------------------------------------------------------------------------
    # Ways to send data out: requests, beacons, sockets, or a URL put into an image or iframe src.
    exfil = next((n for n in ("xhr", "fetch", "beacon", "websocket", "new_image", "ajax", "src_assign") if c(n)), None)
    card = "card_field" if c("card_field") else ("card_cvv" if c("card_cvv") else None)
    if card and obfuscated and exfil and (c("form_read") or c("serialize")):
        add(_hit("skimmer", f.offset(card), 40, "obfuscated"))
    elif card == "card_field" and c("form_read") and (c("checkout") or c("serialize")) and f.length < 60_000:
        # Magecart style: checkout card fields read by a small script that knows another site.
        foreign = _foreign_hosts(text, page_host)
        if foreign and (exfil or c("serialize")):
            add(_hit("skimmer", f.offset(card), 40, "sends" if exfil else "serialises"))

    # -- forced redirects -------------------------------------------------------------------------
    if c("location_assign"):
        decoded = obfuscated or (f.length < SMALL_SCRIPT and any(c(n) for n in ("unescape", "atob", "fromcharcode")))
        timed = "settimeout" in text[:SMALL_SCRIPT].lower() if f.length < SMALL_SCRIPT else False
        if decoded:
            add(_hit("decoded_redirect", f.offset("location_assign"), 40))
        elif f.length < SMALL_SCRIPT and (timed or _foreign_hosts(text, page_host, limit=5)):
            add(_hit("forced_redirect", f.offset("location_assign"), 40))

    # -- hidden iframes ---------------------------------------------------------------------------
    if c("create_iframe") or c("markup_iframe"):
        pos = _iframe_hidden_offset(text)
        if pos >= 0:
            # Analytics and ad code create hidden iframes all day; only hidden code doing it is news.
            add(_hit("hidden_iframe", pos, 40, "obfuscated" if obfuscated else "plain"))

    # -- key logging ------------------------------------------------------------------------------
    if c("key_listener") and c("key_code") and exfil and (c("fromcharcode") or obfuscated) and f.length < 30000:
        add(_hit("keylogger", f.offset("key_listener"), 40))

    # -- exploit kits -----------------------------------------------------------------------------
    if c("shellcode") and (f.escape_percent_u >= 10 or obfuscated):
        add(_hit("shellcode", f.offset("shellcode"), 40))
    elif f.escape_percent_u >= 20:
        add(_hit("unicode_payload", f.offset("unescape"), 40))
    if c("plugin_probe") >= 3 and obfuscated:
        add(_hit("plugin_probe", f.offset("plugin_probe"), 40))

    return ScriptAssessment(combine(x.score for x in findings), tuple(findings))


# -- parser-based behaviour (issue 14, item 4) ---------------------------------------------------
# A minimal integration, kept apart so that the findings catalogue can take it over: the page's
# behaviour findings (engine/features/behaviour.py) become indicators here, and only those listed
# in WIRED_BEHAVIOUR count towards the layer's score. Everything else page_behaviour() returns is
# available to a corroboration policy but does not score on its own.

#: Behaviour finding ids that become javascript-layer indicators, with their severity.
WIRED_BEHAVIOUR = {"skimmer_exfiltration", "checkout_loader"}


def _page_behaviour(views: tuple[ScriptView, ...], features: Features,
                    page_host: str) -> tuple[tuple[Indicator, ...], list[tuple[float, str]], dict[str, object]]:
    """(indicators, (score, location) pairs, details) of the page's behaviour findings."""
    from ..features.behaviour import ScriptRef, page_behaviour

    refs = [ScriptRef(view.location, features.behaviour(view)) for view in views]
    texts = {view.location: view.text for view in views}
    indicators: list[Indicator] = []
    scores: list[tuple[float, str]] = []
    for finding in page_behaviour(refs, page_host):
        if finding.id not in WIRED_BEHAVIOUR:
            continue
        evidence = tuple(
            Evidence(snippet=snippet(texts.get(e.location, ""), e.offset, e.end), location=e.location, offset=e.offset)
            for e in finding.evidence[:MAX_EVIDENCE]
        )
        variant = finding.severity.lower() if finding.id == "skimmer_exfiltration" else ""
        seen = catalogue().finding(f"javascript.{finding.id}", *evidence, variant=variant, summary=finding.title)
        indicators.append(seen.indicator())
        scores.append((seen.points, finding.evidence[0].location if finding.evidence else ""))
    skipped: dict[str, int] = {}
    for ref in refs:
        if not ref.facts.analysed:
            reason = ref.facts.skipped or "not analysed"
            skipped[reason] = skipped.get(reason, 0) + 1
    details: dict[str, object] = {
        "parsed": sum(1 for ref in refs if ref.facts.analysed),
        "not_parsed": skipped,
        "truncated": sum(1 for ref in refs if ref.facts.truncated),
    }
    return tuple(indicators), scores, details


# -- known library code (issue 14 item 3) -------------------------------------------------------
# Kept apart and small so that the findings catalogue can take these two indicators over.

def known_code_indicators(layer: str, features: Features) -> tuple[tuple[Indicator, ...], list[dict[str, object]]]:
    """INFO indicators for scripts that are known library code, and a summary for details.

    ``known_library``: an unmodified copy (its heavy analysis is skipped). ``known_library_foreign_code``:
    a known library with foreign code, of which only the foreign part is analysed; the indicator
    says which library, how much foreign code and where, so a user sees what was scanned.
    """
    from ..known_code import Status

    unmodified: list[Evidence] = []
    foreign: list[Evidence] = []
    summary: list[dict[str, object]] = []
    for view in features.scripts:
        match = features.known(view)
        if match is None or match.status is Status.UNKNOWN or match.library is None:
            continue
        summary.append({"location": view.location, "status": match.status.value,
                        "library": match.description, "foreign_chars": match.foreign_chars})
        if match.status is Status.UNMODIFIED:
            unmodified.append(Evidence(snippet=match.description, location=view.location))
        else:
            start = match.foreign[0][0] if match.foreign else 0
            foreign.append(Evidence(snippet=match.description, location=view.location, offset=start))
    indicators = []
    if unmodified:
        titles = sorted({e.snippet for e in unmodified})
        library = titles[0] + (f" and {len(titles) - 1} more" if len(titles) > 1 else "")
        indicators.append(catalogue().finding(f"{layer}.known_library", *unmodified[:MAX_EVIDENCE],
                                              library=library).indicator())
    if foreign:
        indicators.append(catalogue().finding(f"{layer}.known_library_foreign_code", *foreign[:MAX_EVIDENCE],
                                              library=foreign[0].snippet).indicator())
    return tuple(indicators), summary


class JavascriptLayer:
    """Static analysis of every script of a capture; the worst script sets the score."""

    name: ClassVar[str] = "javascript"
    version: ClassVar[str] = "2"

    def __init__(self, config: EngineConfig) -> None:
        self.config = config

    def analyze(self, capture: Capture, features: Features) -> LayerResult:
        known, known_details = known_code_indicators(self.name, features)
        views = features.analysed_scripts
        if not views:
            details: dict[str, object] = {"scripts": 0}
            if known_details:
                details["known_code"] = known_details
            return LayerResult(layer=self.name, score=0.0, confidence=1.0 if known else 0.0,
                               indicators=known, details=details)
        page_host = capture.host
        grouped: dict[str, tuple[ScriptFinding, list[Evidence], float]] = {}
        scored: list[tuple[float, str]] = []
        worst: JsFeatures | None = None
        errors = 0
        for view in views:
            feats = features.js(view)
            if feats.error:
                errors += 1
            assessment = assess_script(view.text, feats, page_host)
            if not scored or assessment.score > max(scored)[0]:
                worst = feats
            scored.append((assessment.score, view.location))
            for finding in assessment.findings:
                offset = finding.offset if finding.offset >= 0 else None
                evidence = Evidence(
                    snippet=snippet(view.text, finding.offset, finding.offset + finding.length)
                    if finding.offset >= 0 else "",
                    location=view.location,
                    offset=offset,
                )
                key = finding.name
                if key not in grouped:
                    grouped[key] = (finding, [evidence], assessment.score)
                else:
                    best, evidences, best_score = grouped[key]
                    if finding.score > best.score:
                        best, best_score = finding, assessment.score
                    if len(evidences) < MAX_EVIDENCE:
                        evidences.append(evidence)
                    grouped[key] = (best, evidences, best_score)
        # -- behaviour from the parser, combined across the page's scripts ----------------------
        behaviour_indicators, behaviour_scores, behaviour_details = _page_behaviour(views, features, page_host)
        scored.extend(behaviour_scores)
        indicators = behaviour_indicators + tuple(
            hit.finding.with_evidence(evidences).indicator()
            for hit, evidences, _ in sorted(grouped.values(), key=lambda g: (-g[0].score, g[0].name))
        )
        indicators += known
        scored.sort(reverse=True)
        score = scored[0][0] if scored else 0.0
        details = {
            "scripts": len(views),
            "worst_script": scored[0][1] if scored and score > 0 else None,
            "script_scores": [round(s, 2) for s, _ in scored[:5]],
        }
        if worst is not None and score > 0:
            # A few numbers that explain the worst script to a person reading the verdict.
            details["worst_script_style"] = {
                "chars": worst.length,
                "ascii_escape_density": round(worst.ascii_escape_density, 3),
                "longest_string": worst.longest_string,
                "string_entropy": round(worst.string_entropy, 2),
                "generated_names": round(worst.identifier_random_ratio, 2),
                "minified_style": worst.is_minified_style,
            }
        if errors:
            details["feature_errors"] = errors
        details["behaviour"] = behaviour_details
        if known_details:
            details["known_code"] = known_details
        return LayerResult(layer=self.name, score=score, indicators=indicators, confidence=1.0, details=details)
