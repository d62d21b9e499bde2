"""OpenCV DNN runtime (cv2.dnn) for float ONNX models: no extra package on the board."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt

from edge_sdk.errors import ModelError
from edge_sdk.protocols import Closing
from edge_sdk.types import TensorSpec


class OpenCVRuntime(Closing):
    """Runs a float .onnx model with OpenCV's DNN module on the CPU.

    OpenCV does not report tensor shapes before a run, so the runtime learns them from a trial run
    on a zero tensor of `input_shape` (default: taken from the model card by the Classifier, which
    passes it through; 1x3x224x224 otherwise).

    Args:
        model_path: The .onnx file.
        num_threads: Threads for OpenCV (process-wide: cv2.setNumThreads); None leaves it as is.
        input_shape: NCHW input shape to probe with.
    """

    model_format = "onnx"

    def __init__(
        self,
        model_path: str | Path,
        *,
        num_threads: int | None = None,
        input_shape: tuple[int, int, int, int] = (1, 3, 224, 224),
    ) -> None:
        if num_threads is not None and num_threads < 1:
            raise ValueError(f"num_threads must be >= 1, got {num_threads}")
        path = Path(model_path)
        try:
            self._net = cv2.dnn.readNetFromONNX(str(path))
        except cv2.error as exc:
            reason = str(exc).strip().splitlines()[-1][:200] if str(exc).strip() else "cv2.error"
            raise ModelError(
                f"OpenCV cannot load {path} ({reason}); the file is corrupt or not an ONNX model"
            ) from None
        if self._net.empty():
            raise ModelError(f"OpenCV loaded nothing from {path}; is it an ONNX model?")
        # The CPU is the default target; setting it anyway makes OpenCV 5's new graph engine
        # print a warning on every load.
        self._net.setPreferableBackend(cv2.dnn.DNN_BACKEND_OPENCV)
        if num_threads is not None:
            cv2.setNumThreads(num_threads)
        self.num_threads = num_threads
        self.input_spec = TensorSpec(shape=tuple(input_shape), dtype="float32", layout="NCHW")
        try:
            out = self.run(np.zeros(input_shape, np.float32))
        except cv2.error as exc:
            raise ModelError(
                f"OpenCV cannot run {path} on a {input_shape} input ({str(exc).strip()[-160:]}); "
                "check the model card's input_size"
            ) from None
        self.output_spec = TensorSpec(shape=tuple(out.shape), dtype="float32", layout="NC")

    def run(self, tensor: npt.NDArray[Any]) -> npt.NDArray[Any]:
        """Run the model on one NCHW float tensor and return its output."""
        self._net.setInput(tensor)
        out: npt.NDArray[Any] = self._net.forward()
        return out

    def close(self) -> None:
        self._net = None  # type: ignore[assignment]
