"""Progress for long runs: a bar with rate and time left on a terminal, periodic lines otherwise.

Written by hand rather than with tqdm because tqdm is not a runtime dependency and the
non-terminal output (one plain line every few seconds) is what CI logs want.
"""

from __future__ import annotations

import sys
import time
from typing import TextIO


class Progress:
    """Count work done out of ``total`` and show it on ``stream`` (stderr by default)."""

    def __init__(
        self,
        total: int,
        label: str,
        *,
        stream: TextIO | None = None,
        interval_s: float | None = None,
        enabled: bool = True,
    ) -> None:
        self.total = max(0, int(total))
        self.label = label
        self.stream = stream or sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.interval_s = interval_s if interval_s is not None else (0.2 if self.tty else 5.0)
        self.enabled = enabled
        self.done = 0
        self.started = time.monotonic()
        self._last = 0.0

    def update(self, n: int = 1) -> None:
        self.done += n
        now = time.monotonic()
        if self.enabled and (now - self._last >= self.interval_s or self.done >= self.total):
            self._last = now
            self._show(now)

    def _show(self, now: float) -> None:
        elapsed = max(now - self.started, 1e-9)
        rate = self.done / elapsed
        left = (self.total - self.done) / rate if rate > 0 else float("inf")
        eta = _clock(left)
        pct = 100.0 * self.done / self.total if self.total else 100.0
        if self.tty:
            width = 30
            fill = int(width * pct / 100)
            bar = "#" * fill + "-" * (width - fill)
            self.stream.write(
                f"\r{self.label} [{bar}] {self.done}/{self.total} {pct:5.1f}% {rate:,.1f}/s ETA {eta} "
            )
        else:
            self.stream.write(
                f"{self.label}: {self.done}/{self.total} ({pct:.1f}%), {rate:,.1f}/s, about {eta} left\n"
            )
        self.stream.flush()

    def close(self) -> None:
        """Finish the line on a terminal."""
        if self.enabled and self.tty:
            self._show(time.monotonic())
            self.stream.write("\n")
            self.stream.flush()

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _clock(seconds: float) -> str:
    if seconds == float("inf") or seconds != seconds:
        return "?"
    seconds = int(seconds)
    return f"{seconds // 60:d}:{seconds % 60:02d}"
