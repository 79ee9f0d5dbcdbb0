"""A layer that misbehaves on cue, for real worker processes (``EngineConfig.extra_layers``).

It does nothing for most captures; a capture whose URL path holds ``/sleep`` makes it sleep for a
minute (a scan surely over any short timeout, whatever the machine's load), and ``/crash`` makes
the worker process exit mid-scan, as a crashing native parser would.
"""

from __future__ import annotations

import os
import time
from typing import Any, ClassVar

from malwaresnipper.engine import LayerResult

ON_CUE = "helpers.layers:OnCueLayer"
CRASH_EXIT_CODE = 70


class OnCueLayer:
    name: ClassVar[str] = "on_cue"
    version: ClassVar[str] = "1"

    def __init__(self, config: Any) -> None:
        self.config = config

    def analyze(self, capture: Any, features: Any) -> LayerResult:
        if "/sleep" in capture.url:
            time.sleep(60)
        if "/crash" in capture.url:
            os._exit(CRASH_EXIT_CODE)
        return LayerResult(layer=self.name, score=0)
