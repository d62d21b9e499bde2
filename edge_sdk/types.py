"""The small frozen values that flow through edge-sdk: frames, labels, predictions, tensor specs."""

from __future__ import annotations

import dataclasses
import datetime
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

#: Version of the JSON produced by `Prediction.to_dict`; bump on any incompatible change.
PREDICTION_SCHEMA_VERSION = 1

Image = npt.NDArray[np.uint8]
"""An H x W x 3 uint8 image in BGR order (OpenCV's)."""


@dataclass(frozen=True, eq=False)
class Frame:
    """One captured image.

    Attributes:
        image: H x W x 3 uint8, BGR. Treat as read-only: sinks share it.
        index: Position in the source's sequence, from 0; gaps mean frames were dropped.
        timestamp_ns: `time.monotonic_ns()` when the frame was captured (or decoded, for files).
        source: The URI the frame came from.
        file: The image file it was read from (folder and glob sources); "" for cameras,
            streams and videos.
    """

    image: Image
    index: int
    timestamp_ns: int
    source: str = ""
    file: str = ""


@dataclass(frozen=True)
class Label:
    """One class with its score.

    Attributes:
        index: Class index in the model card's label list (offset already removed).
        name: Human-readable class name.
        score: Probability in [0, 1].
    """

    index: int
    name: str
    score: float


def _json_number(value: float, digits: int) -> float | None:
    return round(value, digits) if math.isfinite(value) else None


def _from_json_number(value: Any) -> float:
    return math.nan if value is None else float(value)


@dataclass(frozen=True)
class Timings:
    """Per-stage durations of one prediction, in milliseconds.

    `capture_wait` is how long inference waited for a frame, not counting the decode of a frame
    that arrived as JPEG (the pipeline's metrics report that as their `decode` stage); `age` is
    the frame's age (now minus its capture timestamp) when the prediction was handed to the sinks.
    """

    capture_wait: float = 0.0
    preprocess: float = 0.0
    inference: float = 0.0
    postprocess: float = 0.0
    age: float = 0.0

    def to_dict(self) -> dict[str, float | None]:
        return {k: _json_number(v, 3) for k, v in dataclasses.asdict(self).items()}


def utc_text(unix_ms: int) -> str:
    """Unix milliseconds as ISO 8601 UTC with milliseconds ("2026-12-02T03:05:24.123Z")."""
    moment = datetime.datetime.fromtimestamp(unix_ms // 1000, datetime.timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{unix_ms % 1000:03d}Z"


def utc_ms(text: str) -> int:
    """Inverse of `utc_text`: Unix milliseconds of an ISO 8601 time (a zone-less one is UTC)."""
    # Python 3.10's fromisoformat takes no "Z" (3.11's does): JetPack 6 has 3.10.
    moment = datetime.datetime.fromisoformat(text[:-1] + "+00:00" if text.endswith("Z") else text)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=datetime.timezone.utc)
    delta = moment - datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)
    return delta // datetime.timedelta(milliseconds=1)


@dataclass(frozen=True)
class Prediction:
    """The classifier's answer for one frame.

    Attributes:
        frame_index: Index of the frame it was computed from.
        timestamp_ns: Capture timestamp of that frame (monotonic clock).
        top: Best classes first.
        timings: Per-stage durations.
        model: Model name (zoo name or file stem).
        file: The image file the frame was read from (folder and glob sources), else "".
        wall_time_ms: When the frame was captured on the wall clock (Unix time, ms), set by
            the Pipeline; 0 when unknown (a Prediction made outside one). Unlike
            `timestamp_ns` it means something off the device, e.g. for a backlog delivered
            after an MQTT outage; a board without a real-time clock has it right only once
            its clock is set (NTP).
    """

    frame_index: int
    timestamp_ns: int
    top: tuple[Label, ...]
    timings: Timings = field(default_factory=Timings)
    model: str = ""
    file: str = ""
    wall_time_ms: int = 0

    @property
    def label(self) -> Label | None:
        """The best class, or None when a threshold filtered everything out."""
        return self.top[0] if self.top else None

    def to_dict(self) -> dict[str, Any]:
        """Return the versioned JSON-ready form every sink publishes.

        Keys: `v` (schema version), `frame`, `ts_ns`, `model`, `time` (the capture time in UTC,
        ISO 8601 with milliseconds: "2026-12-02T03:05:24.123Z") when it is known, `top` (list
        of `{index, label, score}`), `timings_ms`, and `file` for a frame read from an image
        file (`time` and `file` are left out otherwise). A score or timing that is NaN or
        infinite (which JSON cannot hold) is None, so every sink writes valid JSON.
        """
        data: dict[str, Any] = {
            "v": PREDICTION_SCHEMA_VERSION,
            "frame": self.frame_index,
            "ts_ns": self.timestamp_ns,
            "model": self.model,
        }
        if self.wall_time_ms:
            data["time"] = utc_text(self.wall_time_ms)
        data["top"] = [
            {"index": lb.index, "label": lb.name, "score": _json_number(lb.score, 5)}
            for lb in self.top
        ]
        data["timings_ms"] = self.timings.to_dict()
        if self.file:
            data["file"] = self.file
        return data

    def with_timings(self, **changes: float) -> Prediction:
        """Return a copy whose timings have the given fields replaced."""
        return dataclasses.replace(self, timings=dataclasses.replace(self.timings, **changes))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Prediction:
        """Inverse of `to_dict` (timings and scores keep their rounding).

        Keys this version does not know are ignored, as the schema promises: a newer sender
        may add timings or fields without bumping ``v``.
        """
        known = {f.name for f in dataclasses.fields(Timings)}
        timings = {k: _from_json_number(v) for k, v in data.get("timings_ms", {}).items() if k in known}
        return cls(
            frame_index=int(data["frame"]),
            timestamp_ns=int(data["ts_ns"]),
            top=tuple(Label(int(t["index"]), str(t["label"]), _from_json_number(t["score"]))
                      for t in data["top"]),
            timings=Timings(**timings),
            model=str(data.get("model", "")),
            file=str(data.get("file", "")),
            wall_time_ms=utc_ms(str(data["time"])) if data.get("time") else 0,
        )


@dataclass(frozen=True)
class TensorSpec:
    """Shape, type and quantization of a runtime's input or output tensor.

    Attributes:
        shape: Full shape including the batch dimension.
        dtype: numpy dtype name: "uint8", "int8", "float32", ...
        layout: "NHWC" or "NCHW" for image inputs, "NC" for class scores, "" when unknown.
        scale: Quantization scale; 0.0 for float tensors.
        zero_point: Quantization zero point.
    """

    shape: tuple[int, ...]
    dtype: str
    layout: Literal["NHWC", "NCHW", "NC", ""] = ""
    scale: float = 0.0
    zero_point: int = 0

    @property
    def quantized(self) -> bool:
        return self.scale != 0.0
