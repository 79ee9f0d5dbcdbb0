"""Layer 1, url: what the address alone gives away.

Each heuristic is a finding of the catalogue (``engine/data/findings.toml``: title, severity,
points); the layer's score is their noisy-OR (:func:`~malwaresnipper.engine.findings.combine`),
so one weak sign stays weak and several add up. Every heuristic was checked against the URL
corpus: those worth 20 points or more fire on at most 0.1 % of its benign URLs (the weak ones,
such as a sign-in word in the path, on under 3 %), and an ordinary URL (a search page, a
repository, a CDN asset) fires none and scores 0. Brand look-alikes belong to the reputation
layer; this layer only uses the brand list to know whose hosts may legitimately say "login".
"""

from __future__ import annotations

import re
from typing import ClassVar

from ..capture import Capture
from ..config import EngineConfig
from ..features import Features
from ..features.url import UrlFeatures
from ..lists import bundled_brands, load_brands, owned_by
from ..findings import Finding, catalogue, combine
from ..results import Evidence, LayerResult, snippet

#: Ports web pages are commonly served on; others are unusual for a page a user visits.
_COMMON_PORTS = frozenset({80, 443})
_ALT_WEB_PORTS = frozenset({8080, 8443, 8000, 8888, 3000})
#: A domain name inside a path (``/www.paypal.com/signin``), for the evidence snippet.
_DOMAIN_IN_PATH = re.compile(r"[a-z0-9-]+(?:\.[a-z0-9-]+)*\.(?:com|net|org)\b")
#: Names of machines on the user's own network, where any port is normal.
_LOCAL_SUFFIXES = (".localhost", ".local", ".internal", ".lan", ".home.arpa", ".test")
#: data: media types that render a document (and can therefore be a whole phishing page).
_ACTIVE_DATA_TYPES = ("text/html", "application/xhtml", "image/svg", "text/javascript",
                      "application/javascript", "application/x-javascript", "application/octet-stream")
#: Server-side script pages: where a phishing kit's sign-in form posts (or is served from).
_SCRIPT_PAGES = frozenset({"php", "asp", "aspx", "jsp", "cgi"})
#: Folders of popular CMSs that hold code and assets, never a sign-in page of another site.
_CMS_FOLDERS = ("/wp-content/", "/wp-includes/", "/wp-admin/", "/wp-snapshots/")
#: Extensions of resources (not pages): a login icon or a facebook-button stylesheet is no form.
_STATIC_ASSETS = frozenset(
    "js mjs css png jpg jpeg gif svg ico webp avif woff woff2 ttf otf eot mp4 webm mp3 map json".split()
)


def _only_in_slugs(path: str, words: tuple[str, ...]) -> bool:
    """True when every word sits in an article-title slug (``/google-says-no-panda-update-...``):
    news and blog URLs name brands and say "update" or "account" in their titles."""
    segments = path.lower().split("/")
    for word in words:
        for segment in segments:
            if word in segment and segment.count("-") < 4:
                return False
    return True


class UrlLayer:
    """Lexical URL heuristics (IP hosts, look-alike scripts, @ tricks, risky TLDs, ...)."""

    name: ClassVar[str] = "url"
    version: ClassVar[str] = "1"

    def __init__(self, config: EngineConfig) -> None:
        brands = list(bundled_brands()) if config.reputation.use_bundled_brands else []
        if config.reputation.protected_brands_file:
            brands += load_brands(config.resolve(config.reputation.protected_brands_file))
        self._brand_domains = frozenset(d for b in brands for d in b.domains)

    def analyze(self, capture: Capture, features: Features) -> LayerResult:
        f = features.url
        hits = self._hits(f)
        return LayerResult(
            layer=self.name,
            score=combine(h.points for h in hits),
            indicators=tuple(h.indicator() for h in hits),
            confidence=1.0,
            details={
                "host": f.host,
                "registrable_domain": f.registrable_domain,
                "points": {h.id: h.points for h in hits},
            },
        )

    # -- heuristics -----------------------------------------------------------------------------

    def _hits(self, f: UrlFeatures) -> list[Finding]:
        url = f.url
        hits: list[Finding] = []
        found = catalogue().finding

        def add(name: str, where: str | None = None, variant: str = "", **values: object) -> None:
            start = url.find(where) if where else 0
            if start < 0 and where:
                start = url.lower().find(where.lower())
            start = max(start, 0)
            end = start + len(where) if where else min(len(url), 60)
            hits.append(found(f"url.{name}", Evidence(snippet(url, start, end), "url", start), variant=variant,
                              points=None, **values))

        if f.scheme == "javascript":
            add("javascript_scheme")
            return hits
        if f.scheme == "data":
            media = f.path.split(",", 1)[0].lower()
            if media.startswith(_ACTIVE_DATA_TYPES) or not media or media.startswith(";"):
                add("data_scheme")
            return hits
        if not f.host:
            return hits

        brand_host = owned_by(f.host, self._brand_domains) is not None

        if f.ip_kind in ("integer", "hex", "octal", "mixed"):
            add("obfuscated_ip_host", f.host, form=f.ip_kind)
        elif f.is_ip and not f.ip_private:
            add("ip_host", f.host)

        if f.userinfo:
            add("userinfo_in_authority", f.userinfo + "@", host=f.host)

        if f.mixed_script:
            add("mixed_script_host", f.host, host=f.host_unicode)
        elif f.punycode or f.non_ascii_host:
            add("punycode_host", f.host, host=f.host_unicode)

        if not f.is_ip:
            if f.subdomain_depth >= 4:
                add("deep_subdomains", f.subdomain, "many", depth=f.subdomain_depth)
            elif f.subdomain_depth == 3:
                add("deep_subdomains", f.subdomain, "three", depth=3)
            if f.tld_in_subdomain and not brand_host:
                add("domain_in_subdomain", f.subdomain, domain=f.registrable_domain)
            if f.host_length > 60:
                add("long_host", f.host, "very_long", length=f.host_length)
            elif f.host_length > 40:
                add("long_host", f.host, "long", length=f.host_length)
            if f.host_hyphen_count >= 4:
                add("many_hyphens", f.host, count=f.host_hyphen_count)
            if f.host_digit_ratio > 0.3 and len(f.domain_label) >= 6:
                add("digit_heavy_host", f.host)
            if f.free_tld:
                add("risky_tld", "." + f.tld, "free", tld=f.tld)
            elif f.risky_tld:
                add("risky_tld", "." + f.tld, "abused", tld=f.tld)
            if f.dynamic_dns:
                add("dynamic_dns", f.dynamic_dns, service=f.dynamic_dns)
            elif f.free_hosting and not brand_host:
                add("free_hosting", f.free_hosting, platform=f.free_hosting)
            if f.shortener:
                add("shortener", f.host)

        if not brand_host:
            words = f.credential_words_host
            if words:
                in_label = [w for w in words if w in f.domain_label]
                grade = "several" if len(words) >= 2 else "one"
                if in_label:
                    add("credential_words_domain", in_label[0], grade, words=", ".join(words[:3]))
                else:
                    add("credential_words_host", words[0], grade, words=", ".join(words[:3]))
            asset = f.file_extension in _STATIC_ASSETS
            path_words = () if asset else f.credential_words_path
            if path_words:
                if f.file_extension in _SCRIPT_PAGES:
                    add("credential_words_path", path_words[0], "script_page", words=", ".join(path_words[:3]),
                        extension=f.file_extension)
                else:
                    add("credential_words_path", path_words[0], "several" if len(path_words) >= 2 else "one",
                        words=", ".join(path_words[:3]))
                if f.brand_in_path and not _only_in_slugs(f.path, (*f.brand_in_path, *path_words)):
                    add("brand_and_credential_path", f.brand_in_path[0], brands=", ".join(f.brand_in_path[:3]),
                        domain=f.registrable_domain)
            if f.brand_in_path:
                add("brand_in_path", f.brand_in_path[0], brands=", ".join(f.brand_in_path[:3]),
                    domain=f.registrable_domain)
            cms_folder = next((d for d in _CMS_FOLDERS if d in f.path), None)
            if f.cms_folder_page or (cms_folder and not asset and (path_words or f.brand_in_path)):
                where = cms_folder or next((d for d in ("/wp-", "/.well-known/") if d in f.path), "/")
                add("page_in_cms_folder", where, folder=where.strip("/"))
            if f.email_in_url:
                add("email_in_url", "@" if "@" in f.url else "%40")
            if f.tld_in_path:
                in_path = _DOMAIN_IN_PATH.search(f.path.lower())
                add("domain_in_path", in_path.group(0) if in_path else None)

        local = f.ip_private or f.host == "localhost" or f.host.endswith(_LOCAL_SUFFIXES)
        if f.port is not None and f.port not in _COMMON_PORTS and not local:
            add("odd_port", f":{f.port}", "alternative" if f.port in _ALT_WEB_PORTS else "other", port=f.port)
        if f.risky_extension:
            add("risky_download", "." + f.file_extension, extension=f.file_extension)
        if f.url_length > 300:
            add("long_url", length=f.url_length)
        return hits
