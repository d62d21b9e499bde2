"""How sources open: so that a stop request can cut a connect short, and without library noise.

A stream's open blocks for up to its timeout (a camera that accepts the connection and never
answers), and a signal handler cannot end it: Python retries a socket call after running the
handler, and OpenCV's FFmpeg open does not return to Python at all until it times out. Inside
``with stoppable_opens(event):`` network sources therefore connect in a helper thread
(`open_stoppably`) while the opening thread waits in short slices, running signal handlers in
between; once `event` is set the open raises `OpenInterrupted` at once and the helper closes
whatever it gets later. The service wraps its run in it (its SIGTERM sets the event) and
`Capture` its reopenings, so a stop is never held up by a camera that does not answer.

OpenCV and FFmpeg print their own lines (``[ WARN:0@0.1] global cap.cpp:212 open
VIDEOIO(FFMPEG) ...``, ``moov atom not found``) to stderr when an open fails, before the one-line
`SourceError` that says the same and names the fix. `quiet_opencv` silences OpenCV's log for the
length of an open (and restores it); `quiet_ffmpeg` sets FFmpeg's level, which OpenCV reads once,
at the first FFmpeg open of the process (see its docstring). With the ``edge_sdk.sources`` logger
at DEBUG (``--log-level debug``) neither is silenced.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import os
import threading
from collections.abc import Callable, Iterator
from typing import TypeVar

import cv2

from edge_sdk.errors import SourceError

log = logging.getLogger("edge_sdk.sources")

T = TypeVar("T")

#: How often a waiting open looks at the stop event, seconds.
STOP_POLL_S = 0.05

#: The variable OpenCV's FFmpeg backend takes FFmpeg's log level from (read once, see quiet_ffmpeg).
FFMPEG_LOGLEVEL_VAR = "OPENCV_FFMPEG_LOGLEVEL"
#: FFmpeg's AV_LOG_FATAL: only messages about to abort the process get through.
_AV_LOG_FATAL = "8"

_stop_event: contextvars.ContextVar[threading.Event | None] = contextvars.ContextVar(
    "edge_sdk_source_stop", default=None
)


class OpenInterrupted(SourceError):
    """A source's open was abandoned because a stop was requested (see `stoppable_opens`)."""


@contextlib.contextmanager
def stoppable_opens(stop: threading.Event) -> Iterator[None]:
    """Let `stop` cut short the network sources opened in the block, on this thread.

    A context variable rather than a source option: the sources are opened deep inside
    `Pipeline` and `Capture`, which need not know about it, and a thread (or task) of its own
    is not affected. Opens of built-in network sources (``http://``, ``rtsp://``) inside the
    block raise `OpenInterrupted` within `STOP_POLL_S` of `stop` being set.
    """
    token = _stop_event.set(stop)
    try:
        yield
    finally:
        _stop_event.reset(token)


def open_stoppably(
    opener: Callable[[], T],
    *,
    what: str,
    discard: Callable[[T], object],
    wake: Callable[[], object] | None = None,
) -> T:
    """Return ``opener()``, given up as soon as the `stoppable_opens` event is set.

    Outside a `stoppable_opens` block this is just ``opener()``. Inside, `opener` runs in a
    daemon thread; if the stop comes first, `wake` is called (to close a socket `opener` blocks
    on, so the thread ends early), `OpenInterrupted` is raised, and what `opener` returns later
    is passed to `discard` (what it raises is dropped: nobody waits for it any more).

    Args:
        opener: The blocking open; returns what was opened.
        what: The source for the message, e.g. ``http://host:8080/stream``.
        discard: Releases what `opener` returned after the caller gave up on it.
        wake: Makes a blocked `opener` return early; called from the waiting thread.

    Raises:
        OpenInterrupted: the stop came before `opener` returned.
        Exception: whatever `opener` raised, if it came first.
    """
    stop = _stop_event.get()
    if stop is None:
        return opener()
    interrupted = OpenInterrupted(f"gave up opening {what}: a stop was requested")
    if stop.is_set():
        raise interrupted
    lock = threading.Lock()
    done = threading.Event()
    outcome: list[tuple[T | None, BaseException | None]] = []
    abandoned = False

    def run() -> None:
        try:
            result: tuple[T | None, BaseException | None] = (opener(), None)
        except BaseException as exc:  # noqa: BLE001 - handed to the waiting thread
            result = (None, exc)
        with lock:
            if not abandoned:
                outcome.append(result)
                done.set()
                return
        value, _error = result
        if value is not None:
            try:
                discard(value)
            except Exception:  # nobody to report to but the log
                log.debug("releasing the abandoned open of %s failed", what, exc_info=True)

    threading.Thread(target=run, name="edge-source-open", daemon=True).start()
    # Event.wait returns to Python on a signal, so the caller's signal handlers run meanwhile.
    while not done.wait(STOP_POLL_S):
        if stop.is_set():
            with lock:
                abandoned = not outcome
            if abandoned:
                if wake is not None:
                    wake()
                raise interrupted
    value, error = outcome[0]
    if error is not None:
        raise error
    return value  # type: ignore[return-value]  # None only when opener raised


def _library_logs_wanted() -> bool:
    return log.isEnabledFor(logging.DEBUG)


_quiet_lock = threading.Lock()
_quiet_depth = 0
_quiet_saved = 0


@contextlib.contextmanager
def quiet_opencv() -> Iterator[None]:
    """Silence OpenCV's own log (``[ WARN:0@...] global ...``) for the block, then restore it.

    The level is process-wide, so overlapping blocks (several sources opening at once) share
    one silence: the first saves the level, the last puts it back. Messages other threads log
    meanwhile are lost too, which is why it covers opens and undecodable images only, whose
    failures edge-sdk reports itself. Does nothing when the ``edge_sdk.sources`` logger is at
    DEBUG.
    """
    global _quiet_depth, _quiet_saved
    if _library_logs_wanted():
        yield
        return
    with _quiet_lock:
        if _quiet_depth == 0:
            _quiet_saved = cv2.utils.logging.getLogLevel()
            cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)
        _quiet_depth += 1
    try:
        yield
    finally:
        with _quiet_lock:
            _quiet_depth -= 1
            if _quiet_depth == 0:
                cv2.utils.logging.setLogLevel(_quiet_saved)


_ffmpeg_level_chosen = False


def quiet_ffmpeg() -> None:
    """Keep FFmpeg's own error lines (``moov atom not found``, ``[tcp @ 0x..] Connection ...
    failed``) off stderr; call it before every FFmpeg open.

    FFmpeg's log level cannot be set from Python: OpenCV sets it from $OPENCV_FFMPEG_LOGLEVEL
    once, when the first FFmpeg capture of the process opens, and never again (OpenCV 5.0). So
    this sets the variable to AV_LOG_FATAL before that open, and only then: a value the user
    set is kept, and once OpenCV has read it, changing it would do nothing. Errors FFmpeg
    prints while *reading* (a damaged H.264 frame) are silenced along with the open's; set
    ``OPENCV_FFMPEG_LOGLEVEL=16`` (AV_LOG_ERROR) or run with ``--log-level debug`` to see them.
    Without effect if something in the process opened an FFmpeg capture or writer before.
    """
    global _ffmpeg_level_chosen
    if _ffmpeg_level_chosen:
        return
    _ffmpeg_level_chosen = True
    if FFMPEG_LOGLEVEL_VAR not in os.environ and not _library_logs_wanted():
        os.environ[FFMPEG_LOGLEVEL_VAR] = _AV_LOG_FATAL
