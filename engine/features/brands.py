"""Brands that phishing pages imitate, the words that name them and the sites that own them.

The dom layer flags a page that names a brand in its title (or all over its text, next to a
credential form) while being served from a site the brand does not own. A site belongs to a brand
when its registrable domain is one of the brand's domains, or its first label is one of the
brand's labels under any public suffix (``amazon.co.uk``, ``paypal.de``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Any


@dataclass(frozen=True, slots=True)
class Brand:
    name: str
    #: Regex alternatives (lower case, matched on word boundaries) that name the brand.
    words: tuple[str, ...]
    #: First labels of registrable domains the brand owns under any suffix.
    labels: tuple[str, ...]
    #: Further registrable domains the brand owns.
    domains: tuple[str, ...] = ()


BRANDS: tuple[Brand, ...] = (
    Brand("PayPal", ("paypal",), ("paypal", "paypalobjects", "paypal-community"), ("braintreegateway.com",)),
    Brand(
        "Microsoft",
        ("microsoft", "office ?365", "outlook", "onedrive", "sharepoint", "hotmail", "microsoft 365"),
        ("microsoft", "microsoftonline", "office", "office365", "outlook", "live", "hotmail",
         "onedrive", "sharepoint", "msn", "windows", "azure", "bing", "skype", "xbox", "msauth",
         "msftauth", "microsoft365", "windowsazure", "aka"),
    ),
    Brand("Apple", ("apple id", "apple ?id", "icloud", "itunes"), ("apple", "icloud", "itunes", "mzstatic")),
    Brand("Amazon", ("amazon",), ("amazon", "amazonaws", "media-amazon", "ssl-images-amazon", "a2z")),
    Brand("Google", ("google", "gmail"), ("google", "gmail", "googleapis", "gstatic", "youtube", "googleusercontent")),
    Brand("Facebook", ("facebook",), ("facebook", "fb", "fbcdn", "meta", "messenger")),
    Brand("Instagram", ("instagram",), ("instagram", "cdninstagram", "facebook", "fbcdn")),
    Brand("Netflix", ("netflix",), ("netflix", "nflxext", "nflximg", "nflxso")),
    Brand("Chase", ("chase bank", "chase online", "jpmorgan chase", r"chase\.com"), ("chase", "jpmorganchase", "jpmorgan")),
    Brand("Bank of America", ("bank of america", "bankofamerica"), ("bankofamerica", "bac", "bofa")),
    Brand("Wells Fargo", ("wells ?fargo",), ("wellsfargo", "wf")),
    Brand("Citibank", ("citibank", "citi bank"), ("citi", "citibank", "citigroup")),
    Brand("HSBC", ("hsbc",), ("hsbc",)),
    Brand("Barclays", ("barclays",), ("barclays", "barclaycard")),
    Brand("Santander", ("santander",), ("santander",)),
    Brand("Capital One", ("capital ?one",), ("capitalone",)),
    Brand("USAA", ("usaa",), ("usaa",)),
    Brand("Navy Federal", ("navy federal",), ("navyfederal",)),
    Brand("Lloyds", ("lloyds bank",), ("lloydsbank", "lloyds")),
    Brand("NatWest", ("natwest",), ("natwest",)),
    Brand("TD Bank", ("td bank", "td canada trust"), ("td", "tdbank", "tdcanadatrust")),
    Brand("RBC", ("rbc royal bank", "royal bank of canada"), ("rbc", "rbcroyalbank")),
    Brand("Desjardins", ("desjardins",), ("desjardins",)),
    Brand("ING", ("ing bank", "ing direct"), ("ing",)),
    Brand("American Express", ("american express", "amex"), ("americanexpress", "amex", "aexp")),
    Brand("Yahoo", ("yahoo",), ("yahoo", "yimg", "aol")),
    Brand("AOL", ("aol mail", r"\baol\b"), ("aol", "yahoo")),
    Brand("Dropbox", ("dropbox",), ("dropbox", "dropboxstatic", "dropboxusercontent")),
    Brand("DocuSign", ("docusign",), ("docusign",)),
    Brand("Adobe", ("adobe",), ("adobe", "adobelogin", "typekit", "adobe-identity")),
    Brand("LinkedIn", ("linkedin",), ("linkedin", "licdn")),
    Brand("Twitter", ("twitter",), ("twitter", "x", "twimg")),
    Brand("Steam", ("steam community", "steamcommunity", "steampowered", "steam guard"), ("steamcommunity", "steampowered", "steamstatic")),
    Brand("Discord", ("discord",), ("discord", "discordapp")),
    Brand("DHL", ("dhl",), ("dhl",)),
    Brand("FedEx", ("fedex",), ("fedex",)),
    Brand("UPS", ("ups tracking", "united parcel"), ("ups",)),
    Brand("USPS", ("usps",), ("usps",)),
    Brand("Coinbase", ("coinbase",), ("coinbase",)),
    Brand("Binance", ("binance",), ("binance",)),
    Brand("MetaMask", ("metamask",), ("metamask",)),
    Brand("Blockchain.com", (r"blockchain\.com", "blockchain wallet"), ("blockchain",)),
    Brand("eBay", ("ebay",), ("ebay", "ebaystatic", "ebayimg")),
    Brand("AT&T", (r"at&t", "att mail"), ("att", "att-mail")),
    Brand("Verizon", ("verizon",), ("verizon", "verizonwireless")),
    Brand("Comcast Xfinity", ("xfinity", "comcast"), ("xfinity", "comcast")),
    Brand("IRS", (r"\birs\b", "internal revenue service"), ("irs",)),
    Brand("Alibaba", ("alibaba", "aliexpress"), ("alibaba", "aliexpress", "alicdn", "alibabacloud", "aliyun", "taobao", "tmall")),
    Brand("Yandex", ("yandex",), ("yandex",)),
    Brand("Orange", ("orange mail", "messagerie orange"), ("orange",)),
    Brand("Snapchat", ("snapchat",), ("snapchat", "snap", "sc-cdn")),
    Brand("Spotify", ("spotify",), ("spotify", "scdn")),
    Brand("VK", ("vkontakte", r"vk\.com"), ("vk", "vkontakte", "userapi")),
    Brand("Telenet", ("telenet",), ("telenet",)),
    Brand("BCP", ("banco de cr[eé]dito", "viabcp"), ("viabcp", "bcp")),
    Brand("M&T Bank", ("m&t bank", "m&amp;t bank"), ("mtb",)),
    Brand("Citizens Bank", ("citizens bank",), ("citizensbank", "citizensbankonline")),
    Brand("BECU", ("becu",), ("becu",)),
    Brand("Visa", ("verified by visa",), ("visa",)),
    Brand("Mastercard", ("mastercard securecode", "mastercard id check"), ("mastercard",)),
    Brand("UniCredit", ("unicredit",), ("unicredit",)),
    Brand("BNP Paribas", ("bnp paribas",), ("bnpparibas", "mabanque")),
    Brand("ANZ", (r"\banz\b internet banking", "anz bank"), ("anz",)),
    Brand("Stack Overflow", ("stack overflow", "stackoverflow"), ("stackoverflow", "stackexchange")),
    Brand("Free Fire", ("free fire", "garena"), ("garena", "ff")),
    Brand("Roblox", ("roblox",), ("roblox", "rbxcdn")),
    Brand("WhatsApp", ("whatsapp",), ("whatsapp", "facebook")),
)

#: Words that name a brand only in a page title (too common as ordinary words in body text).
TITLE_ONLY_WORDS: tuple[tuple[str, str], ...] = (
    ("chase", "Chase"),
    ("citi", "Citibank"),
)


@lru_cache(maxsize=1)
def _any_brand_word() -> Any:
    """One regex for every brand word: RE2 when installed (linear, fast), else Python's re."""
    pattern = "|".join(f"(?:{word})" for brand in BRANDS for word in brand.words)
    try:
        import re2

        return re2.compile(pattern)
    except ImportError:  # pragma: no cover - depends on the install
        return re.compile(pattern)


@lru_cache(maxsize=4096)
def _brand_of_word(word: str) -> str | None:
    for brand in BRANDS:
        for pattern in brand.words:
            if re.fullmatch(pattern, word):
                return brand.name
    return None


def _is_word_char(ch: str) -> bool:
    return ch.isascii() and ch.isalnum()


def brand_counts(text_lower: str) -> dict[str, int]:
    """How often each brand is named in ``text_lower`` (already lower-cased), on word bounds."""
    counts: dict[str, int] = {}
    if not text_lower:
        return counts
    for match in _any_brand_word().finditer(text_lower):
        start, end = match.start(), match.end()
        if start > 0 and _is_word_char(text_lower[start - 1]):
            continue
        if end < len(text_lower) and _is_word_char(text_lower[end]):
            continue
        name = _brand_of_word(match.group(0))
        if name is not None:
            counts[name] = counts.get(name, 0) + 1
    return counts


def brands_in(text_lower: str) -> list[str]:
    """Names of the brands mentioned in ``text_lower`` (already lower-cased), each once."""
    return list(brand_counts(text_lower))


_TITLE_FOLDS = (("vv", "w"), ("rn", "m"), ("0", "o"))
_TITLE_ONLY_RE = re.compile(
    r"(?<![a-z0-9])(" + "|".join(word for word, _ in TITLE_ONLY_WORDS) + r")(?![a-z0-9])"
)


def brands_in_title(title_lower: str) -> list[str]:
    """Brands a page title claims, including title-only words and simple look-alike spellings
    ("VVINDOWS", "PAYPA1" style folds are partly covered: vv->w, rn->m, 0->o)."""
    found = brands_in(title_lower)
    folded = title_lower
    for old, new in _TITLE_FOLDS:
        folded = folded.replace(old, new)
    if folded != title_lower:
        found += [b for b in brands_in(folded) if b not in found]
    words = dict(TITLE_ONLY_WORDS)
    for match in _TITLE_ONLY_RE.finditer(folded):
        name = words[match.group(1)]
        if name not in found:
            found.append(name)
    return found


@lru_cache(maxsize=4096)
def brand_of_site(site: str) -> str | None:
    """The brand owning registrable domain ``site`` (``paypal.co.uk`` -> PayPal), else None."""
    site = site.lower().strip(".")
    if not site:
        return None
    label = site.split(".", 1)[0]
    for brand in BRANDS:
        if site in brand.domains or label in brand.labels:
            return brand.name
    return None


def site_owned_by(site: str, brand_name: str) -> bool:
    """Whether registrable domain ``site`` belongs to the brand called ``brand_name``."""
    site = site.lower().strip(".")
    label = site.split(".", 1)[0]
    return any(brand.name == brand_name and (site in brand.domains or label in brand.labels) for brand in BRANDS)
