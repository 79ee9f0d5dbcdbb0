"""``malwaresnipper findings``: the catalogue of every finding the engine can report.

The bundled catalogue (``engine/data/findings.toml``) plus the signature rules the configuration
loads (each rule is a finding of its own). ``--markdown`` prints docs/findings.md.
"""

from __future__ import annotations

import argparse
import json
import sys

from ..engine.errors import MalwareSnipperError


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("findings", help="list every finding (indicator) the engine can report",
                            description=__doc__)
    parser.add_argument("--config", help="a malwaresnipper.toml (default: ./malwaresnipper.toml if present)")
    shown = parser.add_mutually_exclusive_group()
    shown.add_argument("--markdown", action="store_true", help="print the reference page (docs/findings.md)")
    shown.add_argument("--json", action="store_true", help="one JSON object per finding")
    parser.set_defaults(func=findings_command)


def configured_catalogue(config: str | None = None):  # noqa: ANN201 - Catalogue, imported lazily
    """The bundled catalogue plus the signature rules of ``config`` (or of the defaults)."""
    from ..engine.layers.signatures import SignaturesLayer
    from ..settings import load_settings

    return SignaturesLayer(load_settings(config).engine).catalogue


def findings_command(args: argparse.Namespace) -> int:
    try:
        catalogue = configured_catalogue(args.config)
    except MalwareSnipperError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.markdown:
        print(catalogue.markdown(), end="")
        return 0
    for spec in sorted(catalogue, key=lambda s: s.id):
        if args.json:
            print(json.dumps({"id": spec.id, "layer": spec.layer, "title": spec.title, "severity": spec.severity.name,
                              "points": spec.points, "strength": spec.strength.value, "category": spec.category,
                              "classification": spec.classification, "doc": spec.doc}))
        else:
            print(f"{spec.id:45} {spec.severity.name.lower():8} {spec.strength.value:9} {spec.title}")
    return 0
