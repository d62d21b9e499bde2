"""`ClosableSink`: what every built-in sink does about being closed."""

from __future__ import annotations

from edge_sdk.errors import SinkError
from edge_sdk.protocols import Closing


class ClosableSink(Closing):
    """Mixin for the built-in sinks: a `closed` flag, and the refusal a publish after close gets.

    A Pipeline closes its sinks when it stops and refuses a closed one (see docs/pipeline.md),
    so a sink reused by mistake fails loudly instead of dropping what it is given. A subclass
    sets ``self._closed = True`` in its ``close()`` and calls `_refuse_if_closed` first thing
    in ``publish()``.
    """

    _closed = False

    @property
    def closed(self) -> bool:
        """True once `close` was called; a closed sink refuses `publish` (make a new one)."""
        return self._closed

    def _refuse_if_closed(self, what: str) -> None:
        """Raise SinkError "`what` is closed; make a new <class>" once the sink is closed."""
        if self._closed:
            raise SinkError(f"{what} is closed; make a new {type(self).__name__}")
