"""`test://`: synthetic frames that need no camera, file or network.

Each frame carries its own number in a row of black and white blocks along its top edge
(`stamp_number` / `read_number`), which survives JPEG compression and reduced-size decoding, so
a test or benchmark can tell exactly which frame a prediction was made from.
"""

from __future__ import annotations

import contextlib
import itertools
import math
import time
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qs

import numpy as np

from edge_sdk.errors import ConfigError
from edge_sdk.sources.base import BaseSource, now_ns
from edge_sdk.types import Frame, Image

#: Bits of the frame number in the stamp (numbers wrap at 2**STAMP_BITS).
STAMP_BITS = 24
# Two reference cells (white, black) let the reader pick a threshold per image.
_CELLS = STAMP_BITS + 2


def _stamp_cells(height: int, width: int) -> tuple[list[tuple[int, int]], int]:
    """Column spans of the cells and the stamp's height. Both are fractions of the image size,
    so a copy decoded at 1/2, 1/4 or 1/8 size has its cells at the same relative places."""
    if width < 2 * _CELLS or height < 8:
        raise ValueError(f"image {width}x{height} is too small to stamp a frame number on")
    edges = [round(i * width / _CELLS) for i in range(_CELLS + 1)]
    return list(itertools.pairwise(edges)), max(4, height // 16)


def stamp_number(image: Image, number: int) -> None:
    """Draw `number` (mod 2**24) into the top rows of a BGR image, in place."""
    cells, cell_h = _stamp_cells(image.shape[0], image.shape[1])
    number %= 1 << STAMP_BITS
    bits = [1, 0] + [(number >> (STAMP_BITS - 1 - i)) & 1 for i in range(STAMP_BITS)]
    for (x0, x1), bit in zip(cells, bits, strict=True):
        image[:cell_h, x0:x1] = 255 if bit else 0


def read_number(image: Image) -> int | None:
    """Read the number `stamp_number` drew; None if the image carries no readable stamp.

    Works on JPEG-compressed and reduced-size copies: it samples the middle of each cell.
    """
    try:
        cells, cell_h = _stamp_cells(image.shape[0], image.shape[1])
    except ValueError:
        return None
    grey = image[:cell_h].mean(axis=2) if image.ndim == 3 else image[:cell_h]
    y0, y1 = cell_h // 4, max(cell_h // 4 + 1, 3 * cell_h // 4)
    levels = []
    for x0, x1 in cells:
        margin = (x1 - x0) // 4
        levels.append(float(grey[y0:y1, x0 + margin : max(x0 + margin + 1, x1 - margin)].mean()))
    white, black = levels[0], levels[1]
    if white - black < 64:
        return None
    threshold = (white + black) / 2
    number = 0
    for level in levels[2:]:
        number = (number << 1) | int(level > threshold)
    return number


def parse_size(value: str | tuple[int, int]) -> tuple[int, int]:
    """Parse "640x480" (or a (width, height) pair) to (width, height).

    Raises:
        ValueError: not two positive integers.
    """
    if isinstance(value, str):
        parts = value.lower().split("x")
        if len(parts) != 2 or not all(p.strip().isdigit() for p in parts):
            raise ValueError(f"size must look like 640x480, not {value!r}")
        value = (int(parts[0]), int(parts[1]))
    width, height = (int(v) for v in value)
    if width <= 0 or height <= 0:
        raise ValueError(f"size must be positive, not {width}x{height}")
    return width, height


#: The accepted form, for error messages.
TEST_FORM = "test://?size=WxH&fps=N&count=N&live=1|0 (every part optional)"

#: Largest side of a synthetic frame: each frame is rendered in memory (8K is 100 MB a frame).
MAX_SIDE = 8192

#: Slowest frame rate: one frame every 100 s (a smaller rate only overflows the pacing).
MIN_FPS = 0.01
#: Fastest: beyond it pacing means nothing (and 1e308 makes 300-digit frame numbers).
MAX_FPS = 1000.0


def _query(uri: str) -> Mapping[str, str]:
    """The options of ``test://?k=v&...``; ``test://k=v`` (no ``?``) is taken as the query too.

    Not through `urlsplit`: it would read ``test://[`` as an unclosed IPv6 host and raise.

    Raises:
        ValueError: something other than ``/`` between ``test://`` and ``?``.
    """
    rest = uri.partition("://")[2] if "://" in uri else uri
    before, sep, query = rest.partition("?")
    if not sep:
        before, query = "", before
    if before.strip("/"):
        raise ValueError(f"unexpected {before!r} before the '?'")
    return {k: v[-1] for k, v in parse_qs(query, keep_blank_values=True).items()}


def _number(name: str, value: str | float, kind: type[int] | type[float]) -> float:
    """`value` (a query string or a keyword option) as a finite int or float."""
    try:
        number = kind(value)
    except (TypeError, ValueError):
        what = "a whole number" if kind is int else "a number"
        raise ValueError(f"{name} must be {what}, not {value!r}") from None
    if not math.isfinite(number):
        raise ValueError(f"{name} must be a finite number, not {value!r}")
    return number


def _truthy(value: str) -> bool:
    if value.lower() in ("1", "true", "yes", "on", ""):
        return True
    if value.lower() in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"live must be 1 or 0 (or true, false, yes, no), not {value!r}")


class SyntheticSource(BaseSource):
    """Synthetic BGR frames: a moving gradient with the frame number stamped on top.

    URI: ``test://?size=640x480&fps=30&count=100&live=1`` (every part optional); keyword options
    override the query.

    A live source behaves like a camera: frame k exists at start + k/fps whether or not anyone
    reads it, and `read` returns the newest one not yet returned (so a slow reader sees gaps in
    the indices). A non-live source hands out frames as fast as they are read, like a file.
    """

    def __init__(
        self,
        uri: str = "test://",
        *,
        size: tuple[int, int] | str | None = None,
        fps: float | None = None,
        count: int | None = None,
        live: bool | None = None,
    ) -> None:
        """Create the source.

        Args:
            uri: ``test://`` with optional query ``size``, ``fps``, ``count``, ``live``.
            size: (width, height) or "WxH"; default 640x480.
            fps: Frame rate; default 30. A live source is paced to it.
            count: Number of frames before the source ends; 0 (default) for endless.
            live: Paced like a camera (default) or as fast as read, like a file.

        Raises:
            ConfigError: a query value or option is malformed or out of range; the message
                names the URI and the accepted form.
        """
        self.size, self.fps, self._count, self.live = self._options(uri, size, fps, count, live)
        self.uri = uri
        width, height = self.size
        ramp = np.linspace(0, 255, width, dtype=np.float32)
        self._base = np.empty((height, width, 3), np.uint8)
        self._base[..., 0] = ramp.astype(np.uint8)
        self._base[..., 1] = np.linspace(0, 255, height, dtype=np.float32)[:, None].astype(np.uint8)
        self._base[..., 2] = 128
        self._next = 0
        self._start = time.monotonic()
        self._closed = False

    @staticmethod
    def check_uri(uri: str) -> None:
        """Check the URI's options as opening it would (for check-config), making no frames.

        Raises:
            ConfigError: a query value is malformed or out of range.
        """
        SyntheticSource._options(uri, None, None, None, None)

    @staticmethod
    def check_options(uri: str, options: Mapping[str, Any]) -> None:
        """Refuse option values opening would refuse (for check-config).

        Raises:
            ConfigError: a value out of range or malformed.
        """
        SyntheticSource._options(uri, options.get("size"), options.get("fps"),
                                 options.get("count"), options.get("live"))

    @staticmethod
    def _options(
        uri: str, size: tuple[int, int] | str | None, fps: float | None, count: int | None,
        live: bool | None,
    ) -> tuple[tuple[int, int], float, int, bool]:
        """(size, fps, count, live) from the URI's query, each overridden by its argument.

        A bad value is blamed on where it came from: the URI (with the form expected) or the
        option.
        """
        try:
            query = _query(uri)
            unknown = sorted(set(query) - {"size", "fps", "count", "live"})
            if unknown:
                raise ValueError(f"unknown option {', '.join(unknown)}; use size, fps, count, live")
        except ValueError as exc:
            raise ConfigError(f"bad test:// source {uri!r}: {exc}; expected {TEST_FORM}") from None
        given: dict[str, Any] = {"size": size, "fps": fps, "count": count, "live": live}
        key = ""

        def value(name: str, default: str) -> Any:
            nonlocal key
            key = name
            return given[name] if given[name] is not None else query.get(name, default)

        try:
            shape = parse_size(value("size", "640x480"))
            if max(shape) > MAX_SIDE:
                raise ValueError(f"size must be at most {MAX_SIDE}x{MAX_SIDE}, not "
                                 f"{shape[0]}x{shape[1]}")
            rate = float(_number("fps", value("fps", "30"), float))
            if not MIN_FPS <= rate <= MAX_FPS:
                raise ValueError(f"fps must be within [{MIN_FPS:g}, {MAX_FPS:g}], not {rate:g}")
            frames = int(_number("count", value("count", "0"), int))
            if frames < 0:
                raise ValueError(f"count must be 0 (no end) or more, not {frames}")
            flag = value("live", "1")
            if given["live"] is not None and not isinstance(flag, bool):
                raise ValueError(f"live must be True or False, not {flag!r}")
            paced = flag if isinstance(flag, bool) else _truthy(flag)
        except ValueError as exc:
            if given[key] is not None:
                raise ConfigError(f"bad test:// source option: {exc}") from None
            raise ConfigError(f"bad test:// source {uri!r}: {exc}; expected {TEST_FORM}") from None
        return shape, rate, frames, paced

    def render(self, index: int) -> Image:
        """Return frame `index` as the source would hand it out."""
        width = self.size[0]
        image = self._base.copy()
        # A bar sweeping across the frame makes consecutive frames differ visibly.
        bar = max(1, width // 20)
        x = (index * max(1, width // 60)) % max(1, width - bar)
        image[:, x : x + bar] = (255, 255, 255)
        with contextlib.suppress(ValueError):  # too small to stamp: the frame is still valid
            stamp_number(image, index)
        return image

    def read(self) -> Frame | None:
        if self._closed or (self._count and self._next >= self._count):
            return None
        index = self._next
        if self.live:
            # Like a sensor: frame k is exposed at start + k/fps; a late reader gets the newest.
            elapsed = time.monotonic() - self._start
            index = max(index, int(elapsed * self.fps))
            if self._count:
                index = min(index, self._count - 1)
            delay = self._start + index / self.fps - time.monotonic()
            if delay > 0:
                time.sleep(delay)
        self._next = index + 1
        return Frame(self.render(index), index, now_ns(), self.uri)

    def close(self) -> None:
        self._closed = True
