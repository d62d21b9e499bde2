"""edge-sdk: live image classification on a Raspberry Pi or Jetson camera.

The names here are the SDK's public surface; importing the package loads no runtime, camera or
network library (those are imported when chosen).
"""

from typing import TYPE_CHECKING

from edge_sdk.errors import (
    BackendError,
    BackendUnavailable,
    ConfigError,
    EdgeSDKError,
    ModelError,
    SinkError,
    SourceError,
)
from edge_sdk.types import Frame, Label, Prediction, TensorSpec, Timings

if TYPE_CHECKING:  # what type checkers see; at run time __getattr__ imports them on first use
    from edge_sdk.capture import Backoff
    from edge_sdk.classifier import Classifier
    from edge_sdk.pipeline import Pipeline

__version__ = "0.1.0"

__all__ = [
    "BackendError",
    "BackendUnavailable",
    "Backoff",
    "Classifier",
    "ConfigError",
    "EdgeSDKError",
    "Frame",
    "Label",
    "ModelError",
    "Pipeline",
    "Prediction",
    "SinkError",
    "SourceError",
    "TensorSpec",
    "Timings",
]


#: Names imported on first use: each pulls in OpenCV, so `import edge_sdk` stays light for tools
#: that only need the types and errors.
_LAZY = {
    "Backoff": "edge_sdk.capture",
    "Classifier": "edge_sdk.classifier",
    "Pipeline": "edge_sdk.pipeline",
}


def __getattr__(name: str) -> object:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'edge_sdk' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
