"""Fold a float SqueezeNet ONNX file's preprocessing and round its weights for the quantizer.

onnxruntime's static quantizer rounds each weight to the nearest step on its own, and does no
bias correction. Here the weights are rounded instead with the error-feedback method of the
TFLite build (`edge_sdk.build.weight_rounding`: second-order feedback from each layer's input
E[x x^T], bias correction, layers in graph order on the partly rounded model), onto exactly the
grid the quantizer will pick (`OnnxQuantSettings.weight_levels`), and written back into the ONNX file as
float. The quantizer then finds every weight already on its grid: its own rounding changes
nothing, and the int8 weights it stores are these.

Before the rounding the activation channels can be equalized as in the TFLite build
(`edge_sdk.build.equalization`: exact in float, the channels' ranges moved halfway together):
onnxruntime's uint8 activations also have one scale per tensor.

The rounding runs on the Keras twin of the source (`edge_sdk.build.squeezenet`, weights loaded
by `load_onnx_weights`), reproducing onnxruntime's float output to 1e-6. As in the TFLite build,
the normalization and channel order are folded into ``conv1`` first
(`fold_input_normalization`), so the twin is fed BGR 0..255 pixels, and the ``conv1`` written
back is the folded one: the file written takes raw pixels (still NCHW float; the builder puts
the uint8 NHWC input in front, `edge_sdk.build.onnx_int8`).

Needs the `build` extra (TensorFlow / Keras 3, onnx); never imported on the frame path.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from pathlib import Path

import numpy as np
import numpy.typing as npt
import onnx
from onnx import numpy_helper

from edge_sdk.build.equalization import equalize_activations
from edge_sdk.build.onnx_weights import fold_input_normalization, read_onnx_convs, source_model
from edge_sdk.build.weight_rounding import round_model_weights
from edge_sdk.errors import ModelError
from edge_sdk.models.zoo import ZooEntry

F32 = npt.NDArray[np.float32]


def _initializer_names(graph: onnx.GraphProto, source: Path) -> dict[str, tuple[str, str]]:
    """Keras layer name -> (weight, bias) initializer names of the matching ONNX Conv.

    `read_onnx_convs` matches layers by graph structure but returns only the arrays, so each
    array is found again by its bytes: every convolution of a trained model has distinct
    weights (checked), which avoids walking the graph a second way.
    """
    by_bytes: dict[bytes, list[tuple[str, str]]] = {}
    inits = {t.name: t for t in graph.initializer}
    for node in graph.node:
        if node.op_type == "Conv" and len(node.input) >= 3 and node.input[1] in inits:
            key = numpy_helper.to_array(inits[node.input[1]]).astype(np.float32).tobytes()
            by_bytes.setdefault(key, []).append((node.input[1], node.input[2]))
    names: dict[str, tuple[str, str]] = {}
    for layer, conv in read_onnx_convs(source).items():
        found = by_bytes.get(conv.weight.astype(np.float32).tobytes(), [])
        if len(found) != 1:
            raise ModelError(f"{source}: cannot tell which convolution is {layer} ({len(found)} match)")
        names[layer] = found[0]
    return names


def _layers_of(
    graph: onnx.GraphProto, names: dict[str, tuple[str, str]], convs: Collection[str]
) -> set[str]:
    """The Keras layer names of the ONNX Conv nodes named `convs`."""
    layer_of_weight = {weight: layer for layer, (weight, _) in names.items()}
    weight_of_node = {n.name: n.input[1] for n in graph.node if n.op_type == "Conv"}
    unknown = sorted(set(convs) - weight_of_node.keys())
    if unknown:
        raise ValueError(
            f"no convolution named {', '.join(unknown)}; the model has {', '.join(weight_of_node)}"
        )
    return {layer_of_weight[weight_of_node[conv]] for conv in convs}


def round_onnx_weights(
    entry: ZooEntry,
    source: Path,
    out_path: Path,
    calibration: F32,
    *,
    levels: int | None,
    equalization: float = 0.0,
    float_convs: Collection[str] = (),
    on_layer: Callable[[str], None] | None = None,
) -> None:
    """Write `source` to `out_path` folded, its weights equalized and rounded (still float).

    Args:
        entry: The zoo entry (input size, normalization to fold).
        source: The verified float ONNX source.
        out_path: Where to write the float ONNX file; it takes NCHW float 0..255 BGR pixels.
        calibration: (N, H, W, 3) BGR pixels of the calibration images as float32, cropped
            as at inference (calibration split only).
        levels: The quantizer's weight grid, steps each side of zero (64: int8 with
            ``reduce_range``; see `OnnxQuantSettings.weight_levels`); None: no rounding.
        equalization: Activation equalization strength (0: none).
        float_convs: ONNX names of convolutions the quantizer will leave float: not rounded
            (equalized all the same, which is exact in float).
        on_layer: Called with each convolution's name as it is rounded.

    Raises:
        ModelError: the source is not a SqueezeNet this module can map back.
        ValueError: a name in `float_convs` is not a convolution of the source.
    """
    onnx_model = onnx.load(str(source))
    graph = onnx_model.graph
    names = _initializer_names(graph, source)
    keep = _layers_of(graph, names, float_convs)
    model = source_model(entry, source)
    fold_input_normalization(model, entry.mean, entry.std, entry.colour)
    pixels = np.asarray(calibration, np.float32)
    if equalization > 0:
        equalize_activations(model, pixels, equalization)
    if levels is not None:
        round_model_weights(model, pixels, on_layer, levels=levels, keep=keep)
    replaced: dict[str, F32] = {}
    for layer, (weight_name, bias_name) in names.items():
        kernel, bias = (np.asarray(w, np.float32) for w in model.get_layer(layer).get_weights())
        replaced[weight_name] = np.ascontiguousarray(kernel.transpose(3, 2, 0, 1))  # HWIO -> OIHW
        replaced[bias_name] = bias
    for tensor in graph.initializer:
        if tensor.name in replaced:
            tensor.CopyFrom(numpy_helper.from_array(replaced[tensor.name], tensor.name))
    onnx.save(onnx_model, str(out_path))
