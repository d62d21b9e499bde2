"""edge-sdk: live image classification on a Raspberry Pi or Jetson camera.

The names here are the SDK's public surface; importing the package loads no runtime, camera or
network library (those are imported when chosen).
"""

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

__version__ = "0.1.0"

__all__ = [
    "BackendError",
    "BackendUnavailable",
    "Classifier",
    "ConfigError",
    "EdgeSDKError",
    "Frame",
    "Label",
    "ModelError",
    "Prediction",
    "SinkError",
    "SourceError",
    "TensorSpec",
    "Timings",
]


def __getattr__(name: str) -> object:
    # Classifier pulls in OpenCV; keep `import edge_sdk` light for tools that only need the types.
    if name == "Classifier":
        from edge_sdk.classifier import Classifier

        return Classifier
    raise AttributeError(f"module 'edge_sdk' has no attribute {name!r}")
