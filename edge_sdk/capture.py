"""The capture thread and the newest-frame slot between it and inference.

A camera produces frames whether or not anyone is ready for them. `Capture` reads its source
continuously in a thread of its own and leaves only the newest frame in a `LatestFrame` slot, so
inference always works on the freshest image and never on a backlog; what it replaces is counted
as dropped. For sources whose frames arrive as JPEG bytes (MJPEG streams and files, image files),
the slot holds the *encoded* frame and `Capture.get` decodes it: a dropped frame costs no decode.

Files are different: `keep_all` hands out every frame (the reader pushes back instead of
dropping) and `realtime` paces a file to its frame rate, as if a camera were playing it. A live
source that fails or goes quiet is reopened with capped exponential backoff while the consumer
keeps waiting, and frame indices keep increasing across reopenings.

"Goes quiet" covers two cases. Sources with a read timeout of their own (HTTP, RTSP) raise when
it runs out. Others can block in a driver forever (picamera2's ``capture_array``, a GStreamer
appsink): with `stall`, a watchdog thread notices a read that has not returned for that long,
closes the source from its side (which wakes most drivers), and the capture thread reopens it.
Should the read not return even then, that thread is left behind (it is a daemon and drops
whatever it reads later) and a new one takes over, reopening the source with the same backoff.

Example::

    from edge_sdk.capture import Backoff, Capture
    from edge_sdk.sources import open_source

    with Capture(lambda: open_source("http://cam.local/stream", reduce=2), reconnect=Backoff()) as cap:
        while (frame := cap.get(timeout=1.0)) is not None or not cap.finished:
            ...
"""

from __future__ import annotations

import dataclasses
import logging
import random
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Generic, TypeVar

from edge_sdk.errors import SourceContractError, SourceError
from edge_sdk.protocols import FrameSource
from edge_sdk.sources.base import Packet, PacketSource, hide_password, uses_packets
from edge_sdk.sources.opening import stoppable_opens
from edge_sdk.types import Frame

log = logging.getLogger("edge_sdk.capture")

T = TypeVar("T")

SourceFactory = Callable[[], FrameSource]

#: Seconds `Capture.stop` waits for a live source's read or reopen (see there).
_BLOCKED_JOIN_S = 0.5


#: Undecodable JPEG frames in a row after which the source counts as failed.
_CORRUPT_RUN = 30


class LatestFrame(Generic[T]):
    """A hand-over slot between one producer and its consumers.

    By default it holds one item: `put` replaces what is held (counting it in `dropped`) and
    never blocks, so the producer keeps its own pace. With ``keep_all=True`` it is a bounded
    queue of `capacity` items instead: `put` blocks while it is full, so nothing is dropped
    and the producer slows to the consumer's pace.

    Attributes:
        dropped: Items replaced before anyone took them.
        closed: True once `close` was called.
    """

    def __init__(self, *, keep_all: bool = False, capacity: int = 2) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1, not {capacity}")
        self.keep_all = keep_all
        self._capacity = capacity if keep_all else 1
        self._items: deque[T] = deque()
        self._cond = threading.Condition()
        self.dropped = 0
        self.closed = False

    def put(self, item: T, timeout: float | None = None) -> bool:
        """Hand `item` over. Returns False (and keeps nothing) if the slot is closed, or, in
        keep_all mode, if it stayed full for `timeout` seconds."""
        with self._cond:
            if self.keep_all and not self._cond.wait_for(
                lambda: self.closed or len(self._items) < self._capacity, timeout
            ):
                return False
            if self.closed:
                return False
            if not self.keep_all and self._items:
                self._items.clear()
                self.dropped += 1
            self._items.append(item)
            self._cond.notify_all()
            return True

    def get(self, timeout: float | None = None) -> T | None:
        """Take the held item (the oldest, in keep_all mode), waiting up to `timeout` seconds
        (None: until one arrives or the slot is closed).

        Returns None on timeout, or when the slot is closed and empty: check `closed` to tell
        the two apart.
        """
        with self._cond:
            if not self._cond.wait_for(lambda: self._items or self.closed, timeout):
                return None
            if not self._items:
                return None
            item = self._items.popleft()
            self._cond.notify_all()
            return item

    def close(self, *, discard: bool = False) -> None:
        """Stop accepting items and wake every waiter. Items already held are still handed out
        by `get`, unless `discard`."""
        with self._cond:
            self.closed = True
            if discard:
                self._items.clear()
            self._cond.notify_all()

    def __len__(self) -> int:
        with self._cond:
            return len(self._items)


@dataclass(frozen=True)
class Backoff:
    """How a failed live source is reopened: capped exponential delays with jitter.

    Attempt n (from 0) waits ``min(maximum, initial * factor**n)`` seconds, multiplied by a
    random factor in ``[1 - jitter, 1 + jitter]`` so many devices restarting together do not
    hammer a camera or server in step.

    Attributes:
        initial: First delay, seconds.
        maximum: Cap on the delay, seconds.
        factor: Growth per failed attempt.
        jitter: Relative randomisation of each delay, 0 to 1.
        max_attempts: Give up (and end the capture) after this many failed attempts in a row;
            0 tries forever (a service should).
    """

    initial: float = 0.5
    maximum: float = 10.0
    factor: float = 2.0
    jitter: float = 0.2
    max_attempts: int = 0

    def __post_init__(self) -> None:
        if self.initial <= 0 or self.maximum < self.initial or self.factor < 1:
            raise ValueError("Backoff needs 0 < initial <= maximum and factor >= 1")
        if not 0 <= self.jitter < 1 or self.max_attempts < 0:
            raise ValueError("Backoff needs 0 <= jitter < 1 and max_attempts >= 0")

    def delay(self, attempt: int, rng: random.Random | None = None) -> float:
        """Seconds to wait before reopening attempt `attempt` (0-based)."""
        base = min(self.maximum, self.initial * self.factor ** min(attempt, 64))
        spread = (rng or random).uniform(-self.jitter, self.jitter)
        return base * (1.0 + spread)


class Capture:
    """Reads a source in its own thread; `get` returns the newest frame (or every frame).

    Counters (read them from any thread; they only grow):
        frames_in: Frames (or encoded packets) received from the source.
        frames_out: Frames handed out by `get`.
        frames_dropped: Frames never handed out because a newer one replaced them (including
            ones a stream reader skipped undecoded), plus undecodable ones.
        reconnects: Successful reopenings of a failed live source.

    Attributes:
        ended: True when the source ended for good: the end of a file, a live source failing
            with no `reconnect`, or `Backoff.max_attempts` used up. Not set by `stop`.
        error: The last failure of the source, if any.
        last_decode_ms: How long the last `get` spent decoding: the frame it returned and
            any corrupt JPEG it skipped on the way (JPEG sources decode in `get`, on the
            consumer's thread, unless keep_all; 0.0 when nothing was decoded there).
    """

    def __init__(
        self,
        source_or_factory: FrameSource | SourceFactory,
        *,
        keep_all: bool = False,
        realtime: bool = False,
        reconnect: Backoff | None = None,
        stall: float | None = None,
    ) -> None:
        """Prepare the capture (nothing is opened or started until `start`).

        Args:
            source_or_factory: An open source, or a function that opens one. Only a factory
                can be reopened, so `reconnect` needs one.
            keep_all: Hand out every frame; the source waits for the consumer (files).
            realtime: Pace a non-live source to its `fps`, as a camera would deliver it.
            reconnect: Reopen a live source that fails or stalls, with this backoff; None ends
                the capture at the first failure. Ignored for files, whose end is final.
            stall: Seconds one read of a live source may take before the source counts as
                stalled (closed, then reopened or ended as for any failure); None never. Keep
                it above the source's own timeout; a source reporting a frame rate gets at
                least 3 frame intervals whatever `stall` says.

        Raises:
            TypeError: `source_or_factory` is neither a source nor callable.
            ValueError: `reconnect` given with an already open source, or `stall` <= 0.
        """
        if stall is not None and not stall > 0:
            raise ValueError(f"stall must be > 0 seconds or None, not {stall}")
        if isinstance(source_or_factory, FrameSource):
            self._factory: SourceFactory | None = None
            self._source: FrameSource | None = source_or_factory
            if reconnect is not None:
                raise ValueError("reconnect needs a factory, e.g. lambda: open_source(uri)")
        elif callable(source_or_factory):
            self._factory = source_or_factory
            self._source = None
        else:
            raise TypeError(f"expected a FrameSource or a factory, got {type(source_or_factory)}")
        self.keep_all = keep_all
        self.realtime = realtime
        self.reconnect = reconnect
        self.stall = stall
        self.frames_in = 0
        self.frames_out = 0
        self.reconnects = 0
        self.ended = False
        self.error: BaseException | None = None
        self.last_decode_ms = 0.0
        self._skipped_before = 0  # `skipped` of sources already replaced
        self._corrupt = 0
        self._corrupt_run = 0  # undecodable packets in a row, counted by the consumer
        # Set by the consumer once `_CORRUPT_RUN` packets in a row did not decode: the capture
        # thread then treats the source as failed (reopening it, if live).
        self._undecodable: SourceError | None = None
        self._packets = False
        self._slot: LatestFrame[Any] = LatestFrame(keep_all=keep_all)
        self._stop = threading.Event()
        self._opening = False  # the capture thread is inside the factory, reopening
        self._thread: threading.Thread | None = None
        self._rng = random.Random()
        # Carried over when a stuck capture thread is replaced (see _watch).
        self._base = 0  # added to the source's indices so they keep increasing across reopenings
        self._last_index = -1
        # The read in progress, as the watchdog sees it; guarded by _read_lock.
        self._read_lock = threading.Lock()
        self._generation = 0  # of the capture thread in charge; older ones are left behind
        self._read_since: float | None = None  # time.monotonic() the current read began
        self._stalled: SourceError | None = None  # set once that read was declared stalled
        self._stalled_at = 0.0
        self._watchdog: threading.Thread | None = None

    # -- what the source reports ------------------------------------------------------------

    @property
    def source(self) -> FrameSource:
        """The source currently being read (a new object after each reconnect)."""
        if self._source is None:
            raise RuntimeError("the capture has not been started")
        return self._source

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) of the frames, as the source reports it; (0, 0) if unknown."""
        return tuple(getattr(self.source, "size", (0, 0)))  # type: ignore[return-value]

    @property
    def fps(self) -> float:
        """The source's real frame rate; 0.0 if unknown."""
        return float(getattr(self.source, "fps", 0.0))

    @property
    def live(self) -> bool:
        """True for cameras and streams."""
        return bool(getattr(self.source, "live", False))

    @property
    def source_waiting(self) -> float | None:
        """While the source has no input and waits for it by design, when it looks next
        (`time.monotonic()`); else None. A watched folder sets it (see `ImageSource`)."""
        value = getattr(self._source, "waiting", None)
        return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None

    @property
    def frames_dropped(self) -> int:
        skipped = int(getattr(self._source, "skipped", 0))
        return self._slot.dropped + self._skipped_before + skipped + self._corrupt

    @property
    def finished(self) -> bool:
        """True when `get` will never return another frame (ended or stopped, slot empty)."""
        return self._slot.closed and len(self._slot) == 0

    # -- life cycle -------------------------------------------------------------------------

    def start(self) -> Capture:
        """Open the source (if given a factory) and start the capture thread.

        Raises:
            EdgeSDKError: whatever opening the source raises (e.g. SourceError "no camera").
            RuntimeError: started twice.
        """
        if self._thread is not None:
            raise RuntimeError("the capture was already started")
        if self._source is None:
            assert self._factory is not None
            self._source = self._factory()
        self._packets = uses_packets(self._source) and not self.keep_all
        self._thread = threading.Thread(target=self._run, args=(0,), name="edge-capture",
                                        daemon=True)
        self._thread.start()
        if self.stall is not None and self.live:
            self._watchdog = threading.Thread(target=self._watch, name="edge-capture-watchdog",
                                              daemon=True)
            self._watchdog.start()
        return self

    def stop(self, timeout: float = 2.0) -> None:
        """Stop the thread and close the source; `get` returns None from now on.

        The built-in network sources give up a reopen in progress at once (see
        `edge_sdk.sources.opening.stoppable_opens`), and closing a stream wakes a read blocked
        on its socket. A read or reopen that still has not returned within half a second is
        blocked in a driver (FFmpeg's RTSP read, until its timeout): it is not waited for,
        since the thread is a daemon that never keeps the process alive and releases what it
        holds once the call returns. Otherwise the thread gets `timeout` seconds.
        """
        self._stop.set()
        self._slot.close(discard=True)
        if self._source is not None:
            self._source.close()  # also wakes a read blocked on a socket
        thread = self._thread  # read once: the watchdog may replace a stuck one
        if thread is not None and thread is not threading.current_thread():
            opening = self._opening
            blocked = opening or (self.live and self._read_since is not None)
            thread.join(min(timeout, _BLOCKED_JOIN_S) if blocked else timeout)
            if thread.is_alive() and blocked:
                log.info("left the capture thread %s the source; it stops after that",
                         "reopening" if opening else "in a blocked read of")
            elif thread.is_alive():
                log.warning("the capture thread did not stop within %.1f s", timeout)
        if self._watchdog is not None and self._watchdog is not threading.current_thread():
            self._watchdog.join(timeout)

    def __enter__(self) -> Capture:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- the consumer's side ----------------------------------------------------------------

    def get(self, timeout: float | None = None) -> Frame | None:
        """Return the newest frame (the next one, with keep_all), waiting up to `timeout` s.

        Returns None on timeout, at the end of the source, or after `stop`; `finished` tells
        the end apart from a timeout. JPEG sources are decoded here, in the caller's thread.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        self.last_decode_ms = 0.0
        while True:
            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            item = self._slot.get(remaining)
            if item is None:
                return None
            if isinstance(item, Frame):
                self.frames_out += 1
                return item
            packet, source = item  # held undecoded: see _run
            began = time.perf_counter()
            decoded: Frame | None = source.decode(packet)
            self.last_decode_ms += (time.perf_counter() - began) * 1000.0
            if decoded is not None:
                self.frames_out += 1
                self._corrupt_run = 0
                return decoded
            self._corrupt += 1  # a damaged JPEG: wait for the next one
            self._corrupt_run += 1
            if self._corrupt_run == _CORRUPT_RUN and self.live:
                # One damaged frame is noise; a run of them is a camera sending something else
                # (files and folders skip theirs: ImageSource ends once all fail in a row).
                self._undecodable = SourceError(
                    f"{hide_password(source.uri)}: {_CORRUPT_RUN} frames in a row do not decode as "
                    "JPEG; check the camera's stream settings"
                )
                log.warning("%s", self._undecodable)
            if deadline is not None and time.monotonic() >= deadline:
                return None

    def __iter__(self) -> Iterator[Frame]:
        """Yield frames until the source ends or the capture is stopped."""
        while not self.finished:
            frame = self.get(timeout=0.5)
            if frame is not None:
                yield frame

    # -- the capture thread -----------------------------------------------------------------

    def _run(self, generation: int, stalled: SourceError | None = None) -> None:
        """The capture thread: read, stamp, hand over; reopen or end on failure.

        Args:
            generation: This thread's number; once the watchdog bumps `_generation` past it,
                the thread only leaves (without touching the slot or the current source).
            stalled: Begin by recovering from this stall (a thread replacing a stuck one).
        """
        attempt = 0
        paced_from: tuple[float, int] | None = None  # (monotonic time, index) pacing started
        try:
            if stalled is not None:
                assert self._source is not None
                if not self._recover(self._source, stalled, attempt):
                    return
                attempt += 1
            while not self._stop.is_set():
                source = self._source
                assert source is not None
                with self._read_lock:
                    if generation != self._generation:
                        return
                    self._read_since, self._stalled = time.monotonic(), None
                try:
                    undecodable, self._undecodable = self._undecodable, None
                    if undecodable is not None:
                        raise undecodable
                    item = self._read(source)
                    failure: BaseException | None = None
                except Exception as exc:  # noqa: BLE001 - a failing driver must not kill the thread
                    item, failure = None, exc
                with self._read_lock:
                    if generation != self._generation:
                        return  # left behind while stuck: a newer thread has taken over
                    self._read_since = None
                    if self._stalled is not None:  # the watchdog closed the source under us
                        item, failure = None, self._stalled
                if self._stop.is_set():
                    break
                if item is None:
                    if not self._recover(source, failure, attempt):
                        break
                    attempt += 1
                    continue
                attempt = 0
                index = self._base + item.index
                if self.realtime and not self.live:
                    if paced_from is None:
                        paced_from = (time.monotonic(), index)
                    fps = float(getattr(source, "fps", 0.0))
                    if fps > 0:
                        due = paced_from[0] + (index - paced_from[1]) / fps
                        if self._stop.wait(max(0.0, due - time.monotonic())):
                            break
                    item = dataclasses.replace(item, timestamp_ns=time.monotonic_ns())
                if index != item.index:
                    item = dataclasses.replace(item, index=index)
                self._last_index = index
                self.frames_in += 1
                held = (item, source) if self._packets else item
                while not self._slot.put(held, timeout=0.5):
                    if self._slot.closed or self._stop.is_set():
                        break
        finally:
            with self._read_lock:
                current = generation == self._generation
            if current:
                self._slot.close()
                if self._source is not None:
                    self._source.close()

    def _recover(self, source: FrameSource, failure: BaseException | None, attempt: int) -> bool:
        """After a read gave nothing: reopen a live source (True) or end the capture (False)."""
        if failure is not None:
            self.error = failure
        retry = not isinstance(failure, SourceContractError)  # its code would fail again
        if not (retry and self.live and self.reconnect is not None and self._factory):
            self._finish(source, failure)
            return False
        if not self._reopen(source, failure, attempt):
            return False
        self._base = self._last_index + 1
        return True

    def _watch(self) -> None:
        """The watchdog thread (with `stall`): notices a read that blocks for `stall` seconds.

        First it closes the source, which makes most drivers return from the read, and the
        capture thread then recovers as from any failure. If the read still has not returned
        `stall` seconds later, the driver is stuck for good: that thread is left behind and a
        new one recovers instead (reopening may fail while the stuck handle holds the device;
        the backoff keeps trying).
        """
        assert self.stall is not None
        stall = self.stall
        while not self._stop.wait(min(0.25, stall / 4)) and not self._slot.closed:
            now = time.monotonic()
            closing: FrameSource | None = None
            replace: SourceError | None = None
            # A slow camera (a long exposure, a low frame rate) is not a stalled one.
            fps = float(getattr(self._source, "fps", 0.0) or 0.0)
            limit = max(stall, 3.0 / fps) if fps > 0 else stall
            with self._read_lock:
                since = self._read_since
                if since is None or now - since < limit:
                    continue
                if self._stalled is None:
                    closing = self._source
                    uri = hide_password(getattr(closing, "uri", "the source"))
                    stalled = self._stalled = SourceError(
                        f"{uri} delivered no frame for {limit:g} s (its read is blocked); "
                        "check the camera and its cable or stream"
                    )
                    self._stalled_at = now
                elif now - self._stalled_at >= limit:
                    replace = self._stalled
                    self._generation += 1
                    self._read_since = None
                    generation = self._generation
            if closing is not None:
                log.warning("%s; closing it to reopen", stalled)
                try:
                    closing.close()
                except Exception:  # a driver failing to close is still stalled: go on
                    log.warning("closing the stalled source failed", exc_info=True)
            if replace is not None:
                log.error("the read of %s did not return after closing it; leaving that "
                          "thread behind and starting a new one",
                          hide_password(getattr(self._source, "uri", "the source")))
                thread = threading.Thread(target=self._run, args=(generation, replace),
                                          name="edge-capture", daemon=True)
                self._thread = thread
                thread.start()

    def _read(self, source: FrameSource) -> Frame | Packet | None:
        if self._packets:
            assert isinstance(source, PacketSource)
            return source.read_packet()
        return source.read()

    def _finish(self, source: FrameSource, failure: BaseException | None) -> None:
        self.ended = True
        if failure is not None:
            log.error("source %s failed: %s", hide_password(source.uri), failure)
        else:
            log.info("source %s ended", hide_password(source.uri))

    def _reopen(self, old: FrameSource, failure: BaseException | None, attempt: int) -> bool:
        """Close `old` and open a new source, retrying with backoff; False if it gave up."""
        assert self.reconnect is not None and self._factory is not None
        self._skipped_before += int(getattr(old, "skipped", 0))
        old.close()
        why = f"{failure}" if failure is not None else "the stream ended"
        uri = hide_password(old.uri)
        policy = self.reconnect
        while not self._stop.is_set():
            if policy.max_attempts and attempt >= policy.max_attempts:
                log.error("giving up on %s after %d attempts: %s", uri, attempt, why)
                self.ended = True
                return False
            delay = policy.delay(attempt, self._rng)
            log.warning(
                "source %s lost (%s); reconnect attempt %d in %.1f s", uri, why, attempt + 1, delay
            )
            if self._stop.wait(delay):
                return False
            self._opening = True
            try:
                with stoppable_opens(self._stop):  # stop() cuts a hanging connect short
                    new = self._factory()
            except Exception as exc:  # noqa: BLE001 - any failure to reopen is retried
                why = str(exc)
                attempt += 1
                continue
            finally:
                self._opening = False
            if self._stop.is_set():
                new.close()
                return False
            self._source = new
            self._packets = uses_packets(new) and not self.keep_all
            self.reconnects += 1
            log.info("reconnected to %s (attempt %d)", uri, attempt + 1)
            return True
        return False
