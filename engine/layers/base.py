"""The layer protocol and the explicit registry of layers.

A layer has one job (URL lexical heuristics, reputation, JavaScript, DOM, signatures, models). It
is built once per engine from the config (rules compile and models load there, not per scan) and
then answers :meth:`Layer.analyze` for each capture with a :class:`LayerResult`. Layers never see
where a capture came from beyond what the :class:`Capture` says, and share parsed data through
:class:`Features` so the HTML is parsed once per scan, not once per layer.

One contract test (``tests/engine/test_layer_contract.py``) runs over every class
:func:`registered_layers` returns.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, ClassVar, Protocol, runtime_checkable

if TYPE_CHECKING:
    from ..capture import Capture
    from ..config import EngineConfig
    from ..features import Features
    from ..results import LayerResult


@runtime_checkable
class Layer(Protocol):
    """What every layer provides."""

    #: Stable short name, used in config (``[layers] enabled``), indicator ids and events.
    name: ClassVar[str]
    #: Bumped when the layer's scoring changes, so stored verdicts say what produced them.
    version: ClassVar[str]

    def __init__(self, config: EngineConfig) -> None: ...

    def analyze(self, capture: Capture, features: Features) -> LayerResult:
        """Score one capture. May raise; the engine turns an exception into an indicator."""
        ...


def registered_layers(extra: Sequence[str] = ()) -> list[type[Layer]]:
    """Every layer class, in the order the engine runs them, then the ``extra`` ones.

    Imported lazily so that importing the engine package stays cheap for the CLI's ``--help``.
    ``extra`` (``EngineConfig.extra_layers``) names further layer classes as ``"module:Class"``:
    tests use it to put a layer that sleeps or crashes on cue into a real worker process.
    """
    from .dom import DomLayer
    from .javascript import JavascriptLayer
    from .ml import MlLayer
    from .reputation import ReputationLayer
    from .signatures import SignaturesLayer
    from .url import UrlLayer

    layers: list[type[Layer]] = [UrlLayer, ReputationLayer, JavascriptLayer, DomLayer, SignaturesLayer, MlLayer]
    return layers + [_import_layer(path) for path in extra]


def _import_layer(path: str) -> type[Layer]:
    """The class a ``"module:Class"`` path names; a clear error when it is not a layer."""
    from importlib import import_module

    from ..errors import ConfigError

    module, _, name = path.partition(":")
    try:
        cls = getattr(import_module(module), name)
    except (ImportError, AttributeError, ValueError) as exc:
        raise ConfigError(f"extra layer {path!r} cannot be imported: {exc}") from None
    if not isinstance(cls, type) or not isinstance(getattr(cls, "name", None), str) or not hasattr(cls, "analyze"):
        raise ConfigError(f"extra layer {path!r} is not a layer class (name, version, analyze)")
    return cls
