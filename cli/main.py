"""``malwaresnipper``: one command, one module per sub-command group.

Each module in :data:`COMMAND_MODULES` has ``register(subparsers)``, which adds its sub-commands
and sets ``func`` on them; ``func(args) -> int`` returns the exit code. Modules import heavy
dependencies (mitmproxy, scikit-learn) inside their functions so ``--help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from .. import __version__

#: The explicit list of command modules, in the order ``--help`` shows them.
COMMAND_MODULES = [
    "malwaresnipper.cli.scan",
    "malwaresnipper.cli.config",
    "malwaresnipper.cli.run",
    "malwaresnipper.cli.train",
    "malwaresnipper.cli.evaluate",
    "malwaresnipper.cli.cv",
    "malwaresnipper.cli.findings",
    "malwaresnipper.cli.rules",
    "malwaresnipper.cli.known_code",
    "malwaresnipper.cli.extension",
    "malwaresnipper.cli.serve",
    "malwaresnipper.cli.feeds",
    "malwaresnipper.cli.feedback",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="malwaresnipper",
        description="Real-time web threat gateway: scan pages, run the proxy, serve the API.",
    )
    parser.add_argument("--version", action="version", version=f"malwaresnipper {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "logs_through_mitmproxy", False):  # `run` prints through mitmproxy's log
        logging.basicConfig(
            level=logging.DEBUG if args.verbose else logging.WARNING,
            format="%(levelname)s %(name)s: %(message)s",
        )
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
