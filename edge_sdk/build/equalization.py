"""Even out SqueezeNet's activation channels before int8 quantization (exact in float).

An int8 activation tensor has one scale for all its channels, set by the largest channel; a
channel whose values stay ten times smaller keeps only a tenth of the 256 levels. Because ReLU
commutes with a positive factor, each output channel c of a convolution can be multiplied by
s_c (weights and bias) and the matching input channel of every convolution reading it divided
by s_c: the float model computes exactly the same function, but the channels' ranges move closer
together. Max pooling and concatenation, which sit between producers and consumers here, commute
with per-channel factors too.

s_c = (R / r_c) ** strength, with r_c the channel's largest value on the calibration images and
R the largest over the tensor (over both expands for a Fire module's concatenation, which
shares one scale). strength 1 makes every channel span the full range; 0.5 (the default) meets
halfway, because dividing the consumer's input weights by s_c coarsens *their* int8 grid in
turn. ``conv10``'s outputs are the logits and are left alone.

Needs the `build` extra (TensorFlow / Keras 3); never imported on the frame path.
"""

from __future__ import annotations

import re

import keras
import numpy as np
import numpy.typing as npt

F32 = npt.NDArray[np.float32]

#: Largest factor applied to a channel (a nearly dead channel would otherwise get a huge one).
MAX_FACTOR = 1000.0


def _groups(model: keras.Model) -> list[tuple[list[str], list[str]]]:
    """(producers, consumers) pairs of a `squeezenet` model, by layer name."""
    names = [layer.name for layer in model.layers]
    if any(name.endswith("_bypass") for name in names):
        raise ValueError("activation equalization supports SqueezeNets without bypass only")
    fires = [int(m.group(1)) for n in names if (m := re.fullmatch(r"fire(\d+)_squeeze1x1", n))]
    if not fires or "conv1" not in names or "conv10" not in names:
        raise ValueError("not a SqueezeNet built by edge_sdk.build.squeezenet")
    groups = [(["conv1"], [f"fire{fires[0]}_squeeze1x1"])]
    for i, n in enumerate(fires):
        expands = [f"fire{n}_expand1x1", f"fire{n}_expand3x3"]
        groups.append(([f"fire{n}_squeeze1x1"], expands))
        following = f"fire{fires[i + 1]}_squeeze1x1" if i + 1 < len(fires) else "conv10"
        groups.append((expands, [following]))
    return groups


def channel_peaks(model: keras.Model, layers: list[str], calibration: F32, batch: int = 16) -> dict[str, F32]:
    """Largest value of each output channel of `layers` over the calibration images."""
    probe = keras.Model(model.inputs[0], [model.get_layer(n).output for n in layers])
    peaks = {n: np.zeros(model.get_layer(n).filters, np.float32) for n in layers}
    for start in range(0, len(calibration), batch):
        outputs = probe(calibration[start : start + batch], training=False)
        if len(layers) == 1:
            outputs = [outputs]
        for name, out in zip(layers, outputs, strict=True):
            peaks[name] = np.maximum(peaks[name], np.asarray(out).max(axis=(0, 1, 2)))
    return peaks


def equalize_activations(model: keras.Model, calibration: F32, strength: float = 0.5) -> None:
    """Rescale the activation channels of a `squeezenet` model in place (see the module docstring).

    Args:
        model: A `squeezenet` model without bypass, conv weights loaded (and folded).
        calibration: (N, H, W, 3) model inputs (calibration images only).
        strength: 0 does nothing, 1 equalizes the channels' ranges fully.

    Raises:
        ValueError: a bypass model, or a strength outside [0, 1].
    """
    if not 0.0 <= strength <= 1.0:
        raise ValueError(f"strength must be within [0, 1], got {strength}")
    groups = _groups(model)
    producers = [name for group, _ in groups for name in group]
    peaks = channel_peaks(model, producers, calibration)
    for group, consumers in groups:
        ranges = np.concatenate([peaks[name] for name in group]).astype(np.float64)
        top = ranges.max()
        factors = np.ones_like(ranges)
        live = ranges > 0
        factors[live] = np.minimum((top / ranges[live]) ** strength, MAX_FACTOR)
        offset = 0
        for name in group:
            layer = model.get_layer(name)
            kernel, bias = layer.get_weights()
            f = factors[offset : offset + kernel.shape[-1]]
            offset += kernel.shape[-1]
            layer.set_weights([(kernel * f).astype(np.float32), (bias * f).astype(np.float32)])
        for name in consumers:
            layer = model.get_layer(name)
            kernel, bias = layer.get_weights()
            kernel = kernel / factors[np.newaxis, np.newaxis, :, np.newaxis]
            layer.set_weights([kernel.astype(np.float32), bias])
