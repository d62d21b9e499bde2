"""Classifier: a model card plus one runtime; turns BGR images into Predictions."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt

from edge_sdk import registry
from edge_sdk.errors import ModelError
from edge_sdk.models import store
from edge_sdk.models.card import ModelCard
from edge_sdk.preprocess import resize_crop
from edge_sdk.protocols import Closing, Runtime
from edge_sdk.runtimes import DEFAULT_RUNTIME, create_runtime
from edge_sdk.types import Frame, Image, Label, Prediction, Timings

FloatArray = npt.NDArray[np.float32]


def _ms(ns: int) -> float:
    return ns / 1e6


class Classifier(Closing):
    """Classifies BGR images with one model on one runtime.

    All model-specific logic (resize policy, colour order, normalization, quantization, label
    offset, output kind) lives here, so a runtime only moves tensors. The constructor checks the
    card against the runtime's tensors and refuses a mismatch.

    Not thread-safe: use one Classifier per inference thread.

    Args:
        runtime: A loaded runtime.
        card: The model's card.
        top_k: How many classes a Prediction lists.
        threshold: Classes scoring below this are left out of a Prediction.

    Raises:
        ModelError: the card and the runtime's tensors disagree.
    """

    def __init__(
        self, runtime: Runtime, card: ModelCard, *, top_k: int = 5, threshold: float = 0.0
    ) -> None:
        if top_k < 1:
            raise ValueError(f"top_k must be >= 1, got {top_k}")
        if not 0.0 <= threshold <= 1.0:
            raise ValueError(f"threshold must be within [0, 1], got {threshold}")
        self.runtime = runtime
        self.card = card
        self.top_k = min(top_k, len(card.labels))
        self.threshold = threshold
        self._check_input()
        self._check_output()
        self._labels = card.labels
        mean = np.asarray(card.mean, np.float32)
        std = np.asarray(card.std, np.float32)
        self._norm_scale = (1.0 / std).astype(np.float32)
        self._norm_offset = (-mean / std).astype(np.float32)

    # -- construction -------------------------------------------------------------------------

    @classmethod
    def from_model(
        cls,
        model: str | os.PathLike[str] = "squeezenet1.1",
        *,
        runtime: str = DEFAULT_RUNTIME,
        precision: str = "int8",
        num_threads: int | None = None,
        top_k: int = 5,
        threshold: float = 0.0,
        mirror: str | os.PathLike[str] | None = None,
        home: str | os.PathLike[str] | None = None,
        **runtime_options: Any,
    ) -> Classifier:
        """Load a zoo model by name (built into the cache) or a model file with its card.

        Args:
            model: Zoo name (see `edge_sdk.models.ZOO`) or path of a .tflite/.onnx file with a
                JSON card beside it.
            runtime: Registry name of the runtime.
            precision: For zoo names: "int8" or "float".
            num_threads: Runtime threads.
            top_k: Classes per prediction.
            threshold: Minimum score of a listed class.
            mirror: Source mirror folder (default: ``$EDGE_SDK_MODEL_MIRROR``).
            home: Cache folder (default: ``$EDGE_SDK_HOME``).
            **runtime_options: Further keyword options of the runtime.

        Raises:
            ModelError, ConfigError, BackendUnavailable: as their messages say.
        """
        runtime_cls = registry.resolve("runtimes", runtime)
        fmt = runtime_cls.model_format
        path, card = store.resolve(model, fmt, precision, mirror=mirror, home=home)
        if "input_shape" in registry.accepted_options(runtime_cls):
            # Runtimes that cannot read shapes from the file (OpenCV DNN) are told by the card.
            runtime_options.setdefault("input_shape", (1, 3, *card.input_size))
        rt = create_runtime(runtime, str(path), num_threads=num_threads, **runtime_options)
        try:
            return cls(rt, card, top_k=top_k, threshold=threshold)
        except Exception:
            rt.close()
            raise

    def _mismatch(self, what: str) -> ModelError:
        return ModelError(
            f"model card of {self.card.name!r} does not fit the model: {what}; "
            "the card belongs to another model, rebuild or rewrite it"
        )

    def _check_input(self) -> None:
        spec, card = self.runtime.input_spec, self.card
        if len(spec.shape) != 4:
            raise self._mismatch(f"input tensor has shape {spec.shape}, expected 4 dimensions")
        if card.layout == "NHWC":
            h, w, c = spec.shape[1:]
        else:
            c, h, w = spec.shape[1:]
        if (h, w) != tuple(card.input_size) or c != 3:
            raise self._mismatch(
                f"input tensor is {spec.shape}, card says {card.layout} {card.input_size[0]}x"
                f"{card.input_size[1]}x3"
            )
        if spec.dtype in ("uint8", "int8"):
            if not card.raw_pixels and not spec.quantized:
                raise self._mismatch(f"{spec.dtype} input without quantization parameters")
        elif spec.dtype not in ("float32",):
            raise self._mismatch(f"unsupported input type {spec.dtype}")

    def _check_output(self) -> None:
        spec, card = self.runtime.output_spec, self.card
        channels_first = card.layout == "NCHW" and card.output_kind == "logit_map"
        classes = spec.shape[1] if channels_first else spec.shape[-1]
        if classes != card.num_outputs:
            raise self._mismatch(
                f"output has {classes} classes, card lists {len(card.labels)} labels + "
                f"{card.label_offset} offset"
            )

    # -- the three stages ---------------------------------------------------------------------

    def preprocess(self, image: Image) -> npt.NDArray[Any]:
        """Turn a BGR uint8 image into the runtime's input tensor (batch of 1)."""
        card, spec = self.card, self.runtime.input_spec
        pixels = resize_crop(image, card.input_size, card.resize_shorter)
        if card.layout == "NCHW" and spec.dtype == "float32":
            # One C++ pass for channel swap, float conversion and HWC -> CHW: numpy's three
            # passes over a strided view cost 5-10x more. Same values as the general path.
            blob: npt.NDArray[Any] = cv2.dnn.blobFromImage(pixels, 1.0, swapRB=card.colour == "RGB")
            if not card.raw_pixels:
                blob *= self._norm_scale[:, np.newaxis, np.newaxis]
                blob += self._norm_offset[:, np.newaxis, np.newaxis]
            return blob
        if card.colour == "RGB":
            pixels = pixels[:, :, ::-1]
        if card.raw_pixels and spec.dtype == "uint8":
            tensor: npt.NDArray[Any] = np.ascontiguousarray(pixels)
        elif card.raw_pixels and spec.dtype == "int8" and (spec.scale, spec.zero_point) == (1.0, -128):
            # pixel - 128 as int8 is the pixel with its top bit flipped: no arithmetic needed.
            tensor = (np.ascontiguousarray(pixels) ^ np.uint8(0x80)).view(np.int8)
        else:
            x = pixels.astype(np.float32)
            if not card.raw_pixels:
                x = x * self._norm_scale + self._norm_offset
            if spec.quantized:
                info = np.iinfo(np.dtype(spec.dtype))
                x = np.rint(x / spec.scale + spec.zero_point)
                tensor = np.clip(x, info.min, info.max).astype(spec.dtype)
            else:
                tensor = x
        if card.layout == "NCHW":
            tensor = np.ascontiguousarray(tensor.transpose(2, 0, 1))
        return tensor[np.newaxis]

    def probabilities(self, output: npt.NDArray[Any]) -> FloatArray:
        """Turn the runtime's output into class probabilities (offset classes removed)."""
        spec, card = self.runtime.output_spec, self.card
        out = output.reshape(output.shape[1:]) if output.shape[0] == 1 else output
        if card.output_kind == "logit_map":
            # Average in integers first: exact, and far finer than one more int8 rounding.
            # As (positions, classes) or (classes, positions): one reduction axis is faster.
            flat = out.reshape(-1, out.shape[-1]) if card.layout == "NHWC" else out.reshape(out.shape[0], -1)
            axis = 0 if card.layout == "NHWC" else 1
            count = flat.shape[axis]
            if spec.quantized:
                # int16 is exact while count * the largest |value| fits (int8 maps of 13x13 or
                # 14x14 do), and sums twice as fast as int32.
                info = np.iinfo(flat.dtype)
                fits = count * max(-int(info.min), int(info.max)) <= np.iinfo(np.int16).max
                summed = flat.sum(axis=axis, dtype=np.int16 if fits else np.int32)
            else:
                # float32 keeps ~7 digits over 169-196 terms, far finer than a float model
                # needs, and sums 2-3x faster than float64.
                summed = flat.sum(axis=axis, dtype=np.float32)
            x = summed.astype(np.float32)
            if spec.quantized:
                x = (x - spec.zero_point * count) * (spec.scale / count)
            else:
                x /= count
        elif spec.quantized:
            x = (out.astype(np.float32) - spec.zero_point) * spec.scale
        else:
            x = out.astype(np.float32, copy=False).reshape(-1)
        x = x[card.label_offset :]
        if card.output_kind == "probabilities":
            total = float(x.sum())
            scaled: FloatArray = (x / total if total > 0 else x).astype(np.float32)
            return scaled
        e = np.exp(x - x.max())
        probs: FloatArray = (e / e.sum()).astype(np.float32)
        return probs

    def top(self, probs: FloatArray) -> tuple[Label, ...]:
        """Return the `top_k` best classes at or above the threshold, best first."""
        k = self.top_k
        best = np.argpartition(-probs, k - 1)[:k]
        # Stable order on ties: higher score first, then lower class index.
        best = best[np.lexsort((best, -probs[best]))]
        return tuple(
            Label(int(i), self._labels[i], float(probs[i]))
            for i in best
            if probs[i] >= self.threshold
        )

    def classify(self, image: Image | Frame) -> Prediction:
        """Classify one image (or Frame) and time each stage.

        Raises:
            ValueError: the image is not an H x W x 3 uint8 array.
        """
        frame = image if isinstance(image, Frame) else None
        pixels = frame.image if frame is not None else image
        assert isinstance(pixels, np.ndarray)
        t0 = time.perf_counter_ns()
        tensor = self.preprocess(pixels)
        t1 = time.perf_counter_ns()
        output = self.runtime.run(tensor)
        t2 = time.perf_counter_ns()
        top = self.top(self.probabilities(output))
        t3 = time.perf_counter_ns()
        return Prediction(
            frame_index=frame.index if frame is not None else 0,
            timestamp_ns=frame.timestamp_ns if frame is not None else time.monotonic_ns(),
            top=top,
            timings=Timings(preprocess=_ms(t1 - t0), inference=_ms(t2 - t1), postprocess=_ms(t3 - t2)),
            model=self.card.name,
        )

    def scores(self, image: Image) -> FloatArray:
        """Return the full probability vector for one image (for evaluation)."""
        probs: FloatArray = self.probabilities(self.runtime.run(self.preprocess(image)))
        return probs

    def close(self) -> None:
        self.runtime.close()


def load_card(path: Path) -> ModelCard:
    """Read the sidecar card of a model file (a convenience re-export of `ModelCard.load`)."""
    return ModelCard.load(store.card_path(path))
