"""OpenCV DNN runtime (cv2.dnn) for ONNX models: no extra package on the board."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import cv2
import numpy as np
import numpy.typing as npt

from edge_sdk.checks import check_int
from edge_sdk.errors import ModelError
from edge_sdk.protocols import Closing
from edge_sdk.runtimes import MAX_THREADS, load_failure
from edge_sdk.types import TensorSpec


class OpenCVRuntime(Closing):
    """Runs an .onnx model with OpenCV's DNN module on the CPU.

    OpenCV does not report tensor shapes or types before a run, so the runtime learns them from
    a trial run on a zero tensor of `input_shape` (default: taken from the model card by the
    Classifier, which passes it through; 1x3x224x224 otherwise): float32 first (float sources),
    then uint8 (the int8 ONNX builds, which take camera pixels).

    Args:
        model_path: The .onnx file.
        num_threads: Threads for OpenCV (process-wide: cv2.setNumThreads); None leaves it as is.
        input_shape: Input shape to probe with (NCHW, or NHWC for a pixel input).
    """

    model_format = "onnx"

    def __init__(
        self,
        model_path: str | Path,
        *,
        num_threads: int | None = None,
        input_shape: tuple[int, int, int, int] = (1, 3, 224, 224),
    ) -> None:
        if num_threads is not None:
            num_threads = check_int("num_threads", num_threads, low=1, high=MAX_THREADS)
        path = Path(model_path)
        try:
            self._net = cv2.dnn.readNetFromONNX(str(path))
        except cv2.error as exc:
            reason = str(exc).strip().splitlines()[-1][:200] if str(exc).strip() else "cv2.error"
            raise load_failure("OpenCV", "onnx", path, reason) from None
        if self._net.empty():
            raise ModelError(f"OpenCV loaded nothing from {path}; is it an ONNX model?")
        # The CPU is the default target; setting it anyway makes OpenCV 5's new graph engine
        # print a warning on every load.
        self._net.setPreferableBackend(cv2.dnn.DNN_BACKEND_OPENCV)
        if num_threads is not None:
            cv2.setNumThreads(num_threads)
        self.num_threads = num_threads
        layout: Literal["NCHW", "NHWC"] = "NCHW" if input_shape[1] == 3 else "NHWC"
        first_error = ""
        for dtype in ("float32", "uint8"):
            try:
                out = self.run(np.zeros(input_shape, dtype))
            except cv2.error as exc:
                first_error = first_error or str(exc).strip()[-160:]
                continue
            self.input_spec = TensorSpec(shape=tuple(input_shape), dtype=dtype, layout=layout)
            self.output_spec = TensorSpec(shape=tuple(out.shape), dtype="float32", layout="NC")
            return
        raise ModelError(
            f"OpenCV cannot run {path} on a {input_shape} input ({first_error}); "
            "check the model card's input_size and layout"
        )

    def run(self, tensor: npt.NDArray[Any]) -> npt.NDArray[Any]:
        """Run the model on one input tensor and return its output."""
        self._net.setInput(tensor)
        out: npt.NDArray[Any] = self._net.forward()
        return out

    def close(self) -> None:
        self._net = None  # type: ignore[assignment]
