"""Read a reference SqueezeNet's weights from its ONNX file and load them into the Keras model.

Layers are matched by the graph's structure, not by initializer names (the Caffe 1.0 export
calls its expands ``conv1x1_2`` / ``conv3x3_2``, torchvision's ``expand1x1`` / ``expand3x3``):
each Concat is a Fire module, its two inputs (through their ReLUs) are the 1x1 and 3x3 expands
in concat order, and the convolution feeding both is the squeeze; the remaining first and last
convolutions are ``conv1`` and ``conv10``. Every shape is checked against the Keras layer.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import keras
import numpy as np
import numpy.typing as npt
import onnx
from google.protobuf.message import DecodeError  # type: ignore[import-untyped]
from onnx import numpy_helper

from edge_sdk.errors import ModelError

if TYPE_CHECKING:
    from edge_sdk.build.squeezenet import Output
    from edge_sdk.models.zoo import ZooEntry

F32 = npt.NDArray[np.float32]


@dataclass(frozen=True)
class SourceArchitecture:
    """What `squeezenet` needs to know to rebuild a source graph (its keyword arguments)."""

    version: str
    num_classes: int
    conv10_padding: int


@dataclass(frozen=True)
class ConvWeights:
    """One convolution of the source: weights OIHW, bias O."""

    weight: F32
    bias: F32

    @property
    def kernel_hwio(self) -> F32:
        """The weights in Keras' layout (height, width, in, out)."""
        return np.ascontiguousarray(self.weight.transpose(2, 3, 1, 0))


def read_onnx_convs(path: Path) -> dict[str, ConvWeights]:
    """Return the convolutions of a SqueezeNet ONNX file, keyed by Keras layer name.

    Raises:
        ModelError: the file is not ONNX or not a SqueezeNet-shaped graph.
    """
    return _read(path)[0]


def read_onnx_architecture(path: Path) -> SourceArchitecture:
    """Return the SqueezeNet version, classes and head padding of an ONNX file.

    Raises:
        ModelError: the file is not ONNX or not a SqueezeNet-shaped graph.
    """
    return _read(path)[1]


def _read(path: Path) -> tuple[dict[str, ConvWeights], SourceArchitecture]:
    try:
        graph = onnx.load(str(path)).graph
    except (DecodeError, OSError, ValueError) as exc:
        raise ModelError(
            f"{path} is not a readable ONNX file ({type(exc).__name__}); download it again"
        ) from None
    inits = {t.name: numpy_helper.to_array(t).astype(np.float32) for t in graph.initializer}
    producer = {out: node for node in graph.node for out in node.output}

    def conv_before(tensor: str) -> Any:
        # Walk back through ReLU (and Dropout, which some exports keep) to the convolution.
        node = producer.get(tensor)
        while node is not None and node.op_type in ("Relu", "Dropout"):
            node = producer.get(node.input[0])
        if node is None or node.op_type != "Conv":
            raise ModelError(f"{path}: expected a convolution before {tensor}; not a SqueezeNet")
        return node

    def weights(node: Any) -> ConvWeights:
        if len(node.input) < 3 or node.input[1] not in inits or node.input[2] not in inits:
            raise ModelError(f"{path}: convolution {node.name or node.output[0]} has no constant weights")
        return ConvWeights(inits[node.input[1]], inits[node.input[2]])

    convs: dict[str, ConvWeights] = {}
    assigned: set[str] = set()
    fires = [n for n in graph.node if n.op_type == "Concat"]
    for number, concat in enumerate(fires, start=2):
        if len(concat.input) != 2:
            raise ModelError(
                f"{path}: Concat {concat.name} has {len(concat.input)} inputs, not a Fire module"
            )
        e1, e3 = (conv_before(t) for t in concat.input)
        squeeze = conv_before(e1.input[0])
        if conv_before(e3.input[0]) is not squeeze:
            raise ModelError(f"{path}: the expands of Fire module {number} do not share a squeeze")
        for role, node in (("squeeze1x1", squeeze), ("expand1x1", e1), ("expand3x3", e3)):
            convs[f"fire{number}_{role}"] = weights(node)
            assigned.add(node.output[0])
    rest = [n for n in graph.node if n.op_type == "Conv" and n.output[0] not in assigned]
    if len(rest) != 2 or not fires:
        raise ModelError(
            f"{path}: found {len(fires)} Fire modules and {len(rest)} other convolutions; "
            "not a SqueezeNet"
        )
    convs["conv1"], convs["conv10"] = weights(rest[0]), weights(rest[1])
    pads = next((list(a.ints) for a in rest[1].attribute if a.name == "pads"), [0, 0, 0, 0])
    if len(set(pads)) > 1:
        raise ModelError(f"{path}: conv10 has uneven padding {pads}, which SqueezeNet never uses")
    # conv1's kernel tells the versions apart: 7x7 (96 filters) in 1.0, 3x3 (64) in 1.1.
    version = "1.0" if convs["conv1"].weight.shape[-1] == 7 else "1.1"
    arch = SourceArchitecture(version, int(convs["conv10"].weight.shape[0]), int(pads[0]) if pads else 0)
    return convs, arch


def load_onnx_weights(model: keras.Model, path: Path, *, head: bool = True) -> None:
    """Set the convolutions of a `squeezenet` model to a reference ONNX file's weights.

    Args:
        model: Built with `edge_sdk.build.squeezenet.squeezenet` (bypass convolutions, which the
            reference models lack, keep their initial weights).
        path: The ONNX file.
        head: Also load ``conv10``; False keeps a new head (another number of classes) as it is.

    Raises:
        ModelError: the file is not a SqueezeNet, or its shapes do not fit the model.
    """
    for name, conv in read_onnx_convs(path).items():
        if name == "conv10" and not head:
            continue
        try:
            layer = model.get_layer(name)
        except ValueError:
            raise ModelError(
                f"{path} has layer {name}, which the Keras model lacks; wrong version?"
            ) from None
        kernel = conv.kernel_hwio
        expected = tuple(layer.kernel.shape)
        if kernel.shape != expected:
            raise ModelError(
                f"{path}: {name} has shape {kernel.shape}, the model wants {expected}; "
                "wrong SqueezeNet version or number of classes"
            )
        layer.set_weights([kernel, conv.bias])


def fold_input_normalization(
    model: keras.Model,
    mean: tuple[float, float, float],
    std: tuple[float, float, float],
    colour: str,
) -> None:
    """Fold ``(pixel - mean) / std`` and the channel order into ``conv1`` so it takes BGR pixels.

    After this the model takes 0..255 BGR pixels as they come. The fold is exact because
    ``conv1`` has no padding: every tap sees a real pixel, so the mean's contribution is the
    same constant at every output position and moves into the bias.

    Args:
        model: A `squeezenet` model whose ``conv1`` holds the source weights.
        mean: Per-channel mean in 0..255 units, in `colour` order.
        std: Per-channel std in 0..255 units, in `colour` order.
        colour: The source model's channel order, "RGB" or "BGR".
    """
    if colour not in ("RGB", "BGR"):
        raise ValueError(f"colour must be 'RGB' or 'BGR', got {colour!r}")
    layer = model.get_layer("conv1")
    if layer.padding != "valid":
        raise ValueError("folding the mean into conv1 is exact only without padding")
    kernel, bias = (np.asarray(w, np.float64) for w in layer.get_weights())
    mean_ = np.asarray(mean, np.float64)
    std_ = np.asarray(std, np.float64)
    scaled = kernel / std_[np.newaxis, np.newaxis, :, np.newaxis]
    new_bias = bias - np.einsum("hwio,i->o", scaled, mean_)
    if colour == "RGB":
        scaled = scaled[:, :, ::-1, :]
    layer.set_weights([scaled.astype(np.float32), new_bias.astype(np.float32)])


def source_model(
    entry: ZooEntry, source: Path, *, uint8_input: bool = False, output: Output = "logit_map"
) -> keras.Model:
    """The Keras twin of a SqueezeNet ONNX `source` (zoo `entry`), its weights loaded, unfolded.

    It takes the source's own normalized float input (NHWC) and by default ends at the ReLU'd
    ``conv10`` map (nothing after the last convolution is needed to build or round);
    `uint8_input` adds the cast layer the float TFLite build wants, `output` "logits" the
    global average pool it ends with.
    """
    from edge_sdk.build.squeezenet import squeezenet

    keras.utils.set_random_seed(0)  # nothing random survives weight loading; belt and braces
    arch = read_onnx_architecture(source)
    model = squeezenet(
        arch.version,  # type: ignore[arg-type]
        num_classes=arch.num_classes,
        input_size=entry.input_size,
        conv10_padding=arch.conv10_padding,
        output=output,
        uint8_input=uint8_input,
    )
    load_onnx_weights(model, source)
    return model
