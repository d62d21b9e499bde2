"""A newest-wins mailbox: one writer, any number of readers, nobody ever waits for a reader."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Generic, TypeVar

T = TypeVar("T")


class LatestValue(Generic[T]):
    """Holds only the newest value, numbered, and wakes the readers waiting for a newer one.

    The writer's `put` takes the lock only to swap a reference, so a slow reader can never hold
    it up; a reader that falls behind simply gets the newest value next and skips the rest.
    Readers register with `reading()` so the writer can tell whether anyone is watching.

    Args:
        forget_when_unwatched: Drop the value when the last reader leaves, so the next reader
            does not start with a stale one (e.g. a camera image from minutes ago).
    """

    def __init__(self, *, forget_when_unwatched: bool = False) -> None:
        self._cond = threading.Condition()
        self._value: T | None = None
        self._seq = 0
        self._readers = 0
        self._closed = False
        self._forget = forget_when_unwatched

    @property
    def readers(self) -> int:
        """How many readers are registered now (a plain read: exactness is not needed)."""
        return self._readers

    @property
    def closed(self) -> bool:
        return self._closed

    def put(self, value: T) -> None:
        """Replace the value and wake every waiting reader."""
        with self._cond:
            self._value = value
            self._seq += 1
            self._cond.notify_all()

    def get(self) -> tuple[int, T | None]:
        """Return the current sequence number and value (None before the first `put`)."""
        with self._cond:
            return self._seq, self._value

    def wait_newer(self, after: int, timeout: float) -> tuple[int, T] | None:
        """Wait up to `timeout` s for a value numbered above `after`; None on timeout or close."""
        with self._cond:
            self._cond.wait_for(
                lambda: self._closed or (self._seq > after and self._value is not None), timeout
            )
            if self._closed or self._seq <= after or self._value is None:
                return None
            return self._seq, self._value

    @contextmanager
    def reading(self) -> Iterator[None]:
        """Count the caller as a reader for the duration of the ``with`` block."""
        with self._cond:
            self._readers += 1
        try:
            yield
        finally:
            with self._cond:
                self._readers -= 1
                if self._readers == 0 and self._forget:
                    self._value = None

    def close(self) -> None:
        """Wake every reader for good; later waits return None at once."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
