"""Still images as a source: one image file, a folder of images, or a glob pattern."""

from __future__ import annotations

import glob
import logging
import os
from pathlib import Path

import numpy as np

from edge_sdk.errors import SourceError
from edge_sdk.sources.base import JpegSource, Packet, check_reduce, decode_jpeg, now_ns
from edge_sdk.types import Frame, Image

log = logging.getLogger("edge_sdk.sources")

#: File name extensions read as images (lower case).
IMAGE_EXTENSIONS = frozenset(
    {".jpg", ".jpeg", ".jpe", ".png", ".bmp", ".webp", ".tif", ".tiff", ".pgm", ".ppm", ".pnm"}
)
_GLOB_CHARS = frozenset("*?[")


def is_image_path(path: str) -> bool:
    """True if `path` names an image file by its extension."""
    return Path(path).suffix.lower() in IMAGE_EXTENSIONS


def is_glob(path: str) -> bool:
    """True if `path` is a glob pattern rather than a file name."""
    return any(c in _GLOB_CHARS for c in path)


def list_images(path: str) -> list[str]:
    """Return the image files `path` stands for, sorted: itself, a folder's images, or a glob's.

    Raises:
        SourceError: nothing there, or no image among what is there.
    """
    if os.path.isdir(path):
        found = [str(p) for p in Path(path).iterdir() if p.is_file() and is_image_path(p.name)]
        where = f"folder {path}"
    elif is_glob(path):
        found = [p for p in glob.glob(path) if os.path.isfile(p) and is_image_path(p)]
        where = f"pattern {path}"
    elif os.path.isfile(path):
        return [path]
    else:
        raise SourceError(f"no such file or folder: {path}; give an image, a folder or a glob")
    if not found:
        raise SourceError(
            f"no images ({', '.join(sorted(IMAGE_EXTENSIONS))}) in {where}; check the path"
        )
    return sorted(found)


class ImageSource(JpegSource):
    """Frames from image files, in name order; the source ends after the last one.

    Files that do not decode are skipped with a warning. `size` is the first image's; later
    images keep their own size (the classifier resizes each). Images are decoded lazily, so
    `reduce` makes large JPEGs cheap to read.
    """

    def __init__(
        self, uri: str, *, reduce: int = 1, fps: float = 0.0, loop: bool = False
    ) -> None:
        """Open the images.

        Args:
            uri: An image file, a folder, or a glob such as ``photos/*.jpg``; ``file://`` allowed.
            reduce: Decode at 1/N size (1, 2, 4 or 8).
            fps: Rate to report (and to pace to with ``realtime``); 0.0 means unpaced.
            loop: Start again after the last image instead of ending.

        Raises:
            SourceError: no readable image there.
            ValueError: bad `reduce` or `fps`.
        """
        if fps < 0:
            raise ValueError(f"fps must be >= 0, not {fps}")
        self.uri = uri
        check_reduce(reduce)
        self.fps = float(fps)
        self.live = False
        self._loop = loop
        path = uri[len("file://") :] if uri.startswith("file://") else uri
        self._files = list_images(path)
        self._next = 0
        self._closed = False
        first = self._first_readable()
        self.full_size = (first.shape[1], first.shape[0])
        self.reduce = reduce

    def _first_readable(self) -> Image:
        for name in self._files:
            image = decode_jpeg(np.fromfile(name, dtype=np.uint8))
            if image is not None:
                return image
        raise SourceError(f"none of the {len(self._files)} image file(s) at {self.uri} decodes")

    def read_packet(self) -> Packet | None:
        while not self._closed:
            position = self._next
            if position >= len(self._files):
                if not self._loop:
                    return None
                position = position % len(self._files)
            self._next += 1
            name = self._files[position]
            try:
                data = np.fromfile(name, dtype=np.uint8)
            except OSError as exc:
                log.warning("skipping %s: %s", name, exc)
                continue
            return Packet(data, self._next - 1, now_ns())
        return None

    def decode(self, packet: Packet) -> Frame | None:
        frame = super().decode(packet)
        if frame is None:
            log.warning("skipping image %d of %s: it does not decode", packet.index, self.uri)
        return frame

    def close(self) -> None:
        self._closed = True
