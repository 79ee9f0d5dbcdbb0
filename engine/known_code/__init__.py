"""Known code: recognise library files, unmodified or with foreign code added.

Small API::

    from malwaresnipper.engine.known_code import KnownCode, Status

    known = KnownCode.load([])                 # the bundled database (plus user files)
    match = known.match(script_text)
    match.status        # Status.UNMODIFIED, Status.FOREIGN or Status.UNKNOWN
    match.description   # "jQuery v3.7.1 with 2.1 KB of foreign code appended"
    match.foreign       # ((start, end), ...) character spans of the foreign code

:mod:`.canonical` makes the canonical form and its hashes, :mod:`.verify` checks the lexer
against tree-sitter, :mod:`.database` builds, saves and loads databases, :mod:`.matcher` answers.
"""

from .canonical import FINGERPRINT_VERSION, Fingerprint, canonical_form, fingerprint
from .database import (
    KnownCodeDatabase,
    KnownCodeError,
    LibraryFile,
    SourceFile,
    build_database,
)
from .matcher import BUNDLED_DATABASE, KnownCode, KnownCodeMatch, Status

__all__ = [
    "BUNDLED_DATABASE", "FINGERPRINT_VERSION", "Fingerprint", "KnownCode", "KnownCodeDatabase",
    "KnownCodeError", "KnownCodeMatch", "LibraryFile", "SourceFile", "Status", "build_database",
    "canonical_form", "fingerprint",
]
