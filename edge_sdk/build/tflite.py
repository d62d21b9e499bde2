"""Build a SqueezeNet TFLite model from its reference ONNX file: full-integer int8 or float.

What the built model is:
- Input: uint8 NHWC BGR camera pixels as they come. Mean/std and the channel order are folded
  into ``conv1`` (exact: it has no padding), so the int8 model's input has scale 1, zero point 0
  and preprocessing on the device is only a resize and crop.
- int8 output: the ReLU'd ``conv10`` map (N x H x W x classes), card ``output_kind``
  "logit_map". The Classifier averages it in integers. A 1000-class int8 output after the
  average pool would tie in 5-6% of images (its scale is about 0.18 logits); the integer
  average of a 13x13 map resolves those ties and costs nothing on the device.
- float output: the averaged logits (N x classes, ``output_kind`` "logits"). The pool is
  exact in float, and handing over 1000 values instead of a 676 KB map takes 0.1 ms off the
  Classifier's postprocess.
- int8: per-channel int8 weights, int8 activations, calibrated on real photos preprocessed by
  `edge_sdk.preprocess.resize_crop`, the function inference uses. Before conversion the
  activation channels are equalized (`edge_sdk.build.equalization`) and the weights rounded
  with error feedback (`edge_sdk.build.weight_rounding`), both on the calibration images.

Needs the `build` extra (TensorFlow, onnx); never imported on the frame path.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import keras
import numpy as np
import numpy.typing as npt
import tensorflow as tf

from edge_sdk.build.equalization import equalize_activations
from edge_sdk.build.onnx_weights import fold_input_normalization, source_model
from edge_sdk.build.squeezenet import Output
from edge_sdk.build.weight_rounding import round_model_weights
from edge_sdk.models.zoo import ZooEntry

Pixels = npt.NDArray[np.uint8]

#: Measured on the eval split (docs/benchmarks.md): 0.5 beats 1.0 on squeezenet1.0-dc (95.4% vs
#: 94.6% top-1 agreement) and ties on the 1.1 models.
EQUALIZATION_STRENGTH = 0.5
Progress = Callable[[], None]


def folded_model(
    entry: ZooEntry, source: Path, *, uint8_input: bool, output: Output = "logit_map"
) -> keras.Model:
    """Return the Keras SqueezeNet of `entry` with its source weights, taking BGR 0..255 pixels.

    The model ends at the ReLU'd ``conv10`` map, or with `output` "logits" at the global
    average pool (see the module docstring).
    """
    model = source_model(entry, source, uint8_input=uint8_input, output=output)
    fold_input_normalization(model, entry.mean, entry.std, entry.colour)
    return model


def convert(
    model: keras.Model,
    precision: str,
    calibration: list[Pixels] | None = None,
    on_image: Progress | None = None,
) -> bytes:
    """Convert a folded Keras model to TFLite bytes.

    Args:
        model: From `folded_model` (float input for int8, uint8 input for float).
        precision: "int8" (full-integer, calibrated on `calibration`) or "float".
        calibration: BGR uint8 crops, in a fixed order (the result depends on it).
        on_image: Called once per calibration image as the converter consumes it.

    Raises:
        ValueError: bad precision, or int8 without calibration images.
    """
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    if precision == "int8":
        if not calibration:
            raise ValueError("an int8 build needs calibration images")
        images = calibration

        def representative() -> Iterator[list[npt.NDArray[np.float32]]]:
            for pixels in images:
                yield [pixels[np.newaxis].astype(np.float32)]
                if on_image is not None:
                    on_image()

        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = representative
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        # A 0..255 calibration range gives the int8 input scale 1 (zero point -128); a uint8
        # interface then takes the pixels themselves with scale 1, zero point 0.
        converter.inference_input_type = tf.uint8
        converter.inference_output_type = tf.int8
    elif precision != "float":
        raise ValueError(f"precision must be 'int8' or 'float', got {precision!r}")
    # The Keras export prints a signature summary on stdout; the CLI's output is its own.
    with contextlib.redirect_stdout(io.StringIO()):
        data: bytes = converter.convert()
    return data


def build_tflite_bytes(
    entry: ZooEntry,
    source: Path,
    precision: str,
    calibration: list[Pixels] | None = None,
    on_image: Progress | None = None,
    *,
    on_layer: Progress | None = None,
    weight_rounding: bool = True,
) -> bytes:
    """Build `entry`'s TFLite model from its verified `source` and return the file's bytes.

    Args:
        entry: The zoo entry (input size, normalization to fold).
        source: Its verified reference ONNX file.
        precision: "int8" or "float".
        calibration: BGR uint8 crops (int8 only).
        on_image: Called per calibration image the converter consumes.
        on_layer: Called per convolution whose weights were rounded.
        weight_rounding: For int8, equalize the activation channels and round the weights with
            error feedback on the calibration images first (`edge_sdk.build.equalization`,
            `edge_sdk.build.weight_rounding`); False leaves all rounding to the converter.
    """
    model = folded_model(
        entry, source, uint8_input=precision == "float",
        output="logits" if precision == "float" else "logit_map",
    )
    if precision == "int8" and weight_rounding and calibration:
        equalize(model, calibration)
        round_weights(model, calibration, on_layer)
    return convert(model, precision, calibration, on_image)


def equalize(model: keras.Model, calibration: list[Pixels]) -> None:
    """Even out the activation channels' ranges on the calibration crops (exact in float)."""
    equalize_activations(model, np.stack(calibration).astype(np.float32), EQUALIZATION_STRENGTH)


def count_convolutions(model: keras.Model) -> int:
    """Number of Conv2D layers (what `round_weights` reports progress over)."""
    return sum(isinstance(layer, keras.layers.Conv2D) for layer in model.layers)


def round_weights(model: keras.Model, calibration: list[Pixels], on_layer: Progress | None = None) -> None:
    """Round `model`'s convolutions to the int8 grid with error feedback on the calibration crops."""
    batch = np.stack(calibration).astype(np.float32)
    round_model_weights(model, batch, None if on_layer is None else (lambda _name: on_layer()))


def tensorflow_version() -> str:
    """Return TensorFlow's version (part of the build key: another converter, another file)."""
    version: Any = tf.__version__
    return str(version)
