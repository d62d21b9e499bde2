"""The Fire module and SqueezeNet 1.0 / 1.1 in Keras, defined once.

Layer names follow the reference Caffe/torchvision models (``conv1``, ``fire2_squeeze1x1``,
``fire2_expand1x1``, ``fire2_expand3x3``, ..., ``conv10``; Keras does not allow the ``/`` the
Caffe names use), so weights load by layer and a new head only replaces ``conv10``.

Pooling reproduces Caffe's ceil-mode 3x3/2 max pooling exactly with TensorFlow's paddings: on
an odd size n, 'valid' gives (n - 1) / 2 windows like ceil mode; on an even size ceil mode adds
one window clipped at the edge, which is 'same' (TensorFlow pads only the end by one, and max
pooling ignores padding). So 224 input (torchvision 1.1) pools 111 -> 55 -> 27 -> 13 with 'valid'
everywhere, and 227 input (Caffe 1.1) pools 113 -> 56 -> 28 -> 14 with 'same' on the 2nd and 3rd.

Needs the `build` extra (TensorFlow / Keras 3); never imported on the frame path.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import keras
from keras import layers

Version = Literal["1.0", "1.1"]
Bypass = Literal["none", "simple", "complex"]
Output = Literal["probabilities", "logits", "logit_map"]


@dataclass(frozen=True)
class FireSpec:
    """Widths of one Fire module: a 1x1 squeeze feeding parallel 1x1 and 3x3 expands."""

    squeeze: int
    expand1x1: int
    expand3x3: int

    @property
    def out_channels(self) -> int:
        return self.expand1x1 + self.expand3x3


_F16 = FireSpec(16, 64, 64)
_F32 = FireSpec(32, 128, 128)
_F48 = FireSpec(48, 192, 192)
_F64 = FireSpec(64, 256, 256)

# Each architecture as a sequence of stages: ("conv1", filters, kernel), ("pool",), or
# ("fire", number, spec). Fire numbers start at 2, as in the paper.
_Stage = tuple[Any, ...]
ARCHITECTURES: dict[str, tuple[_Stage, ...]] = {
    "1.0": (
        ("conv1", 96, 7),
        ("pool",),
        ("fire", 2, _F16),
        ("fire", 3, _F16),
        ("fire", 4, _F32),
        ("pool",),
        ("fire", 5, _F32),
        ("fire", 6, _F48),
        ("fire", 7, _F48),
        ("fire", 8, _F64),
        ("pool",),
        ("fire", 9, _F64),
    ),
    "1.1": (
        ("conv1", 64, 3),
        ("pool",),
        ("fire", 2, _F16),
        ("fire", 3, _F16),
        ("pool",),
        ("fire", 4, _F32),
        ("fire", 5, _F32),
        ("pool",),
        ("fire", 6, _F48),
        ("fire", 7, _F48),
        ("fire", 8, _F64),
        ("fire", 9, _F64),
    ),
}


def ceil_max_pool(x: Any, name: str) -> Any:
    """3x3/2 max pooling with Caffe's ceil-mode output size (see the module docstring)."""
    size = x.shape[1]
    if size is None or x.shape[2] != size:
        raise ValueError(f"{name}: ceil-mode pooling needs a static square input, got {x.shape}")
    padding = "valid" if size % 2 == 1 else "same"
    return layers.MaxPooling2D(pool_size=3, strides=2, padding=padding, name=name)(x)


def fire(x: Any, number: int, spec: FireSpec, bypass: Bypass = "none") -> Any:
    """Add Fire module `number` to the graph and return its output.

    The two expand branches are concatenated 1x1 first, then 3x3, as in the reference weights.
    With `bypass` "simple", a module whose input and output widths match gets its input added
    to its output (the paper's simple bypass); with "complex", the others get a 1x1 convolution
    of the input added instead (the paper's complex bypass, which adds parameters).
    """
    name = f"fire{number}"
    squeezed = layers.Conv2D(spec.squeeze, 1, activation="relu", name=f"{name}_squeeze1x1")(x)
    e1 = layers.Conv2D(spec.expand1x1, 1, activation="relu", name=f"{name}_expand1x1")(squeezed)
    e3 = layers.Conv2D(
        spec.expand3x3, 3, padding="same", activation="relu", name=f"{name}_expand3x3"
    )(squeezed)
    out = layers.Concatenate(axis=-1, name=f"{name}_concat")([e1, e3])
    if bypass == "none":
        return out
    if x.shape[-1] == spec.out_channels:
        return layers.Add(name=f"{name}_bypass")([x, out])
    if bypass == "complex":
        projected = layers.Conv2D(spec.out_channels, 1, name=f"{name}_bypass1x1")(x)
        return layers.Add(name=f"{name}_bypass")([projected, out])
    return out


def squeezenet(
    version: Version = "1.1",
    *,
    num_classes: int = 1000,
    input_size: tuple[int, int] = (224, 224),
    bypass: Bypass = "none",
    dropout: float = 0.5,
    output: Output = "probabilities",
    uint8_input: bool = False,
    conv10_padding: int = 0,
) -> keras.Model:
    """Build SqueezeNet `version` as a Keras functional model (NHWC).

    Args:
        version: "1.0" (7x7 conv1, 96 filters) or "1.1" (3x3 conv1, 64 filters, earlier pools).
        num_classes: Filters of the final 1x1 convolution ``conv10``.
        input_size: (height, width); must be square.
        bypass: "none" (the reference models), "simple" or "complex" (see `fire`).
        dropout: Rate of the dropout before ``conv10`` (active only in training).
        output: "probabilities" (global average, softmax), "logits" (global average) or
            "logit_map" (the ReLU'd ``conv10`` map before averaging, what the quantized build
            exports).
        uint8_input: Take a uint8 tensor and cast it to float inside the model (camera pixels
            go in unchanged; the first layer's weights then carry any normalization).
        conv10_padding: Zero padding around ``conv10``'s input. The original Caffe SqueezeNet
            1.0 pads its 1x1 ``conv10`` by 1, so the border of its map is the ReLU'd bias and
            enters the average; torchvision's models and Caffe 1.1 do not pad.

    Raises:
        ValueError: an unknown version, bypass or output, or a bad size.
    """
    if version not in ARCHITECTURES:
        raise ValueError(f"version must be one of {sorted(ARCHITECTURES)}, got {version!r}")
    if bypass not in ("none", "simple", "complex"):
        raise ValueError(f"bypass must be 'none', 'simple' or 'complex', got {bypass!r}")
    if output not in ("probabilities", "logits", "logit_map"):
        raise ValueError(f"output must be probabilities, logits or logit_map, got {output!r}")
    if conv10_padding < 0:
        raise ValueError(f"conv10_padding must be >= 0, got {conv10_padding}")
    if num_classes < 1:
        raise ValueError(f"num_classes must be >= 1, got {num_classes}")
    if input_size[0] != input_size[1] or input_size[0] < 64:
        raise ValueError(f"input_size must be square and at least 64, got {input_size}")

    inputs = keras.Input(
        shape=(*input_size, 3), dtype="uint8" if uint8_input else "float32", name="image"
    )
    x: Any = keras.ops.cast(inputs, "float32") if uint8_input else inputs
    pools = 0
    for stage in ARCHITECTURES[version]:
        if stage[0] == "conv1":
            _, filters, kernel = stage
            x = layers.Conv2D(filters, kernel, strides=2, activation="relu", name="conv1")(x)
        elif stage[0] == "pool":
            pools += 1
            x = ceil_max_pool(x, f"pool{pools}")
        else:
            _, number, spec = stage
            x = fire(x, number, spec, bypass)
    x = layers.Dropout(dropout, name="drop9")(x)
    if conv10_padding:
        x = layers.ZeroPadding2D(conv10_padding, name="pad10")(x)
    x = layers.Conv2D(num_classes, 1, activation="relu", name="conv10")(x)
    if output != "logit_map":
        x = layers.GlobalAveragePooling2D(name="pool10")(x)
        if output == "probabilities":
            x = layers.Softmax(name="prob")(x)
    return keras.Model(inputs, x, name=f"squeezenet{version.replace('.', '_')}")
