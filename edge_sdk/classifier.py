"""Classifier: a model card plus one runtime; turns BGR images into Predictions."""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt

from edge_sdk import registry
from edge_sdk.checks import check_int, check_number
from edge_sdk.errors import ModelError
from edge_sdk.models import store
from edge_sdk.models.card import ModelCard
from edge_sdk.preprocess import resize_crop
from edge_sdk.protocols import Closing, Runtime
from edge_sdk.runtimes import DEFAULT_RUNTIME, create_runtime
from edge_sdk.types import Frame, Image, Label, Prediction, Timings

FloatArray = npt.NDArray[np.float32]

#: Up to this top_k, `Classifier.top` finds the classes by repeated argmax.
_ARGMAX_UP_TO = 16


def _ms(ns: int) -> float:
    return ns / 1e6


def _batch_of_one(pixels: Image) -> npt.NDArray[Any]:
    return pixels[np.newaxis]


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
        top_k = check_int("top_k", top_k, low=1)
        threshold = check_number("threshold", threshold, low=0.0, high=1.0)
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
        self._raw_pixels = card.raw_pixels
        # Per plane of an NCHW float tensor, in the model's channel order.
        self._plane_norm = [
            (float(a), float(b)) for a, b in zip(self._norm_scale, self._norm_offset, strict=True)
        ]
        spec = self.runtime.output_spec
        self._as_given = (
            card.output_kind == "probabilities"
            and card.label_offset == 0
            and spec.dtype == "float32"
            and not spec.quantized
        )
        self._decode = self._output_decoder()
        self._to_tensor = self._tensor_maker()

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
            h, w = card.input_size
            runtime_options.setdefault("input_shape", (1, 3, h, w) if card.layout == "NCHW" else (1, h, w, 3))
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
        # A map read as a vector would hand out indices past the labels, and a vector cannot
        # be averaged over positions.
        if card.output_kind == "logit_map" and len(spec.shape) != 4:
            raise self._mismatch(f"output {spec.shape} is no map, yet the card says logit_map")
        if card.output_kind != "logit_map" and math.prod(spec.shape) != classes:
            raise self._mismatch(
                f"output {spec.shape} holds more than one score per class, yet the card says "
                f"{card.output_kind} (a map is output_kind logit_map)"
            )

    # -- the three stages ---------------------------------------------------------------------

    def preprocess(self, image: Image) -> npt.NDArray[Any]:
        """Turn a BGR uint8 image into the runtime's input tensor (batch of 1)."""
        card = self.card
        return self._to_tensor(resize_crop(image, card.input_size, card.resize_shorter))

    def _tensor_maker(self) -> Callable[[Image], npt.NDArray[Any]]:
        """Pick, once, the function that turns model-sized BGR pixels into the input tensor.

        The zoo's int8 TFLite and int8 ONNX take the pixels as they are (uint8, BGR, NHWC):
        for them the tensor is the crop itself, with no further call on the frame path.
        """
        card, spec = self.card, self.runtime.input_spec
        if card.layout == "NCHW" and spec.dtype == "float32":
            return self._planar_float
        if self._raw_pixels and spec.dtype == "uint8" and card.colour == "BGR" and card.layout == "NHWC":
            return _batch_of_one
        return self._convert

    def _convert(self, pixels: Image) -> npt.NDArray[Any]:
        """The general case: channel order, normalization, quantization and layout."""
        card, spec = self.card, self.runtime.input_spec
        if card.colour == "RGB":
            pixels = pixels[:, :, ::-1]
        raw = self._raw_pixels
        if raw and spec.dtype == "uint8":
            tensor: npt.NDArray[Any] = np.ascontiguousarray(pixels)
        elif raw and spec.dtype == "int8" and (spec.scale, spec.zero_point) == (1.0, -128):
            # pixel - 128 as int8 is the pixel with its top bit flipped: no arithmetic needed.
            tensor = (np.ascontiguousarray(pixels) ^ np.uint8(0x80)).view(np.int8)
        else:
            x = pixels.astype(np.float32)
            if not raw:
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

    def _planar_float(self, pixels: Image) -> FloatArray:
        """1 x 3 x H x W float32 from H x W x 3 uint8 pixels: channel order, widening, norm.

        cv2.split writes contiguous planes in one pass; cv2.addWeighted then widens and
        normalizes each plane straight into its place in the tensor, one pass per plane.
        Several times faster than numpy's strided transpose and than OpenCV 5's blobFromImage
        (0.55 ms on a 224 x 224 image here), and 40 µs faster than widening first and
        normalizing in place. Values are pixel * scale + offset to within a float32 rounding.
        """
        planes = cv2.split(pixels)
        if self.card.colour == "RGB":
            planes = planes[::-1]
        height, width = pixels.shape[:2]
        x: FloatArray = np.empty((1, 3, height, width), np.float32)
        for channel, (plane, (scale, offset)) in enumerate(zip(planes, self._plane_norm, strict=True)):
            if self._raw_pixels:
                x[0, channel] = plane
            else:
                cv2.addWeighted(plane, scale, plane, 0.0, offset, dst=x[0, channel], dtype=cv2.CV_32F)
        return x

    def _output_decoder(self) -> Callable[[npt.NDArray[Any]], FloatArray]:
        """Pick, once, the function that turns the runtime's output into class scores.

        Scores are a float32 vector (offset classes removed) that `probabilities` may
        overwrite: logits up to a constant for "logits" and "logit_map" cards (the softmax
        does not see a constant), the model's values for "probabilities" cards. A float32
        vector output is used in place, not copied (`Runtime.run` returns a new array each
        call). Deciding here keeps the per-frame path to a few numpy calls: right after an
        inference each distinct call costs 5-40 µs here instead of one or two (code and data
        are out of the caches; docs/benchmarks.md).
        """
        spec, card = self.runtime.output_spec, self.card
        offset = card.label_offset
        if card.output_kind == "logit_map":
            # As (positions, classes) or (classes, positions): one reduction axis is faster.
            # The number of positions is read off each output: runtimes may report spatial
            # sizes they cannot know before a run as 1.
            nhwc = card.layout == "NHWC"
            classes = spec.shape[-1] if nhwc else spec.shape[1]
            shape, axis = ((-1, classes), 0) if nhwc else ((classes, -1), 1)
            if spec.quantized:
                # Average in integers first: exact, and far finer than one more int8 rounding.
                # int16 is exact while count * the largest |value| fits (int8 maps of 13x13 or
                # 14x14 do), and sums twice as fast as int32. The zero point only shifts
                # every logit alike, so it is left out.
                info = np.iinfo(np.dtype(spec.dtype))
                largest = max(-int(info.min), int(info.max))
                int16_max = int(np.iinfo(np.int16).max)
                scale = spec.scale

                def quantized_map(output: npt.NDArray[Any]) -> FloatArray:
                    flat = output.reshape(shape)
                    count = flat.shape[axis]
                    total = np.int16 if count * largest <= int16_max else np.int32
                    summed = np.add.reduce(flat, axis=axis, dtype=total)
                    scores: FloatArray = np.multiply(
                        summed[offset:], np.float32(scale / count), dtype=np.float32
                    )
                    return scores

                return quantized_map

            def float_map(output: npt.NDArray[Any]) -> FloatArray:
                # float32 keeps ~7 digits over 169-196 terms, far finer than a float model
                # needs, and sums 2-3x faster than float64.
                flat = output.reshape(shape)
                summed = np.add.reduce(flat, axis=axis, dtype=np.float32)
                scores: FloatArray = summed[offset:]
                scores *= np.float32(1.0 / flat.shape[axis])
                return scores

            return float_map
        if spec.quantized:
            zero_point, step = np.float32(spec.zero_point), np.float32(spec.scale)

            def quantized_vector(output: npt.NDArray[Any]) -> FloatArray:
                scores: FloatArray = np.subtract(
                    output.reshape(-1)[offset:], zero_point, dtype=np.float32
                )
                scores *= step
                return scores

            return quantized_vector

        if spec.dtype == "float32":

            def float32_vector(output: npt.NDArray[Any]) -> FloatArray:
                scores: FloatArray = output.reshape(-1)[offset:]
                return scores

            return float32_vector

        def float_vector(output: npt.NDArray[Any]) -> FloatArray:
            return np.array(output.reshape(-1)[offset:], dtype=np.float32)

        return float_vector

    def probabilities(self, output: npt.NDArray[Any]) -> FloatArray:
        """Turn the runtime's output into class probabilities (offset classes removed).

        Quantized probabilities, and those left after dropping offset classes, are scaled to
        sum to 1; a float probability output of all classes is taken as the model gives it (a
        softmax sums to 1 to within a float32 rounding already). May work in place on `output`.
        """
        x = self._decode(output)
        if self._as_given:
            return x
        if self.card.output_kind == "probabilities":
            total = float(x.sum())
            if total > 0:
                x /= np.float32(total)
            return x
        x -= x.max()
        np.exp(x, out=x)
        x /= x.sum()
        return x

    def top(self, probs: FloatArray) -> tuple[Label, ...]:
        """Return the `top_k` best classes at or above the threshold, best first.

        Ties go to the lower class index.
        """
        k = self.top_k
        if k <= _ARGMAX_UP_TO:
            # k argmax passes over a copy: a few microseconds against ~10 for argpartition,
            # and argmax already returns the lowest index of equal maxima.
            rest = probs.copy()
            best = []
            for _ in range(k):
                i = int(rest.argmax())
                best.append(i)
                rest[i] = -np.inf
        else:
            # The k-th best score, then everything above it and the lowest indices equal to it
            # (argpartition alone would pick among equal scores at random).
            kth = np.partition(probs, probs.shape[0] - k)[probs.shape[0] - k]
            above = np.flatnonzero(probs > kth)
            tied = np.flatnonzero(probs == kth)[: k - above.size]
            best = np.concatenate((above, tied)).tolist()
            best.sort(key=lambda i: (-probs[i], i))
        scores = probs[best].tolist()
        labels, threshold = self._labels, self.threshold
        return tuple(
            Label(i, labels[i], score)
            for i, score in zip(best, scores, strict=True)
            if score >= threshold
        )

    def classify(self, image: Image | Frame) -> Prediction:
        """Classify one image (or Frame) and time each stage.

        Raises:
            TypeError: neither a numpy array nor a Frame.
            ValueError: the image is not an H x W x 3 uint8 array, or is empty.
            RuntimeError: the Classifier was closed.
        """
        frame = image if isinstance(image, Frame) else None
        pixels = frame.image if frame is not None else image
        if not isinstance(pixels, np.ndarray):
            raise TypeError(f"expected a BGR image as a numpy array or a Frame, got {type(pixels).__name__}")
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
            file=frame.file if frame is not None else "",
        )

    def scores(self, image: Image) -> FloatArray:
        """Return the full probability vector for one image (for evaluation)."""
        probs: FloatArray = self.probabilities(self.runtime.run(self.preprocess(image)))
        return probs

    def close(self) -> None:
        """Release the runtime. Classifying afterwards raises RuntimeError instead of crashing."""
        self.runtime.close()
        self._to_tensor = self._decode = _closed

    @property
    def closed(self) -> bool:
        """Whether `close` was called."""
        return self._to_tensor is _closed


def _closed(_: npt.NDArray[Any]) -> Any:
    # Stands in for the per-frame steps once the runtime is gone: no check on the frame path.
    raise RuntimeError("this Classifier is closed; make a new one with Classifier.from_model")


def load_card(path: Path) -> ModelCard:
    """Read the sidecar card of a model file (a convenience re-export of `ModelCard.load`)."""
    return ModelCard.load(store.card_path(path))
