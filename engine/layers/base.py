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


def registered_layers() -> list[type[Layer]]:
    """Every layer class, in the order the engine runs them.

    Imported lazily so that importing the engine package stays cheap for the CLI's ``--help``.
    """
    from .dom import DomLayer
    from .javascript import JavascriptLayer
    from .ml import MlLayer
    from .reputation import ReputationLayer
    from .signatures import SignaturesLayer
    from .url import UrlLayer

    return [UrlLayer, ReputationLayer, JavascriptLayer, DomLayer, SignaturesLayer, MlLayer]
