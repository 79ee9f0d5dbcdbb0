"""The dom layer: what the page's structure says about its intent (mostly: is it phishing?).

It reads the DOM facts the browser extension computed, or the same facts derived from the HTML
on the proxy path (:mod:`..features.html`), and looks for what credential-harvesting and
drive-by pages do: a password or card form under a brand's name on a site the brand does not
own, forms that post credentials to another site or to ``mailto:``, hidden iframes, meta refresh
away from the site, pages cloned from a brand (their links all point to the brand's real site),
disabled right click and downloads pushed without a click.

Scoring: each finding is a catalogue entry (``engine/data/findings.toml``) whose points combine
by noisy-OR, so a finding alone stays small and only agreeing findings reach SUSPICIOUS. A password form on its own
is a weak signal (ordinary sites have login pages); a page with nothing found scores 0.
"""

from __future__ import annotations

import re
import time
from typing import TYPE_CHECKING, Any, ClassVar

from ..capture import DomFacts
from ..features.brands import brand_counts, brand_of_site, brands_in_title, site_owned_by
from ..features.html import host_of, refresh_target
from ..findings import Finding, catalogue, combine
from ..psl import registrable_domain
from ..results import Evidence, LayerResult, snippet

if TYPE_CHECKING:
    from ..capture import Capture
    from ..config import EngineConfig
    from ..features import Features
    from ..features.html import ParsedPage

#: Sites whose hidden iframes are ordinary (tag managers, ad and analytics frames).
TRACKER_SITES = frozenset(
    {
        "googletagmanager.com", "doubleclick.net", "google.com", "googlesyndication.com",
        "facebook.com", "facebook.net", "youtube.com", "twitter.com", "linkedin.com",
        "bing.com", "hotjar.com", "adnxs.com", "criteo.com", "taboola.com", "outbrain.com",
        "amazon-adsystem.com", "pinterest.com", "recaptcha.net", "gstatic.com",
        "stripe.com", "paypal.com", "hcaptcha.com", "cloudflare.com", "vimeo.com",
    }
)


#: Evidence items kept per indicator (a page with 40 hidden iframes needs only a few shown).
MAX_EVIDENCE = 5

#: Phrases that name a brand without claiming to be it ("Sign in with Google").
_SOCIAL_LOGIN_RE = re.compile(
    r"(?:sign|log)\s?(?:in|up|on)\s+(?:with|using|via|through)\s+\w+(?:\s+\w+)?"
    r"|continue\s+(?:with|using)\s+\w+|(?:follow|find|join|like|share)\s+(?:us\s+)?on\s+\w+"
    r"|(?:with|via|using)\s+(?:your\s+)?\w+\s+account",
)


class DomLayer:
    """Page-structure heuristics for phishing, cloaked iframes, redirects and pushed downloads."""

    name: ClassVar[str] = "dom"
    version: ClassVar[str] = "1"

    def __init__(self, config: EngineConfig) -> None:
        self.config = config

    def analyze(self, capture: Capture, features: Features) -> LayerResult:
        started = time.perf_counter()
        dom = features.dom
        if dom is None:
            return LayerResult(
                layer=self.name, score=0.0, confidence=0.0,
                duration_ms=(time.perf_counter() - started) * 1000,
                details={"reason": "no HTML or DOM facts to analyse"},
            )
        page = features.page
        findings = _Analysis(capture, dom, page, features.title or "").run()
        score = combine(f.points for f in findings)
        indicators = tuple(sorted((f.indicator() for f in findings), key=lambda i: -i.severity))
        return LayerResult(
            layer=self.name,
            score=score,
            indicators=indicators,
            confidence=1.0,
            duration_ms=(time.perf_counter() - started) * 1000,
            details={
                "forms": len(dom.forms),
                "password_forms": sum(f.has_password for f in dom.forms),
                "iframes": len(dom.iframes),
                "links": dom.link_count,
                "external_links": dom.external_link_count,
            },
        )


class _Analysis:
    """One page's DOM checks; each ``_check_*`` method appends findings."""

    def __init__(self, capture: Capture, dom: DomFacts, page: ParsedPage | None, title: str) -> None:
        self.capture = capture
        self.dom = dom
        self.page = page
        self.title = title
        self.url = capture.page_url or capture.url
        self.scheme = self.url.split(":", 1)[0].lower() if ":" in self.url else ""
        self.site = registrable_domain(host_of(self.url))
        #: False for a placeholder address (``eval`` of corpus pages, which have none): then no
        #: check may compare the page's own site or scheme with anything (a form's target, a
        #: brand's domains, where the links go), or it would report facts about the placeholder.
        self.origin_known = not capture.synthetic_url
        self.findings: list[Finding] = []
        self.password_forms = [i for i, f in enumerate(dom.forms) if f.has_password]
        self.card_forms = [i for i, f in enumerate(dom.forms) if f.has_card]
        loose_password = page is not None and page.password_inputs > sum(
            1 for f in dom.forms if f.has_password
        )
        self.asks_password = bool(self.password_forms) or loose_password
        self.asks_card = bool(self.card_forms) or (page is not None and page.card_inputs > 0)
        self.asks_secrets = page is not None and page.sensitive_inputs > 0
        self.asks_credentials = self.asks_password or self.asks_card or self.asks_secrets
        text = page.text if page is not None else dom.text_excerpt
        self.text_lower = text[:50_000].lower()

    def add(self, name: str, evidence: tuple[Evidence, ...] = (), variant: str = "", **values: Any) -> None:
        """Record finding ``dom.<name>``; a second one of the same kind adds evidence, not score."""
        finding = catalogue().finding(f"dom.{name}", *evidence, variant=variant, **values)
        for index, existing in enumerate(self.findings):
            if existing.id == finding.id:
                stronger = finding if finding.points > existing.points else existing
                self.findings[index] = stronger.with_evidence((existing.evidence + evidence)[:MAX_EVIDENCE])
                return
        self.findings.append(finding)

    def run(self) -> list[Finding]:
        self._check_credentials()
        self._check_form_actions()
        if self.origin_known:  # each compares the page's own site with a brand's
            self._check_brand()
            self._check_cloned_links()
            self._check_saved_copy()
        self._check_iframes()
        if self.origin_known:
            self._check_meta_refresh()
        self._check_misc()
        return self.findings

    # -- credential forms -------------------------------------------------------------------

    def _check_credentials(self) -> None:
        if self.asks_password:
            where = f"form #{self.password_forms[0] + 1}" if self.password_forms else "html"
            self.add("password_form", (Evidence("input type=password", where),))
            if self.scheme == "http" and self.origin_known:
                self.add("password_over_http", (Evidence(snippet(self.url, 0, 0, 60), "url"),))
        if self.asks_card:
            where = f"form #{self.card_forms[0] + 1}" if self.card_forms else "html"
            self.add("card_form", (Evidence("card number / CVV input", where),))
        secrets = self.page.sensitive_inputs if self.page is not None else 0
        if self.asks_card and (secrets >= 2 or self.asks_password):
            # Shops ask for a card; they do not also ask for a PIN, an SSN or the mail password.
            self.add("card_with_secrets", (Evidence("card inputs with password/identity inputs", "html"),),
                     "secrets" if secrets >= 2 else "password")
        if self.asks_secrets:
            self.add("identity_inputs", (Evidence("sensitive input fields", "html"),))

    def _check_form_actions(self) -> None:
        for index, form in enumerate(self.dom.forms):
            sensitive = form.has_password or form.has_card
            action = form.action.strip()
            where = f"form #{index + 1}"
            scheme = action.split(":", 1)[0].lower() if ":" in action else ""
            if scheme in ("mailto", "data"):
                self.add("form_action_mailto" if scheme == "mailto" else "form_action_data",
                         (Evidence(snippet(action, 0, 0, 80), where),), "sensitive" if sensitive else "plain")
                continue
            if not sensitive or not action or scheme not in ("http", "https") or not self.origin_known:
                continue
            target_site = registrable_domain(host_of(action))
            offsite = bool(target_site and self.site and target_site != self.site)
            if offsite and not _same_owner(target_site, self.site):
                self.add("form_action_external", (Evidence(snippet(action, 0, 0, 80), where),))
            if self.scheme == "https" and scheme == "http":
                self.add("form_insecure_post", (Evidence(snippet(action, 0, 0, 80), where),))

    # -- brand impersonation ----------------------------------------------------------------

    def _check_brand(self) -> None:
        title_lower = self.title.lower()
        title_brands = [b for b in brands_in_title(title_lower) if not site_owned_by(self.site, b)]
        if title_brands:
            brand = title_brands[0]
            evidence = (Evidence(snippet(self.title, 0, 0, 80), "title"),)
            if self.asks_credentials:
                self.add("brand_credential_mismatch", evidence, brand=brand)
            else:
                self.add("brand_title_mismatch", evidence, brand=brand)
            return
        if not self.asks_credentials:
            return
        counts = brand_counts(_SOCIAL_LOGIN_RE.sub(" ", self.text_lower))
        off_brand = {b: n for b, n in counts.items() if not site_owned_by(self.site, b)}
        if not off_brand:
            return
        ranked = sorted(counts.values(), reverse=True)
        brand, count = max(off_brand.items(), key=lambda kv: kv[1])
        runner_up = ranked[1] if len(ranked) > 1 else 0
        # One brand named again and again, not a row of "follow us" and "sign in with" logos.
        if count >= 3 and count >= 2 * runner_up and count == ranked[0]:
            pos = self.text_lower.find(brand.lower().split()[0])
            text = self.page.text if self.page is not None else self.dom.text_excerpt
            self.add("brand_text_mismatch", (Evidence(snippet(text, max(pos, 0), max(pos, 0) + len(brand)), "text"),),
                     brand=brand)

    def _check_saved_copy(self) -> None:
        """A page saved from a brand's site (browser "save as" or HTTrack) served from elsewhere."""
        if self.page is None or not self.page.saved_from:
            return
        origin = registrable_domain(host_of(self.page.saved_from))
        brand = brand_of_site(origin)
        if not origin or origin == self.site or brand is None or site_owned_by(self.site, brand):
            return
        evidence = (Evidence(snippet(self.page.saved_from, 0, 0, 80), "html comment"),)
        if self.asks_credentials:
            self.add("saved_brand_page", evidence, brand=brand, origin=origin)
        else:
            self.add("saved_brand_copy", evidence, brand=brand, origin=origin)

    def _check_cloned_links(self) -> None:
        """A page whose links mostly point to one brand's real site, served from elsewhere."""
        if self.page is None or not self.page.external_domains:
            return
        domain, count = self.page.top_external_domain
        total = self.dom.link_count + self.dom.resource_count
        brand = brand_of_site(domain)
        if brand is None or site_owned_by(self.site, brand) or count < 3 or count < 0.4 * total:
            return
        evidence = (Evidence(f"{count} of {total} links and resources point to {domain}", "html"),)
        if self.asks_credentials:
            self.add("cloned_brand_page", evidence, brand=brand, domain=domain)
        else:
            self.add("brand_links_offsite", evidence, brand=brand, domain=domain)

    # -- iframes, redirects, downloads --------------------------------------------------------

    def _check_iframes(self) -> None:
        for index, iframe in enumerate(self.dom.iframes):
            if not iframe.hidden:
                continue
            src = iframe.src.strip()
            if not src or src.lower().startswith(("about:", "javascript:")):
                continue
            target = registrable_domain(host_of(src))
            if target in TRACKER_SITES:
                continue
            offsite = self.origin_known and bool(target) and target != self.site
            self.add("hidden_iframe_external" if offsite else "hidden_iframe",
                     (Evidence(snippet(src, 0, 0, 80), f"iframe #{index + 1}"),))

    def _check_meta_refresh(self) -> None:
        target = refresh_target(self.dom.meta_refresh, self.url)
        if not target or not target.lower().startswith(("http:", "https:")):
            return
        target_site = registrable_domain(host_of(target))
        if not target_site or target_site == self.site:
            return
        brand = brand_of_site(target_site)
        evidence = (Evidence(snippet(self.dom.meta_refresh or "", 0, 0, 80), "meta refresh"),)
        if brand is not None and not site_owned_by(self.site, brand):
            self.add("refresh_to_brand", evidence, brand=brand)
        else:
            self.add("meta_refresh_offsite", evidence)

    def _check_misc(self) -> None:
        if self.dom.right_click_disabled:
            self.add("right_click_disabled", (Evidence("oncontextmenu ... return false", "html"),))
        if self.dom.auto_download:
            self.add("auto_download", (Evidence(snippet(self.dom.auto_download, 0, 0, 80), "html"),))
        dom = self.dom
        if self.asks_password and self.page is not None:
            real_links = dom.link_count - self.page.null_link_count
            if real_links < 3:
                self.add("bare_credential_page", (Evidence(f"{real_links} working links", "html"),))
        if (
            self.asks_credentials
            and self.page is not None
            and dom.link_count >= 5
            and self.page.null_link_count >= 0.6 * dom.link_count
        ):
            self.add("dead_links",
                     (Evidence(f"{self.page.null_link_count} of {dom.link_count} links go nowhere", "html"),))


def _same_owner(site_a: str, site_b: str) -> bool:
    """Two sites of one brand (``live.com`` and ``microsoftonline.com``) count as one owner."""
    brand = brand_of_site(site_a)
    return brand is not None and brand == brand_of_site(site_b)

