"""The engine's exception hierarchy.

Every error the engine raises on purpose derives from :class:`MalwareSnipperError`, so callers
(the addon, the API, the CLI) can catch one type and show its message to a user.
"""


class MalwareSnipperError(Exception):
    """Base class of every error raised on purpose by MalwareSnipper."""


class CaptureError(MalwareSnipperError, ValueError):
    """Raw inputs could not be turned into a :class:`~malwaresnipper.engine.capture.Capture`.

    Raised for things a client must fix: a URL that is not a URL, a field of the wrong type.
    """


class ConfigError(MalwareSnipperError, ValueError):
    """A configuration file is invalid; the message names the file and the key."""


class RuleError(ConfigError):
    """A signature rule file is invalid; the message names the file, the rule id and the problem."""


class ModelError(MalwareSnipperError):
    """A model file cannot be loaded safely (missing, tampered with, or from another scikit-learn)."""
