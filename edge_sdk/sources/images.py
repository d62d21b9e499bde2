"""Still images as a source: one image file, a folder of images, or a glob pattern."""

from __future__ import annotations

import collections
import glob
import logging
import os
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from edge_sdk.checks import check_number
from edge_sdk.errors import ConfigError, SourceError, file_problem
from edge_sdk.sources.base import JpegSource, Packet, check_reduce, decode_jpeg, file_path, now_ns
from edge_sdk.sources.opening import quiet_opencv
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
    """True if `path` is a glob pattern rather than a file name (an existing file named like
    a pattern, "cam[1].png", is a file name)."""
    return any(c in _GLOB_CHARS for c in path) and not os.path.isfile(path)


def image_files(path: str, *, folder: bool) -> list[str]:
    """The image files in the folder `path`, or matching the glob `path`; unsorted, maybe none.

    Raises:
        OSError: the folder cannot be listed (a glob just matches nothing).
    """
    if folder:
        with os.scandir(path) as entries:
            return [e.path for e in entries if is_image_path(e.name) and e.is_file()]
    return [p for p in glob.glob(path) if os.path.isfile(p) and is_image_path(p)]


def list_images(path: str) -> list[str]:
    """Return the image files `path` stands for, sorted: itself, a folder's images, or a glob's.

    Raises:
        SourceError: nothing there, a folder that cannot be listed, or no image among what is
            there.
    """
    if os.path.isdir(path):
        try:
            found = image_files(path, folder=True)
        except OSError as exc:
            raise SourceError(f"cannot list the folder {path}: {file_problem(exc)}") from None
        where = f"folder {path}"
    elif is_glob(path):
        found = image_files(path, folder=False)
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


#: Seconds between two looks for new files in a watched folder. A file is taken once it has
#: kept its size and modification time over one such interval (a copy or upload has ended).
WATCH_POLL_S = 0.5
#: The longest wait between two looks, however large the folder.
WATCH_POLL_MAX_S = 5.0

#: Images a watched folder tries at the start for the size to report (see `_first_usable`).
_WATCH_SIZE_TRIES = 5

#: Seconds a file that keeps changing waits before it is read as it is: a snapshot replaced
#: more often than the looks would otherwise never be read (a partial one is read again
#: when it changes).
WATCH_MAX_WAIT_S = 2.0

#: (size, modification time, inode, status change time) of a file. Its content is taken to
#: have changed when one of the first three has; the last (chmod, but also links and atime)
#: counts only for a file that could not be read.
_Mark = tuple[int, int, int, int]


class ImageSource(JpegSource):
    """Frames from image files, in name order; the source ends after the last one.

    In a folder or glob, files that cannot be read or do not decode are skipped with a warning
    naming the file (once per file, also with `loop`). `size` is the first usable image's;
    later images keep their own size (the classifier resizes each). Images are decoded lazily,
    so `reduce` makes large JPEGs cheap to read. Each frame carries its file's path
    (`Frame.file`, and so `Prediction.file`).

    With `watch`, a folder (or glob) is a drop box: after the images there at the start, the
    source waits for new ones and hands out each once, oldest first, and never ends. While it
    waits, `waiting` holds when its next look is due (the service's watchdog takes a source
    that keeps looking for a healthy, idle one).
    """

    def __init__(
        self, uri: str, *, reduce: int = 1, fps: float = 0.0, loop: bool = False,
        watch: bool = False,
    ) -> None:
        """Open the images.

        Args:
            uri: An image file, a folder, or a glob such as ``photos/*.jpg``; ``file://`` allowed.
            reduce: Decode at 1/N size (1, 2, 4 or 8).
            fps: Rate to report (and to pace to with ``realtime``); 0.0 means unpaced.
            loop: Start again after the last image instead of ending.
            watch: Keep looking for new images (see the class docstring). The folder may be
                empty at the start. A file that does not decode is tried again if it changes
                (an upload that had paused). A restart reads again what is still there: move
                or delete the images done with.

        Raises:
            SourceError: no readable image there; for a single image, also one that cannot be
                read (permission denied, ...) or decoded. With `watch`: only a folder that is
                not there.
            ConfigError: `watch` with a single file, or with `loop`.
            ValueError: bad `reduce` or `fps` (TypeError: an `fps` that is no number).
        """
        self.fps = _check_fps(fps)
        self.uri = uri
        check_reduce(reduce)
        self.live = False
        self._loop = loop
        path = file_path(uri)
        self._path = path
        self._single = not os.path.isdir(path) and not is_glob(path)
        #: Whether this is a watched folder (a drop box that never ends).
        self.watch = watch
        #: With `watch`, while it has no image to hand out: when its next look is due
        #: (`time.monotonic()`); None otherwise.
        self.waiting: float | None = None
        if watch:
            self._open_watched(path, loop)
        else:
            self._files = list_images(path)
        self._next = 0
        self._closed = False
        self._skipped: set[str] = set()  # files already warned about
        self._failing = 0  # images failed in a row since the last good one
        self._last_failure = ""
        first = self._first_usable() if self._files or not watch else None
        self.full_size = (first.shape[1], first.shape[0]) if first is not None else (0, 0)
        self.reduce = reduce

    @staticmethod
    def check_options(uri: str, options: Mapping[str, Any]) -> None:
        """Refuse option values opening would refuse, reading no image (for check-config).

        A folder that is not there yet passes: it may be a disk mounted later.

        Raises:
            ConfigError: an `fps` below 0 or over 1000; `watch` with `loop`, or on a single file.
        """
        try:
            _check_fps(options.get("fps", 0.0))
        except (TypeError, ValueError) as exc:
            raise ConfigError(str(exc)) from None
        if options.get("watch"):
            check_watchable(file_path(uri), loop=bool(options.get("loop")))

    def _open_watched(self, path: str, loop: bool) -> None:
        check_watchable(path, loop=loop)
        # A folder is a folder even when its name has glob characters ("cam[1]"), as without
        # watch; a glob's folder is the part of it before the first pattern.
        self._is_folder = os.path.isdir(path)
        if not self._is_folder and not is_glob(path):
            raise SourceError(f"no such folder: {path}; create it or fix the path")
        self._folder = path if self._is_folder else glob_folder(path)
        if not os.path.isdir(self._folder):
            raise SourceError(f"no such folder: {self._folder}; create it or fix the path")
        self._files = sorted(self._scan())
        self._queue: collections.deque[str] = collections.deque(self._files)
        # Files queued (None) or read (their mark then), pruned to what is still there: one
        # whose mark changes after it was read (rewritten, replaced, chmod-ed) is read again.
        self._seen: dict[str, _Mark | None] = dict.fromkeys(self._files)
        self._unreadable: set[str] = set()  # read and refused (permission): chmod may mend it
        # New or changed file -> (its mark at the last look, when it was first found pending).
        self._pending: dict[str, tuple[_Mark, float]] = {}
        self._poll = WATCH_POLL_S
        self._wake = threading.Event()
        if not self._files:
            log.info("watching %s: no images yet", path)

    def _scan(self) -> list[str]:
        """The image files there now (no error for none: a watched folder may be empty)."""
        if not self._is_folder and not os.path.isdir(self._folder):
            raise self._gone(self._folder)
        try:
            return image_files(self._path, folder=self._is_folder)
        except FileNotFoundError:
            raise self._gone(self._path) from None
        except OSError as exc:
            raise SourceError(f"cannot list the folder {self._path}: {file_problem(exc)}") from None

    def _gone(self, folder: str) -> SourceError:
        return SourceError(f"{self.uri}: the folder {folder} is gone; check the disk or the path")

    def _first_usable(self) -> Image | None:
        if self.watch:
            return self._first_watched()
        unreadable: list[tuple[str, str]] = []  # (file, why)
        for name in self._files:
            try:
                data = np.fromfile(name, dtype=np.uint8)
            except OSError as exc:
                if self._single:
                    raise SourceError(f"cannot read {name}: {file_problem(exc)}") from None
                unreadable.append((name, file_problem(exc)))
                self._skip(name, file_problem(exc))
                continue
            with quiet_opencv():
                image = decode_jpeg(data)
            if image is not None:
                return image
            if self._single:
                raise SourceError(
                    f"{name} does not decode as an image; give a JPEG, PNG, BMP, WebP or TIFF file"
                )
            self._skip(name, "it does not decode")
        reasons = []
        if unreadable:
            name, problem = unreadable[0]
            reasons.append(f"{len(unreadable)} cannot be read ({name}: {problem})")
        if len(unreadable) < len(self._files):
            reasons.append(f"{len(self._files) - len(unreadable)} do not decode")
        raise SourceError(
            f"no usable image among the {len(self._files)} at {self.uri}: {', '.join(reasons)}"
        )

    def _first_watched(self) -> Image | None:
        """A size to start from, if one of the first images has it: a watched folder needs no
        usable image to open, and one of thousands of files that do not decode should not take
        a pass over them all. Failures are left to the read, which says them."""
        for name in self._files[:_WATCH_SIZE_TRIES]:
            try:
                data = np.fromfile(name, dtype=np.uint8)
            except OSError:
                continue
            with quiet_opencv():
                image = decode_jpeg(data)
            if image is not None:
                return image
        return None

    def _skip(self, name: str, why: str) -> None:
        """Warn that `name` is skipped, the first time only (a looping source meets it again)."""
        if name not in self._skipped:
            self._skipped.add(name)
            log.warning("skipping %s: %s", name, why)

    def read_packet(self) -> Packet | None:
        if self.watch:
            return self._read_watched()
        while not self._closed:
            if self._failing >= len(self._files):
                # Raised here, on the reading thread: `decode` runs on the consumer's.
                raise SourceError(f"{self.uri}: none of its {len(self._files)} images can be read "
                                  f"or decoded any more ({self._last_failure})")
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
                self._failed(name, file_problem(exc))
                folder = os.path.dirname(name) or "."
                if not self._single and not os.path.isdir(folder):
                    raise self._gone(folder) from None
                continue
            return Packet(data, self._next - 1, now_ns(), name)
        return None

    def _read_watched(self) -> Packet | None:
        while not self._closed:
            if not self._queue:
                self._look_for_new()
            if not self._queue:
                self.waiting = time.monotonic() + self._poll
                self._wake.wait(self._poll)
                continue
            self.waiting = None
            name = self._queue.popleft()
            # The mark from before the read: a change during the read makes a second read
            # later (the newer content), never a lost one.
            self._seen[name] = _mark(name)
            try:
                data = np.fromfile(name, dtype=np.uint8)
            except FileNotFoundError:
                continue  # taken away before its turn: nothing to classify, nothing lost
            except OSError as exc:
                self._unreadable.add(name)
                self._skip(name, f"{file_problem(exc)} (it is tried again when it changes)")
                continue
            self._unreadable.discard(name)
            self._next += 1
            return Packet(data, self._next - 1, now_ns(), name)
        return None

    def _changed(self, name: str, read_at: _Mark, mark: _Mark) -> bool:
        if name in self._unreadable:
            return read_at != mark
        return read_at[:3] != mark[:3]

    def _look_for_new(self) -> None:
        """Queue the files that are new or changed since they were read, once they have kept
        their size and times over one look, oldest first."""
        started = time.monotonic()
        now: dict[str, _Mark] = {}
        for name in self._scan():
            mark = _mark(name)
            if mark is not None:
                now[name] = mark
        for name in [n for n in self._seen if n not in now]:
            del self._seen[name]  # forgetting what went away keeps this bounded by the folder
        self._skipped &= now.keys()
        self._unreadable &= now.keys()
        ready: list[tuple[int, str]] = []
        pending: dict[str, tuple[_Mark, float]] = {}
        for name, mark in now.items():
            replaced = False
            if name in self._seen:
                read_at = self._seen[name]
                if read_at is None or not self._changed(name, read_at, mark):
                    continue  # queued, or read and unchanged since
                replaced = read_at[2] != mark[2]
            before, since = self._pending.get(name, (None, started))
            # Ready: another inode than when it was read or last looked at (a whole file
            # renamed over the old one); unchanged over a look; or changing for
            # WATCH_MAX_WAIT_S (rewritten in place more often than the looks).
            if replaced or (before is not None and (before[:3] == mark[:3] or before[2] != mark[2])) \
                    or started - since >= WATCH_MAX_WAIT_S:
                ready.append((mark[1], name))
            else:
                pending[name] = (mark, since)
        self._pending = pending
        for _, name in sorted(ready):
            self._seen[name] = None
            self._skipped.discard(name)  # a new version that fails says so again
            self._queue.append(name)
        # Listing and checking a folder of many thousand files takes a while: look less often
        # then, so that watching stays within a tenth of a core; but at least every
        # WATCH_POLL_MAX_S, well within the service watchdog's stall_after, which an idle
        # watched folder keeps fed by looking.
        cost = time.monotonic() - started
        self._poll = min(WATCH_POLL_MAX_S, max(WATCH_POLL_S, 10 * cost))

    def _failed(self, name: str, why: str) -> None:
        """Skip `name` and count it: once every image has failed in a row (read or decode),
        `read_packet` ends the source, which looping would otherwise go round for ever."""
        self._skip(name, why)
        self._failing += 1
        self._last_failure = f"{name}: {why}"

    def decode(self, packet: Packet) -> Frame | None:
        # OpenCV's own line ("PNG input buffer is incomplete") would precede the warning below.
        with quiet_opencv():
            frame = super().decode(packet)
        if frame is None and self.watch:
            self._skip(packet.file, "it does not decode (it is tried again when it changes)")
        elif frame is None:
            self._failed(packet.file, "it does not decode")
        else:
            self._failing = 0
        return frame

    def close(self) -> None:
        self._closed = True
        if self.watch:
            self._wake.set()  # a read waiting for new files returns at once


def _mark(name: str) -> _Mark | None:
    """The file's `_Mark`, or None if it is gone."""
    try:
        info = os.stat(name)
    except OSError:
        return None
    return info.st_size, info.st_mtime_ns, info.st_ino, info.st_ctime_ns


def _check_fps(fps: Any) -> float:
    # 0 is unpaced; past 1000 pacing means nothing (and 1e308 would overflow the frame times).
    return check_number("fps", fps, low=0, high=1000)


def check_watchable(path: str, *, loop: bool) -> None:
    """Refuse ``watch`` where it cannot work (any existing file; with ``loop``).

    Raises:
        ConfigError: the message says which.
    """
    if loop:
        raise ConfigError("watch and loop exclude each other: a watched folder hands out each "
                          "image once; drop one of them")
    if os.path.isfile(path):
        raise ConfigError(f"watch needs a folder or a glob of images, not the file {path}")


def glob_folder(pattern: str) -> str:
    """The folder a glob looks in: its leading path parts without pattern characters
    (``/srv/in/cam*.jpg`` -> ``/srv/in``, ``*.jpg`` -> ``.``)."""
    parts = Path(pattern).parts
    fixed = []
    for part in parts[:-1]:
        if any(c in _GLOB_CHARS for c in part):
            break
        fixed.append(part)
    return str(Path(*fixed)) if fixed else "."
