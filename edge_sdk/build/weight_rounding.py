"""Round convolution weights to the int8 grid so each layer's *output* changes least.

Plain rounding to the nearest int8 step ("round to nearest") treats every weight alone. For
SqueezeNet's torchvision weights that alone costs about 0.4-0.9 points of top-1 and 5% of top-1
agreement with the float model. Here each layer is rounded with second-order error feedback
(the OBQ/GPTQ idea): weights are rounded one input column at a time, and each rounding error is
pushed onto the columns not rounded yet, weighted by the inverse of the layer's input
second-moment matrix H = E[x x^T] measured on the calibration images. Columns go in order of
decreasing H diagonal (the most used inputs first, while there is most freedom left to
compensate). A last bias correction removes what the rounding still shifts on average,
(W - Q) E[x].

Layers are processed in graph order on the partly rounded model, so each layer also absorbs the
errors of the layers before it. Only calibration images are used.

The result stays on the quantizer's own grid: per output channel, symmetric, -L..L steps with
scale max|w| / L; each channel's largest weight is kept at ±L steps so the quantizer computes the
same scale and stores these values exactly. L (`levels`) is 127 for TFLite's converter (the
default) and 64 for onnxruntime's int8 weights with ``reduce_range`` (`edge_sdk.build.onnx_int8`).

Needs the `build` extra (TensorFlow / Keras 3); never imported on the frame path.
"""

from __future__ import annotations

from collections.abc import Callable, Collection

import keras
import numpy as np
import numpy.typing as npt
import tensorflow as tf

F32 = npt.NDArray[np.float32]
F64 = npt.NDArray[np.float64]

#: Added to H's diagonal, as a fraction of its mean: keeps the inverse well conditioned.
DAMPING = 0.01

#: TFLite's symmetric per-channel int8 weights: -127..127, scale max|w| / 127.
TFLITE_LEVELS = 127


def grid_scale(weights: F64, levels: int = TFLITE_LEVELS) -> F64:
    """Per-row step of a (outputs, inputs) matrix on a symmetric grid of ±`levels` steps."""
    scale: F64 = np.abs(weights).max(axis=1) / float(levels)
    scale[scale == 0] = 1.0
    return scale


def round_to_nearest(kernel: F32, levels: int = TFLITE_LEVELS) -> F32:
    """Round an HWIO kernel to the per-output-channel grid, each weight alone."""
    matrix = kernel.reshape(-1, kernel.shape[-1]).T.astype(np.float64)
    scale = grid_scale(matrix, levels)[:, np.newaxis]
    rounded = np.clip(np.round(matrix / scale), -levels, levels) * scale
    return rounded.T.reshape(kernel.shape).astype(np.float32)


def round_with_feedback(kernel: F32, second_moment: F64, levels: int = TFLITE_LEVELS) -> F32:
    """Round an HWIO kernel to the grid with error feedback (see the module docstring).

    Args:
        kernel: (kh, kw, in, out) weights.
        second_moment: E[x x^T] of the layer's input patches, (kh*kw*in) square, in the order
            of ``kernel.reshape(-1, out)``'s rows.
        levels: Steps each side of zero (`TFLITE_LEVELS`; 64 for onnxruntime's reduce_range).
    """
    kh, kw, cin, cout = kernel.shape
    size = kh * kw * cin
    original = kernel.reshape(size, cout).T.astype(np.float64)
    scale = grid_scale(original, levels)
    h = second_moment.astype(np.float64, copy=True)
    work = original.copy()
    dead = np.diag(h) == 0
    h[dead, dead] = 1.0
    work[:, dead] = 0.0
    h += DAMPING * float(np.mean(np.diag(h))) * np.eye(size)
    order = np.argsort(-np.diag(h), kind="stable")
    work = work[:, order]
    h = h[np.ix_(order, order)]
    # Upper Cholesky factor of H^-1: row i holds how column i's error spreads onto later columns.
    feedback = np.linalg.cholesky(np.linalg.inv(h)).T
    rounded = np.empty_like(work)
    for i in range(size):
        column = work[:, i]
        q = np.clip(np.round(column / scale), -levels, levels) * scale
        rounded[:, i] = q
        error = (column - q) / feedback[i, i]
        work[:, i + 1 :] -= np.outer(error, feedback[i, i + 1 :])
    rounded = rounded[:, np.argsort(order)]
    # Keep the quantizer's scale: each channel's largest original weight stays at +-levels steps.
    peak = np.argmax(np.abs(original), axis=1)
    rows = np.arange(cout)
    rounded[rows, peak] = np.sign(original[rows, peak]) * float(levels) * scale
    return rounded.T.reshape(kernel.shape).astype(np.float32)


def _patches(layer: keras.layers.Conv2D, x: F32) -> F64:
    """The layer's input as rows of receptive fields (im2col), in the kernel's row order."""
    k, stride = layer.kernel_size[0], layer.strides[0]
    if k == 1 and stride == 1:
        return x.reshape(-1, x.shape[-1]).astype(np.float64)
    padding = "SAME" if layer.padding == "same" else "VALID"
    p = tf.image.extract_patches(x, [1, k, k, 1], [1, stride, stride, 1], [1, 1, 1, 1], padding)
    return np.asarray(p).reshape(-1, k * k * x.shape[-1]).astype(np.float64)


def _moments(layer: keras.layers.Conv2D, inputs: F32, batch: int = 8) -> tuple[F64, F64]:
    """E[x x^T] and E[x] of the layer's input patches over `inputs`."""
    moment: F64 | None = None
    total: F64 | None = None
    count = 0
    for start in range(0, len(inputs), batch):
        rows = _patches(layer, inputs[start : start + batch])
        moment = rows.T @ rows if moment is None else moment + rows.T @ rows
        total = rows.sum(axis=0) if total is None else total + rows.sum(axis=0)
        count += len(rows)
    assert moment is not None and total is not None
    return moment / count, total / count


def _apply(layer: keras.layers.Layer, inputs: list[F32], batch: int) -> F32:
    """Run one layer eagerly over the calibration set, a few images at a time."""
    chunks = []
    for start in range(0, len(inputs[0]), batch):
        args = [x[start : start + batch] for x in inputs]
        out = layer(args if len(args) > 1 else args[0], training=False)
        chunks.append(np.asarray(out, np.float32))
    return np.concatenate(chunks)


def round_model_weights(
    model: keras.Model,
    calibration: F32,
    on_layer: Callable[[str], None] | None = None,
    batch: int = 16,
    levels: int = TFLITE_LEVELS,
    keep: Collection[str] = (),
) -> None:
    """Round every Conv2D of `model` to the int8 grid with error feedback, in place.

    The calibration set is pushed through the graph one layer at a time, rounding each
    convolution just before it runs, so later layers see (and compensate) the earlier layers'
    rounding, in a single pass. Each intermediate tensor is dropped after its last reader.

    Args:
        model: A functional model (its layer list is in graph order).
        calibration: (N, H, W, C) model inputs (calibration images only).
        on_layer: Called with each convolution's name when it is rounded.
        batch: Images per eager layer call.
        levels: The grid's steps each side of zero (`TFLITE_LEVELS`; 64 for onnxruntime's
            reduce_range).
        keep: Names of convolutions left as they are (they stay float in the quantized
            model); the layers after them are rounded against their exact outputs.
    """
    readers: dict[int, int] = {}
    steps = []
    for layer in model.layers:
        if isinstance(layer, keras.layers.InputLayer):
            continue
        sources = keras.tree.flatten(layer.input)
        for tensor in sources:
            readers[id(tensor)] = readers.get(id(tensor), 0) + 1
        steps.append((layer, sources))
    values: dict[int, F32] = {id(model.inputs[0]): np.asarray(calibration, np.float32)}
    for layer, sources in steps:
        inputs = [values[id(tensor)] for tensor in sources]
        if isinstance(layer, keras.layers.Conv2D) and layer.name not in keep:
            moment, mean = _moments(layer, inputs[0])
            kernel, bias = (np.asarray(w) for w in layer.get_weights())
            rounded = round_with_feedback(kernel, moment, levels)
            shift = (kernel - rounded).reshape(-1, kernel.shape[-1]).astype(np.float64).T @ mean
            layer.set_weights([rounded, (bias + shift).astype(np.float32)])
            if on_layer is not None:
                on_layer(layer.name)
        output = _apply(layer, inputs, batch)
        for tensor in sources:
            readers[id(tensor)] -= 1
            if readers[id(tensor)] == 0:
                del values[id(tensor)]
        values[id(layer.output)] = output
