"""The risk engine: a pure Python core (no mitmproxy, aiohttp or websockets imports).

Public surface::

    from malwaresnipper.engine import Capture, RiskEngine, load_engine_config

    engine = RiskEngine(load_engine_config("malwaresnipper.toml", section="engine"))
    verdict = engine.scan(Capture.build("https://example.test/", html="<html>…</html>"))
    verdict.risk_score, verdict.threat_level, verdict.indicators
"""

from .capture import Capture, CaptureLimits, DomFacts, FormFact, IframeFact, Script, Source
from .config import EngineConfig, load_engine_config
from .engine import Progress, RiskEngine
from .errors import CaptureError, ConfigError, MalwareSnipperError, ModelError, RuleError
from .results import Evidence, Indicator, LayerResult, Severity
from .verdict import ThreatLevel, Verdict

__all__ = [
    "Capture", "CaptureLimits", "DomFacts", "FormFact", "IframeFact", "Script", "Source",
    "EngineConfig", "load_engine_config", "Progress", "RiskEngine",
    "CaptureError", "ConfigError", "MalwareSnipperError", "ModelError", "RuleError",
    "Evidence", "Indicator", "LayerResult", "Severity", "ThreatLevel", "Verdict",
]
