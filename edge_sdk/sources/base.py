"""What every built-in source shares: the attributes it reports and the encoded-packet split.

A source is anything with `uri`, `read()` and `close()` (the `FrameSource` protocol). Built-in
sources also report `size`, `fps` and `live`, and the ones that receive JPEG bytes (MJPEG streams,
MJPEG video files, image files) implement `PacketSource` too: `read_packet()` hands out the
encoded bytes and `decode()` turns one packet into a Frame. The capture thread uses that split to
throw stale frames away before paying for their decode.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable
from urllib.parse import SplitResult, urlsplit

import cv2
import numpy as np
import numpy.typing as npt

from edge_sdk.checks import check_number
from edge_sdk.errors import ConfigError
from edge_sdk.protocols import Closing
from edge_sdk.types import Frame, Image

#: `reduce` values and the imdecode flag that decodes a JPEG at 1/N of its size in each direction.
REDUCE_FLAGS: dict[int, int] = {
    1: cv2.IMREAD_COLOR,
    2: cv2.IMREAD_REDUCED_COLOR_2,
    4: cv2.IMREAD_REDUCED_COLOR_4,
    8: cv2.IMREAD_REDUCED_COLOR_8,
}


def check_timeout(timeout: Any) -> float:
    """A network source's `timeout` in seconds, if within [0.1, 3600].

    FFmpeg (RTSP) takes it in whole milliseconds, so under one would be no wait at all, and a
    tenth of a second is already shorter than many cameras' gaps between frames.

    Raises:
        TypeError: not a number.
        ValueError: outside the range.
    """
    return check_number("timeout", timeout, low=0.1, high=3600)


def check_reduce(reduce: int) -> int:
    """Return `reduce` if it is 1, 2, 4 or 8.

    Raises:
        ValueError: any other value.
    """
    if reduce not in REDUCE_FLAGS:
        raise ValueError(f"reduce must be one of 1, 2, 4, 8, not {reduce!r}")
    return reduce


#: Most pixels a decoded frame may have (8192 x 8192, 200 MB as BGR): above it a JPEG or PNG
#: header is taken for a broken or hostile file, not decoded.
MAX_DECODED_PIXELS = 8192 * 8192

# JPEG start-of-frame markers (baseline, progressive, ...): all of C0-CF but DHT, JPG and DAC.
_SOF_MARKERS = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}


def _header_size(buf: npt.NDArray[np.uint8]) -> tuple[int, int] | None:
    """(width, height) a JPEG or PNG header claims, None when it cannot tell cheaply.

    Walks the JPEG segments up to the frame header (within the first few hundred bytes of a
    camera frame), or reads a PNG's IHDR; a few microseconds against a millisecond of decode.
    """
    head = buf[:65536].tobytes()
    if head.startswith(b"\x89PNG\r\n\x1a\n") and len(head) >= 24:
        return int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big")
    if not head.startswith(b"\xff\xd8"):
        return None
    i = 2
    while i + 9 <= len(head) and head[i] == 0xFF:
        marker = head[i + 1]
        if marker in _SOF_MARKERS:
            return int.from_bytes(head[i + 7 : i + 9], "big"), int.from_bytes(head[i + 5 : i + 7], "big")
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        i += 2 + int.from_bytes(head[i + 2 : i + 4], "big")
    return None


def decode_jpeg(data: npt.NDArray[np.uint8] | bytes, reduce: int = 1) -> Image | None:
    """Decode JPEG (or any OpenCV-readable) bytes to BGR uint8, at 1/`reduce` size.

    libjpeg-turbo skips most of the inverse DCT when asked for a reduced size, so `reduce=2`
    costs a fraction of a full decode (see docs/benchmarks.md). Returns None for bytes that do
    not decode (a truncated or corrupt frame), so callers can skip the frame instead of failing.
    """
    buf = np.frombuffer(data, dtype=np.uint8) if isinstance(data, bytes) else data.reshape(-1)
    if buf.size == 0:
        return None
    size = _header_size(buf)
    if size is not None and (size[0] // reduce) * (size[1] // reduce) > MAX_DECODED_PIXELS:
        return None  # a header claiming a huge image would allocate it (OOM on a board)
    try:
        image = cv2.imdecode(buf, REDUCE_FLAGS[reduce])
    except cv2.error:
        # A tiny PNG asked for at 1/8 size fails OpenCV's resize assertion: it is fine at full
        # size. A header claiming over 2^30 pixels fails OpenCV's size limit: no image.
        return decode_jpeg(buf, 1) if reduce > 1 else None
    if image is None:
        return None
    if image.ndim == 2:  # imdecode can still return grey for odd inputs
        image = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    return np.asarray(image, dtype=np.uint8)


@dataclass(frozen=True, eq=False)
class Packet:
    """One encoded (JPEG) frame, not decoded yet.

    Attributes:
        data: The encoded bytes, as a 1-D uint8 array.
        index: Position in the source's sequence (counts packets the source skipped, too).
        timestamp_ns: `time.monotonic_ns()` when the packet was received or read.
        file: The image file it was read from (image sources), else "".
    """

    data: npt.NDArray[np.uint8]
    index: int
    timestamp_ns: int
    file: str = ""


@runtime_checkable
class PacketSource(Protocol):
    """A source whose frames arrive encoded, so decoding can be deferred or skipped.

    `packets` is False when this particular source cannot hand out packets after all (an MJPEG-
    capable file class that opened an H.264 file): then only `read` may be used.
    """

    uri: str
    live: bool
    packets: bool

    def read_packet(self) -> Packet | None:
        """Block until the next encoded frame is ready; None at the end of the source."""
        ...

    def decode(self, packet: Packet) -> Frame | None:
        """Decode one packet; None when its bytes are corrupt (skip it)."""
        ...


class BaseSource(Closing):
    """Base of the built-in sources: sets the reported attributes, does nothing else.

    A backend overrides `read` (and `close` if it holds anything). JPEG backends override
    `read_packet` and inherit `read` = `decode(read_packet())` from `JpegSource`.

    Attributes:
        uri: What the source was opened from.
        size: (width, height) of the frames it hands out; (0, 0) until known.
        fps: The source's real frame rate; 0.0 when it is not known.
        live: True for cameras and streams (frames arrive whether or not they are read);
            False for files, which wait for the reader.
    """

    uri: str = ""
    size: tuple[int, int] = (0, 0)
    fps: float = 0.0
    live: bool = False

    def read(self) -> Frame | None:  # pragma: no cover - overridden
        """Block until the next frame; None when the source has ended."""
        return None

    def close(self) -> None:
        """Release what the source holds; calling it twice is harmless."""

    def __repr__(self) -> str:
        w, h = self.size
        return f"{type(self).__name__}({self.uri!r}, {w}x{h}, {self.fps:.1f} fps, live={self.live})"


def reduced_size(size: tuple[int, int], reduce: int) -> tuple[int, int]:
    """(width, height) of an image of `size` decoded at 1/`reduce` (libjpeg rounds up)."""
    return (-(-size[0] // reduce), -(-size[1] // reduce))


class JpegSource(BaseSource):
    """Base of sources that receive JPEG bytes: `read` decodes what `read_packet` returns.

    Subclasses set `full_size` (the encoded frame size) and then `reduce`.

    Attributes:
        packets: True: `read_packet` and `decode` work (see `PacketSource`).
        full_size: (width, height) of the frames as encoded.

    `reduce` stays 1 when `packets` is False.
    """

    packets: bool = True
    full_size: tuple[int, int] = (0, 0)
    _reduce: int = 1

    @property
    def reduce(self) -> int:
        """Frames are decoded at 1/`reduce` of their encoded width and height (1, 2, 4, 8).

        It may be changed while the source is open (the pipeline lowers it when no sink needs
        full-size frames); `size` follows.
        """
        return self._reduce

    @reduce.setter
    def reduce(self, value: int) -> None:
        check_reduce(value)
        # A source that turned out not to receive JPEG (an H.264 file) decodes at full size.
        self._reduce = value if self.packets else 1
        if self.full_size != (0, 0):
            self.size = reduced_size(self.full_size, self._reduce)

    def read_packet(self) -> Packet | None:  # pragma: no cover - overridden
        """Block until the next encoded frame; None at the end of the source."""
        return None

    def decode(self, packet: Packet) -> Frame | None:
        image = decode_jpeg(packet.data, self.reduce)
        if image is None:
            return None
        return Frame(image, packet.index, packet.timestamp_ns, self.uri, packet.file)

    def read(self) -> Frame | None:
        # Corrupt packets are skipped, not reported as the end of the source.
        while (packet := self.read_packet()) is not None:
            frame = self.decode(packet)
            if frame is not None:
                return frame
        return None


def uses_packets(source: object) -> bool:
    """True if `source` can hand out encoded packets (see `PacketSource`)."""
    return isinstance(source, PacketSource) and bool(source.packets)


def now_ns() -> int:
    """The clock every frame timestamp uses."""
    return time.monotonic_ns()


def split_network_uri(uri: str, forms: str) -> SplitResult:
    """Split a ``scheme://[user:password@]host[:port]/path`` URI, checking host and port.

    `urllib.parse` reports a malformed URI lazily, as a bare ValueError: `urlsplit` for an
    unclosed IPv6 bracket, the `port` attribute for a port that is not a number from 0 to
    65535. Both are read here, once, so a source never hits them later.

    Args:
        uri: The URI as given.
        forms: The accepted form(s), for the error message, e.g. "rtsp://host[:port]/path".

    Raises:
        ConfigError: no host, an unclosed ``[``, or a bad port; the message names `uri` (its
            password starred out: errors end up in logs) and `forms`.
    """
    try:
        parts = urlsplit(uri)
        _ = parts.port
    except ValueError as exc:
        # The usual cause with a login: a password holding "/", "?", "#" or "@", which end the
        # host part early (and the error text would show the password).
        if "@" in uri:  # urllib's own text may quote a piece of the password
            why, hint = "", "; percent-encode a / ? # @ in the password (%2F %3F %23 %40)"
        else:
            why, hint = f" ({exc})", ""
        raise ConfigError(f"bad source URI {hide_password(uri)!r}{why}; expected {forms}{hint}") from None
    if not parts.hostname:
        raise ConfigError(f"bad source URI {hide_password(uri)!r} (no host); expected {forms}")
    return parts


def file_path(uri: str) -> str:
    """The path a ``file://`` URI names (any case of the scheme), or `uri` itself, stripped."""
    text = uri.strip()
    return text[len("file://") :] if text[: len("file://")].lower() == "file://" else text


def hide_password(uri: str) -> str:
    """`uri` with the password of ``scheme://user:password@host`` replaced by ``***``.

    A regular expression rather than `urlsplit`, so it works on the malformed URIs that end up
    in error messages. The password runs to the last "@": one holding "/", "?" or "#" (not
    percent-encoded) must not show either. So an "@" later in the path of a URI with a port
    and no login hides that stretch too, which errs the safe way.
    """
    return re.sub(r"^([^:/?#]+://[^/?#@:]*:).*@", r"\1***@", uri)


def host_port(host: str, port: int | None) -> str:
    """``host:port`` (``[host]:port`` for an IPv6 address; no port when it is None or 0)."""
    shown = f"[{host}]" if ":" in host else host
    return f"{shown}:{port}" if port else shown
