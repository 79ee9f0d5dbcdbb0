"""Prometheus text exposition of the gateway's counters, written by hand (format 0.0.4).

Only what an operator watches: scans by threat level and source, scan latency, queue depth,
connected event clients, dropped events, HTTP answers by status, reports and overrides.
"""

from __future__ import annotations

import bisect
from collections import Counter
from collections.abc import Callable

#: A labelled metric read at scrape time: its samples as (labels, value).
Samples = list[tuple[dict[str, str], float]]

LATENCY_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class Histogram:
    """A cumulative-bucket histogram as Prometheus expects it."""

    def __init__(self, buckets: tuple[float, ...] = LATENCY_BUCKETS_S) -> None:
        self.buckets = buckets
        self.counts = [0] * len(buckets)
        self.total = 0
        self.sum = 0.0

    def observe(self, value: float) -> None:
        index = bisect.bisect_left(self.buckets, value)
        if index < len(self.counts):
            self.counts[index] += 1
        self.total += 1
        self.sum += value

    def lines(self, name: str) -> list[str]:
        out = []
        running = 0
        for bound, count in zip(self.buckets, self.counts, strict=False):
            running += count
            out.append(f'{name}_bucket{{le="{bound}"}} {running}')
        out.append(f'{name}_bucket{{le="+Inf"}} {self.total}')
        out.append(f"{name}_sum {self.sum:.6f}")
        out.append(f"{name}_count {self.total}")
        return out


class Metrics:
    """Counters updated by the service and the API; gauges read at scrape time."""

    def __init__(self) -> None:
        self.scans: Counter[tuple[str, str]] = Counter()
        self.latency = Histogram()
        self.dedupe_hits = 0
        self.scan_errors: Counter[str] = Counter()
        #: content passed on without a verdict, by reason (``ScanService.record_unscanned``)
        self.unscanned: Counter[str] = Counter()
        self.http: Counter[int] = Counter()
        #: reports on verdicts, by (verdict, source); overrides of verdicts, by (action, source)
        self.reports: Counter[tuple[str, str]] = Counter()
        self.overrides: Counter[tuple[str, str]] = Counter()
        self.gauges: dict[str, tuple[str, Callable[[], float]]] = {}
        #: Producers of labelled families (the alert sinks): () -> [(name, help, samples)].
        self.families: list[Callable[[], list[tuple[str, str, Samples]]]] = []
        #: more exposition lines, read at scrape time (labelled series such as the feeds')
        self.collectors: list[Callable[[], list[str]]] = []

    def scan_done(self, level: str, method: str, seconds: float) -> None:
        self.scans[(level, method)] += 1
        self.latency.observe(seconds)

    def gauge(self, name: str, help_text: str, read: Callable[[], float]) -> None:
        self.gauges[name] = (help_text, read)

    def render(self) -> str:
        lines = [
            "# HELP malwaresnipper_scans_total Scans completed, by threat level and source.",
            "# TYPE malwaresnipper_scans_total counter",
        ]
        for (level, method), n in sorted(self.scans.items()):
            lines.append(f'malwaresnipper_scans_total{{level="{_esc(level)}",source="{_esc(method.lower())}"}} {n}')
        lines += [
            "# HELP malwaresnipper_scan_duration_seconds Time from submission to verdict.",
            "# TYPE malwaresnipper_scan_duration_seconds histogram",
            *self.latency.lines("malwaresnipper_scan_duration_seconds"),
            "# HELP malwaresnipper_scan_dedupe_hits_total Submissions answered with an earlier verdict.",
            "# TYPE malwaresnipper_scan_dedupe_hits_total counter",
            f"malwaresnipper_scan_dedupe_hits_total {self.dedupe_hits}",
            "# HELP malwaresnipper_scan_errors_total Scans that ended without a verdict, by reason.",
            "# TYPE malwaresnipper_scan_errors_total counter",
        ]
        for reason, n in sorted(self.scan_errors.items()):
            lines.append(f'malwaresnipper_scan_errors_total{{reason="{_esc(reason)}"}} {n}')
        lines += [
            "# HELP malwaresnipper_unscanned_total Content passed on without a verdict, by reason.",
            "# TYPE malwaresnipper_unscanned_total counter",
        ]
        for reason, n in sorted(self.unscanned.items()):
            lines.append(f'malwaresnipper_unscanned_total{{reason="{_esc(reason)}"}} {n}')
        lines += [
            "# HELP malwaresnipper_http_responses_total API responses, by status code.",
            "# TYPE malwaresnipper_http_responses_total counter",
        ]
        for code, n in sorted(self.http.items()):
            lines.append(f'malwaresnipper_http_responses_total{{code="{code}"}} {n}')
        lines += [
            "# HELP malwaresnipper_reports_total Reports that a verdict was wrong, by what they say and where from.",
            "# TYPE malwaresnipper_reports_total counter",
        ]
        for (verdict, source), n in sorted(self.reports.items()):
            lines.append(f'malwaresnipper_reports_total{{verdict="{_esc(verdict)}",source="{_esc(source)}"}} {n}')
        lines += [
            "# HELP malwaresnipper_overrides_total Blocks or warnings the user went past, by action and where.",
            "# TYPE malwaresnipper_overrides_total counter",
        ]
        for (action, source), n in sorted(self.overrides.items()):
            lines.append(f'malwaresnipper_overrides_total{{action="{_esc(action)}",source="{_esc(source)}"}} {n}')
        for name, (help_text, read) in sorted(self.gauges.items()):
            kind = "counter" if name.endswith("_total") else "gauge"
            try:
                value = float(read())
            except Exception:  # noqa: BLE001 - a broken gauge must not break the scrape
                continue
            lines += [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}", f"{name} {value:g}"]
        for produce in self.families:
            for name, help_text, samples in produce():
                kind = "counter" if name.endswith("_total") else "gauge"
                lines += [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}"]
                for labels, value in samples:
                    text = ",".join(f'{key}="{_esc(val)}"' for key, val in sorted(labels.items()))
                    lines.append(f"{name}{{{text}}} {value:g}")
        for collect in self.collectors:
            try:
                lines += collect()
            except Exception:  # noqa: BLE001 - a broken collector must not break the scrape
                continue
        return "\n".join(lines) + "\n"


def _esc(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


#: How a label value is written in the exposition (for collectors).
escape_label = _esc
