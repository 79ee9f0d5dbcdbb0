"""HTML in, page facts out: the proxy path's stand-in for what the extension sees in the browser.

:func:`parse_html` turns a page into a :class:`ParsedPage`: title, visible text, inline and
external scripts, and the same :class:`~malwaresnipper.engine.capture.DomFacts` that the browser
extension computes (forms, iframes, meta refresh, link and resource counts ...), so the dom layer
scores both paths the same way. It uses selectolax's Lexbor parser (C, HTML5-conformant, error
tolerant) and never raises: whatever cannot be parsed yields an empty page with ``error`` set.
Nesting deeper than :data:`~.markup.MAX_NESTING` levels is flattened first (as browsers stop at
512): HTML5 tree building costs tokens x depth, so 40,000 nested ``<div>`` would otherwise take
seconds (see :mod:`.markup`); forms, inputs, frames, links and scripts are always kept.

:meth:`ParsedPage.vector` gives the stable numeric features the HTML model trains on; its keys are
part of the model contract (bump ``FEATURE_VERSION`` in ``features/__init__.py`` when they change).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from urllib.parse import urljoin, urlsplit

from selectolax.lexbor import LexborHTMLParser, LexborNode

from ..capture import DomFacts, FormFact, IframeFact, Script, sha256_text
from ..psl import registrable_domain
from .markup import MAX_NESTING, bound_nesting

#: Visible text kept on a ParsedPage (characters); DomFacts.text_excerpt keeps less.
MAX_TEXT_CHARS = 200_000
TEXT_EXCERPT_CHARS = 5_000
#: Forms, iframes and scripts kept per page: a page with more is abnormal already.
MAX_ITEMS = 500

#: ``<script type=...>`` values a browser executes as JavaScript ('' means no type attribute).
JS_TYPES = frozenset(
    {
        "",
        "text/javascript",
        "application/javascript",
        "module",
        "text/ecmascript",
        "application/ecmascript",
        "application/x-javascript",
        "text/x-javascript",
        "text/jscript",
        "text/livescript",
        "text/javascript1.0",
        "text/javascript1.1",
        "text/javascript1.2",
        "text/javascript1.3",
        "text/javascript1.4",
        "text/javascript1.5",
        "application/x-ecmascript",
    }
)

#: Input names/ids/autocomplete values that ask for payment card data.
_CARD_RE = re.compile(
    r"cc[-_]?(?:num|number|exp|csc|name)|card.?(?:num|no\b|number|holder|exp)|cardnumber|creditcard"
    r"|credit.?card|\bcvv|cvv2|\bcvc|\bcsc\b|security.?code|expir",
    re.I,
)
#: Inputs asking for identity or banking secrets other than a password (kit data pages).
_SENSITIVE_RE = re.compile(
    r"(?<![a-z])(?:ssn|sin|pin|otp|dob|cvv)(?![a-z])|social.?sec|pincode|atm.?pin|one.?time"
    r"|maiden|routing|account.?(?:num|no(?![a-z]))|acct.?n|birth|driver.?s?.?lic|passport",
    re.I,
)
_HIDDEN_STYLE_RE = re.compile(
    r"display\s*:\s*none|visibility\s*:\s*hidden|opacity\s*:\s*0(?:\.0*)?\s*(?:;|$)", re.I
)
_ZERO_SIZE_STYLE_RE = re.compile(r"(?:^|[;\s])(?:width|height)\s*:\s*[01](?:px)?\s*(?:;|$)", re.I)
_SIZE_RE = re.compile(r"^\s*(\d{1,7})")
_REFRESH_URL_RE = re.compile(r"""url\s*=\s*['"]?\s*([^'"\s>]*)""", re.I)
_CONTEXTMENU_RE = re.compile(
    r"oncontextmenu\s*=\s*['\"]?\s*return\s+false|contextmenu['\"]?\s*,\s*function"
    r"[^}]{0,200}?(?:preventDefault|return\s+false)|oncontextmenu\s*=\s*function"
    r"[^}]{0,200}?return\s+false",
    re.I,
)
_CLICK_RE = re.compile(r"\.click\(\s*\)|dispatchEvent\(\s*new\s+MouseEvent", re.I)
_ELEMENT_RE = re.compile(r"<[A-Za-z]")

#: Browsers mark a page saved to disk with the URL it came from; HTTrack marks its mirrors.
_SAVED_FROM_RE = re.compile(
    r"<!--\s*saved from url=\(\d{1,5}\)([^\s>]{1,2000})|Mirrored from ([^\s>]{1,500}) by HTTrack", re.I
)
#: File types a page should not push onto a visitor without a click.
BINARY_EXTENSIONS = (
    ".exe", ".scr", ".msi", ".dll", ".bat", ".cmd", ".com", ".pif", ".hta", ".vbs", ".vbe",
    ".js", ".jse", ".wsf", ".ps1", ".jar", ".apk", ".dmg", ".pkg", ".iso", ".img", ".zip",
    ".rar", ".7z", ".cab", ".docm", ".xlsm", ".pptm", ".lnk", ".appx", ".msix",
)
#: Words that brand pages and phishing pages ask for credentials with.
_CREDENTIAL_WORDS = re.compile(
    r"\b(?:sign[\s-]?in|log[\s-]?in|log[\s-]?on|password|passcode|verify|verification|account"
    r"|suspended|locked|confirm|update\s+your|billing|security\s+check|unusual\s+activity)\b",
    re.I,
)


def host_of(url: str) -> str:
    """The lower-cased host of ``url`` or '' (never raises)."""
    try:
        return (urlsplit(url).hostname or "").lower()
    except ValueError:
        return ""


@dataclass(frozen=True, slots=True)
class ParsedPage:
    """What the HTML of one page says, computed once per scan and shared by all layers."""

    title: str = ""
    text: str = ""
    inline_scripts: tuple[Script, ...] = ()
    external_scripts: tuple[str, ...] = ()
    dom: DomFacts = field(default_factory=DomFacts)
    base_url: str = ""
    #: Password inputs on the page, inside forms or not (kits often skip the <form>).
    password_inputs: int = 0
    #: Inputs asking for card data, and for other secrets (SSN, PIN, OTP, date of birth ...).
    card_inputs: int = 0
    sensitive_inputs: int = 0
    hidden_inputs: int = 0
    input_count: int = 0
    #: Links going nowhere (``#``, ``javascript:void(0)``, empty): common on cloned pages.
    null_link_count: int = 0
    #: Registrable domain -> number of links and resources pointing there (other sites only).
    external_domains: tuple[tuple[str, int], ...] = ()
    inline_event_handlers: int = 0
    has_base_tag: bool = False
    #: The URL a browser's "save page" or HTTrack recorded as the page's origin, if any.
    saved_from: str | None = None
    html_chars: int = 0
    error: str | None = None
    #: what was set aside before parsing (nesting past the limit), for the verdict's notes
    reductions: tuple[str, ...] = ()

    @property
    def top_external_domain(self) -> tuple[str, int]:
        """The other site this page links to most, and how often ('' and 0 when none)."""
        return self.external_domains[0] if self.external_domains else ("", 0)

    def vector(self) -> dict[str, float]:
        """Stable numeric features for the HTML model (names are part of the model contract)."""
        dom = self.dom
        forms = dom.forms
        page_site = registrable_domain(host_of(self.base_url))
        ext_actions = 0
        for form in forms:
            site = _action_site(form.action)
            if site is None:
                ext_actions += 1  # mailto:, data:, javascript:
            elif site and site != page_site:
                ext_actions += 1
        links = max(dom.link_count, 0)
        resources = max(dom.resource_count, 0)
        text_len = len(self.text)
        title_low = self.title.lower()
        text_low = self.text[:20_000].lower()
        top_domain, top_count = self.top_external_domain
        links_and_resources = links + resources
        inline_chars = sum(len(s.text or "") for s in self.inline_scripts)
        return {
            "html_chars_log": _log1p(self.html_chars),
            "element_count_log": _log1p(dom.element_count),
            "form_count": float(len(forms)),
            "password_form_count": float(sum(f.has_password for f in forms)),
            "password_input_count": float(self.password_inputs),
            "card_input_count": float(self.card_inputs),
            "sensitive_input_count": float(self.sensitive_inputs),
            "hidden_input_count": float(self.hidden_inputs),
            "input_count": float(self.input_count),
            "external_form_action_count": float(ext_actions),
            "empty_form_action_count": float(sum(1 for f in forms if not f.action.strip())),
            "post_form_count": float(sum(1 for f in forms if f.method == "post")),
            "password_form_script_action_count": float(
                sum(1 for f in forms if f.has_password and _is_script_action(f.action))
            ),
            "iframe_count": float(len(dom.iframes)),
            "hidden_iframe_count": float(sum(i.hidden for i in dom.iframes)),
            "link_count_log": _log1p(links),
            "external_link_ratio": _ratio(dom.external_link_count, links),
            "null_link_ratio": _ratio(self.null_link_count, links),
            "resource_count_log": _log1p(resources),
            "external_resource_ratio": _ratio(dom.external_resource_count, resources),
            "top_external_domain_ratio": _ratio(top_count, links_and_resources),
            "top_external_domain_is_brand": float(bool(top_domain) and _is_brand_site(top_domain)),
            "inline_script_count": float(len(self.inline_scripts)),
            "inline_script_chars_log": _log1p(inline_chars),
            "external_script_count": float(len(self.external_scripts)),
            "inline_event_handler_count": float(self.inline_event_handlers),
            "meta_refresh": float(dom.meta_refresh is not None),
            "right_click_disabled": float(dom.right_click_disabled),
            "auto_download": float(dom.auto_download is not None),
            "title_chars": float(len(self.title)),
            "title_brand": float(bool(_brand_words(title_low))),
            "text_brand_count": float(len(_brand_words(text_low))),
            "title_credential_words": float(len(_CREDENTIAL_WORDS.findall(title_low))),
            "text_credential_words": float(min(len(_CREDENTIAL_WORDS.findall(text_low)), 50)),
            "text_chars_log": _log1p(text_len),
            "has_base_tag": float(self.has_base_tag),
            "saved_from_other_site": float(
                self.saved_from is not None
                and registrable_domain(host_of(self.saved_from)) != page_site
            ),
        }


def _log1p(value: float) -> float:
    import math

    return math.log1p(max(0.0, float(value)))


def _ratio(part: int, whole: int) -> float:
    return float(part) / whole if whole > 0 else 0.0


def _action_site(action: str) -> str | None:
    """Registrable domain a form posts to: '' for relative/empty, None for non-web schemes."""
    action = action.strip()
    if not action:
        return ""
    scheme = action.split(":", 1)[0].lower() if ":" in action else ""
    if scheme in ("mailto", "data", "javascript", "blob", "ftp", "file"):
        return None
    return registrable_domain(host_of(action))


def _is_script_action(action: str) -> bool:
    """Whether a form posts to a server script file (``login.php``, ``next.asp`` ...)."""
    path = action.split("?", 1)[0].split("#", 1)[0].lower()
    return path.endswith((".php", ".asp", ".aspx", ".cgi", ".pl", ".jsp"))


def _brand_words(text_lower: str) -> list[str]:
    from .brands import brands_in

    return brands_in(text_lower)


def _is_brand_site(site: str) -> bool:
    from .brands import brand_of_site

    return brand_of_site(site) is not None


def parse_html(html: str, base_url: str) -> ParsedPage:
    """Parse one page. Never raises: a page that defeats the parser gives an empty ParsedPage."""
    try:
        if not isinstance(html, str):
            html = bytes(html).decode("utf-8", errors="replace") if html is not None else ""
        return _parse(html, base_url or "")
    except Exception as exc:  # noqa: BLE001 - the engine must survive any page
        return ParsedPage(
            base_url=base_url or "", html_chars=len(html or ""), error=f"{type(exc).__name__}: {exc}"
        )


def _parse(html: str, base_url: str) -> ParsedPage:
    # Lexbor stops at NUL in some builds and binary garbage is all noise: drop NULs first.
    if "\x00" in html:
        html = html.replace("\x00", "")
    bounded = bound_nesting(html)
    reductions: tuple[str, ...] = ()
    if bounded.dropped:
        reductions = (
            f"{bounded.dropped} tags nested deeper than {MAX_NESTING} levels were flattened "
            "(browsers stop nesting at 512); forms, inputs, frames, links and scripts were kept",
        )
    tree = LexborHTMLParser(bounded.html)
    # A browser with scripting on treats <noscript> content as text, not elements (the
    # extension never sees a tracker's <noscript><iframe>): parse it the same way.
    tree.strip_tags(["noscript"])
    base_node = tree.css_first("base[href]")
    urls = _Resolver.for_page(base_url, (base_node.attributes.get("href") or "") if base_node else "")

    title_node = tree.css_first("title")
    title = " ".join(title_node.text(deep=True).split()) if title_node is not None else ""
    scripts = _collect_scripts(tree, urls)  # before the text is extracted, which strips them
    inputs = _count_inputs(tree)
    links = _count_links_and_resources(tree, urls)
    meta_refresh = _meta_refresh(tree)
    handler_count = len(
        tree.css("[onclick], [onload], [onerror], [onmouseover], [oncontextmenu], [onsubmit]")
    )
    right_click = scripts.blocks_context_menu or _context_menu_attribute_blocks(tree)
    auto_download = _auto_download(
        meta_refresh, urls.page_url, links.download_href if scripts.clicks else None
    )
    forms = _collect_forms(tree, urls)
    iframes = _collect_iframes(tree, urls)

    # Visible text last: stripping mutates the tree.
    tree.strip_tags(["script", "style", "noscript", "template", "head"])
    root = tree.body or tree.root
    text = ""
    if root is not None:
        text = " ".join(root.text(deep=True, separator=" ").split())[:MAX_TEXT_CHARS]

    dom = DomFacts(
        forms=forms,
        iframes=iframes,
        meta_refresh=meta_refresh,
        element_count=len(_ELEMENT_RE.findall(html)),
        link_count=links.links,
        external_link_count=links.external_links,
        resource_count=links.resources,
        external_resource_count=links.external_resources,
        right_click_disabled=right_click,
        auto_download=auto_download,
        text_excerpt=text[:TEXT_EXCERPT_CHARS],
    )
    return ParsedPage(
        title=title[:1000],
        text=text,
        inline_scripts=scripts.inline,
        external_scripts=scripts.external,
        dom=dom,
        base_url=base_url,
        password_inputs=inputs.password,
        card_inputs=inputs.card,
        sensitive_inputs=inputs.sensitive,
        hidden_inputs=inputs.hidden,
        input_count=inputs.total,
        null_link_count=links.null_links,
        external_domains=tuple(sorted(links.domains.items(), key=lambda kv: (-kv[1], kv[0]))[:20]),
        inline_event_handlers=handler_count,
        has_base_tag=base_node is not None,
        saved_from=_saved_from(html),
        html_chars=len(html),
        reductions=reductions,
    )


@dataclass(frozen=True, slots=True)
class _Resolver:
    """Resolves a page's URLs (honouring ``<base href>``) and names the other sites they reach."""

    page_url: str
    page_site: str
    base_is_foreign: bool

    @classmethod
    def for_page(cls, base_url: str, base_href: str) -> _Resolver:
        page_url = _join(base_url, base_href.strip()) if base_href.strip() else base_url
        page_site = registrable_domain(host_of(base_url))
        foreign = page_url != base_url and registrable_domain(host_of(page_url)) != page_site
        return cls(page_url, page_site, foreign)

    def absolute(self, url: str) -> str:
        return _join(self.page_url, url)

    def external_site(self, url: str) -> str | None:
        """The other site ``url`` points to, or None when it is this site or not a web URL."""
        head = url[:8].lower()
        if head.startswith(("http://", "https://")):
            host = _fast_host(url, url.index("//") + 2)
        elif url.startswith("//"):
            host = _fast_host(url, 2)
        elif self.base_is_foreign and not _has_scheme(url):
            host = host_of(self.absolute(url))  # relative to a <base> on another site
        else:
            return None  # relative (same site), or mailto:, javascript:, data: ...
        site = registrable_domain(host)
        if not site or site == self.page_site:
            return None
        return site


@dataclass(slots=True)
class _Scripts:
    inline: tuple[Script, ...]
    external: tuple[str, ...]
    blocks_context_menu: bool
    clicks: bool


def _collect_scripts(tree: LexborHTMLParser, urls: _Resolver) -> _Scripts:
    """Inline JavaScript bodies and absolute ``src`` URLs (other script types are data)."""
    inline: list[Script] = []
    external: list[str] = []
    blocks_context_menu = clicks = False
    for node in tree.css("script"):
        attrs = node.attributes
        stype = (attrs.get("type") or "").strip().lower().split(";", 1)[0].strip()
        if stype not in JS_TYPES:
            continue
        src = (attrs.get("src") or "").strip()
        if src:
            if len(external) < MAX_ITEMS:
                external.append(urls.absolute(src))
            continue
        text = node.text(deep=True)
        if not text or not text.strip() or len(inline) >= MAX_ITEMS:
            continue
        inline.append(
            Script(text=text, url=None, inline=True, original_chars=len(text), sha256=sha256_text(text))
        )
        if not blocks_context_menu and "contextmenu" in text:
            blocks_context_menu = bool(_CONTEXTMENU_RE.search(text))
        if not clicks:
            clicks = bool(_CLICK_RE.search(text))
    return _Scripts(tuple(inline), tuple(external), blocks_context_menu, clicks)


def _collect_forms(tree: LexborHTMLParser, urls: _Resolver) -> tuple[FormFact, ...]:
    forms: list[FormFact] = []
    for node in tree.css("form")[:MAX_ITEMS]:
        attrs = node.attributes
        action = (attrs.get("action") or "").strip()
        inputs = node.css("input, select, textarea")
        forms.append(
            FormFact(
                action=urls.absolute(action) if action and not _is_pseudo_scheme(action) else action,
                method=(attrs.get("method") or "get").strip().lower() or "get",
                has_password=node.css_first("input[type=password i]") is not None,
                has_card=any(_is_card_input(i) for i in inputs),
                input_count=len(inputs),
                hidden=_is_hidden(node),
            )
        )
    return tuple(forms)


@dataclass(slots=True)
class _Inputs:
    total: int = 0
    password: int = 0
    hidden: int = 0
    card: int = 0
    sensitive: int = 0


def _count_inputs(tree: LexborHTMLParser) -> _Inputs:
    """Every input of the page, in forms or not (kits often skip the <form>)."""
    counts = _Inputs()
    for node in tree.css("input, select, textarea"):
        counts.total += 1
        itype = (node.attributes.get("type") or "").strip().lower()
        if itype == "password":
            counts.password += 1
        elif itype == "hidden":
            counts.hidden += 1
            continue
        if _is_card_input(node):
            counts.card += 1
        elif _matches_input(node, _SENSITIVE_RE):
            counts.sensitive += 1
    return counts


def _collect_iframes(tree: LexborHTMLParser, urls: _Resolver) -> tuple[IframeFact, ...]:
    iframes: list[IframeFact] = []
    for node in tree.css("iframe, frame")[:MAX_ITEMS]:
        attrs = node.attributes
        width, height = _size(attrs.get("width")), _size(attrs.get("height"))
        style = attrs.get("style") or ""
        hidden = (
            "hidden" in attrs
            or bool(style and (_HIDDEN_STYLE_RE.search(style) or _ZERO_SIZE_STYLE_RE.search(style)))
            or (width is not None and width <= 1)
            or (height is not None and height <= 1)
        )
        src = (attrs.get("src") or "").strip()
        iframes.append(
            IframeFact(src=urls.absolute(src) if src else "", hidden=hidden, width=width, height=height)
        )
    return tuple(iframes)


def _meta_refresh(tree: LexborHTMLParser) -> str | None:
    for node in tree.css("meta[http-equiv]"):
        if (node.attributes.get("http-equiv") or "").strip().lower() == "refresh":
            return (node.attributes.get("content") or "").strip()
    return None


@dataclass(slots=True)
class _Links:
    links: int = 0
    external_links: int = 0
    null_links: int = 0
    resources: int = 0
    external_resources: int = 0
    domains: dict[str, int] = field(default_factory=dict)
    download_href: str | None = None


def _count_links_and_resources(tree: LexborHTMLParser, urls: _Resolver) -> _Links:
    """Links and loaded resources, and which other sites they reach (by registrable domain)."""
    out = _Links()
    for node in tree.css("a[href], area[href]"):
        href = (node.attributes.get("href") or "").strip()
        out.links += 1
        if not href or href.startswith("#") or href.lower().startswith("javascript:"):
            out.null_links += 1
            continue
        site = urls.external_site(href)
        if site:
            out.external_links += 1
            out.domains[site] = out.domains.get(site, 0) + 1
        if out.download_href is None and "download" in node.attributes:
            out.download_href = urls.absolute(href)
    for node in tree.css(
        "img[src], script[src], iframe[src], embed[src], source[src], video[src], audio[src], "
        "object[data], link[href]"
    ):
        attrs = node.attributes
        if node.tag == "link":
            rel = (attrs.get("rel") or "").lower()
            if not any(r in rel for r in ("stylesheet", "icon", "preload", "modulepreload")):
                continue
            ref = attrs.get("href") or ""
        elif node.tag == "object":
            ref = attrs.get("data") or ""
        else:
            ref = attrs.get("src") or ""
        ref = ref.strip()
        if not ref or ref.startswith("data:"):
            continue
        out.resources += 1
        site = urls.external_site(ref)
        if site:
            out.external_resources += 1
            out.domains[site] = out.domains.get(site, 0) + 1
    return out


def _context_menu_attribute_blocks(tree: LexborHTMLParser) -> bool:
    for node in tree.css("[oncontextmenu]"):
        code = (node.attributes.get("oncontextmenu") or "").lower()
        if "return false" in code or "preventdefault" in code:
            return True
    return False


def _saved_from(html: str) -> str | None:
    match = _SAVED_FROM_RE.search(html, 0, 4096)
    if match is None:
        return None
    url = match.group(1) or match.group(2) or ""
    if not url.lower().startswith(("http://", "https://")):
        url = "http://" + url
    return url


def _fast_host(url: str, start: int) -> str:
    """The host of an absolute URL whose authority starts at ``start`` (cheaper than urlsplit)."""
    end = len(url)
    for sep in "/?#\\":
        pos = url.find(sep, start)
        if pos != -1 and pos < end:
            end = pos
    authority = url[start:end]
    if "@" in authority:
        authority = authority.rsplit("@", 1)[1]
    if authority.startswith("["):
        return authority[1 : authority.find("]")].lower() if "]" in authority else ""
    return authority.split(":", 1)[0].lower()


def _join(base: str, url: str) -> str:
    try:
        return urljoin(base, url) if base else url
    except ValueError:
        return url


def _has_scheme(url: str) -> bool:
    head = url.split("/", 1)[0]
    return ":" in head


def _is_pseudo_scheme(url: str) -> bool:
    head = url.split(":", 1)[0].lower() if ":" in url else ""
    return head in ("mailto", "data", "javascript", "blob")


def _matches_input(node: LexborNode, pattern: re.Pattern[str]) -> bool:
    attrs = node.attributes
    for key in ("name", "id", "autocomplete", "placeholder", "aria-label"):
        value = attrs.get(key)
        if value and pattern.search(value):
            return True
    return False


def _is_card_input(node: LexborNode) -> bool:
    itype = (node.attributes.get("type") or "").strip().lower()
    if itype in ("hidden", "submit", "button", "checkbox", "radio", "password", "email"):
        return False
    return _matches_input(node, _CARD_RE)


def _is_hidden(node: LexborNode) -> bool:
    attrs = node.attributes
    if "hidden" in attrs:
        return True
    style = attrs.get("style") or ""
    return bool(style and _HIDDEN_STYLE_RE.search(style))


def _size(value: str | None) -> int | None:
    if not value:
        return None
    m = _SIZE_RE.match(value)
    return int(m.group(1)) if m else None


def refresh_target(content: str | None, base_url: str) -> str | None:
    """The absolute URL a ``<meta http-equiv=refresh>`` content sends the visitor to, if any."""
    if not content:
        return None
    m = _REFRESH_URL_RE.search(content)
    if not m or not m.group(1):
        return None
    return _join(base_url, m.group(1))


def _auto_download(meta_refresh: str | None, base_url: str, clicked_download: str | None) -> str | None:
    target = refresh_target(meta_refresh, base_url)
    if target:
        path = target.split("?", 1)[0].split("#", 1)[0].lower()
        if path.endswith(BINARY_EXTENSIONS) or target.lower().startswith(("data:application", "blob:")):
            return target
    return clicked_download
