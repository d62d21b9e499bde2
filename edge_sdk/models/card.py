"""ModelCard: everything a model needs besides its weights, stored as a JSON sidecar."""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import numbers
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from edge_sdk.errors import ModelError

CARD_VERSION = 1

OutputKind = Literal["probabilities", "logits", "logit_map"]
"""`logit_map`: an N x H x W x C (or N x C x H x W) map of per-position logits that the Classifier
averages over space; the quantized SqueezeNets end this way so the average is taken in float,
which avoids the ties a quantized 1000-class output has (see docs/models.md)."""


def _is_int(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_finite(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)


@dataclass(frozen=True)
class ModelCard:
    """What a model expects and produces.

    Pixel convention: `mean` and `std` are in 0..255 pixel units and in the model's `colour`
    order; the model input is `(pixel - mean) / std`. A model with preprocessing folded in has
    mean 0, std 1, colour "BGR" and a uint8 input: camera pixels go in as they come.

    Attributes:
        name: Zoo name or file stem.
        labels: Class names, without the offset classes.
        label_offset: Number of leading output classes that are not in `labels` (MobileNet's
            "background" is 1).
        input_size: (height, width) the model takes.
        resize_shorter: Resize the shorter image side to this, then centre-crop `input_size`;
            0 stretches the whole image to `input_size`.
        colour: Channel order the model wants.
        mean: Per-channel mean, in `colour` order.
        std: Per-channel std, in `colour` order.
        layout: Image tensor layout of the model input.
        output_kind: What the output holds.
        precision: "int8", "float" (or "uint8" for the pre-quantized MobileNets).
        source_sha256: Checksum of the file the model was built from.
        notes: Free-form provenance for people (build settings, accuracy measured).
    """

    name: str
    labels: tuple[str, ...]
    input_size: tuple[int, int]
    label_offset: int = 0
    resize_shorter: int = 0
    colour: Literal["BGR", "RGB"] = "BGR"
    mean: tuple[float, float, float] = (0.0, 0.0, 0.0)
    std: tuple[float, float, float] = (1.0, 1.0, 1.0)
    layout: Literal["NHWC", "NCHW"] = "NHWC"
    output_kind: OutputKind = "probabilities"
    precision: str = "float"
    source_sha256: str = ""
    notes: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # A card is often written or edited by hand: a wrong value must stop here, not as an
        # IndexError or garbage scores in the middle of a run.
        if not isinstance(self.name, str):
            raise TypeError(f"name must be a string, got {self.name!r}")
        if not isinstance(self.notes, dict):  # the store reads build keys out of it
            raise TypeError(f"notes must be an object ({{...}}), got {self.notes!r}")
        if not self.labels or not all(isinstance(label, str) for label in self.labels):
            raise ValueError("labels must be a non-empty list of class names (strings)")
        if len(self.input_size) != 2 or not all(_is_int(n) and n > 0 for n in self.input_size):
            raise ValueError(f"input_size must be [height, width] in pixels, got {list(self.input_size)}")
        for key in ("label_offset", "resize_shorter"):
            value = getattr(self, key)
            if not _is_int(value) or value < 0:
                raise ValueError(f"{key} must be an integer >= 0, got {value!r}")
        for key in ("colour", "layout", "output_kind"):
            value, choices = getattr(self, key), typing.get_args(_field_types()[key])
            if value not in choices:
                raise ValueError(f"{key} must be one of {', '.join(choices)}, got {value!r}")
        for key in ("mean", "std"):
            values = getattr(self, key)
            if len(values) != 3 or not all(_is_finite(v) for v in values):
                raise ValueError(f"{key} must be three numbers, one per channel, got {list(values)}")
        if not all(s > 0 for s in self.std):
            raise ValueError(f"std must be > 0 for every channel, got {list(self.std)}")

    @property
    def num_outputs(self) -> int:
        """Number of output classes the model's tensor must have."""
        return len(self.labels) + self.label_offset

    @property
    def raw_pixels(self) -> bool:
        """True when the model takes 0..255 pixels as they are (mean 0, std 1).

        A quantized model with raw-pixel input gets the pixels as its integer input unchanged:
        its input quantization already maps them to what its first layer expects.
        """
        return all(m == 0.0 for m in self.mean) and all(s == 1.0 for s in self.std)

    def folded(self, **changes: Any) -> ModelCard:
        """This card for a model built from it with the preprocessing folded in.

        The built model takes BGR uint8 camera pixels as they come, NHWC: what the builders
        make of a source whose normalization and channel order went into its first convolution.
        """
        return dataclasses.replace(
            self, colour="BGR", mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0), layout="NHWC", **changes
        )

    def to_json(self) -> str:
        data = dataclasses.asdict(self)
        data["card_version"] = CARD_VERSION
        return json.dumps(data, indent=1)

    def save(self, path: Path) -> None:
        """Write the card to `path` (by convention the model path with suffix .json)."""
        path.write_text(self.to_json())

    @classmethod
    def from_dict(cls, data: dict[str, Any], origin: str = "model card") -> ModelCard:
        """Make a card from its JSON object.

        Raises:
            ModelError: unknown or missing keys, a value of the wrong kind, or a card written by a
                newer edge-sdk.
        """
        data = dict(data)
        version = data.pop("card_version", CARD_VERSION)
        if not _is_int(version) or version > CARD_VERSION:
            raise ModelError(
                f"{origin}: card_version {version!r} is newer than this edge-sdk reads ({CARD_VERSION});"
                " upgrade edge-sdk or rebuild the model with 'edge-classify models build'"
            )
        fields = dataclasses.fields(cls)
        known = {f.name for f in fields}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ModelError(f"{origin}: unknown keys {unknown}; accepted: {sorted(known)}")
        required = [f.name for f in fields if f.default is dataclasses.MISSING
                    and f.default_factory is dataclasses.MISSING]
        missing = [key for key in required if key not in data]
        if missing:
            raise ModelError(f"{origin}: missing keys {missing}; add them or rebuild the model")
        try:
            for key in ("labels", "input_size", "mean", "std"):
                if key not in data:
                    continue
                if not isinstance(data[key], (list, tuple)):  # tuple("224") is ("2", "2", "4")
                    raise ValueError(f"{key} must be a list, got {data[key]!r}")
                data[key] = tuple(data[key])
            return cls(**data)
        except (TypeError, ValueError) as exc:
            raise ModelError(f"{origin}: {exc}; fix the card or rebuild it with 'edge-classify models build'"
                             ) from None

    @classmethod
    def load(cls, path: Path) -> ModelCard:
        """Read a JSON card.

        Raises:
            ModelError: missing or unreadable file.
        """
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            raise ModelError(
                f"no model card at {path}; write one next to the model "
                "(see 'edge-classify models info squeezenet1.1 --card' for an example)"
            ) from None
        except (OSError, ValueError) as exc:
            raise ModelError(f"model card {path} is not valid JSON ({exc}); fix or rebuild it") from None
        if not isinstance(data, dict):
            raise ModelError(f"model card {path} must hold a JSON object")
        return cls.from_dict(data, origin=f"model card {path}")



@functools.cache
def _field_types() -> dict[str, Any]:
    # Resolved once, on first use: the annotations are strings until the class exists.
    return typing.get_type_hints(ModelCard)
