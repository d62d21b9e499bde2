"""When the MQTT sink publishes: every prediction, on a label change, and/or every N seconds."""

from __future__ import annotations

from edge_sdk.checks import check_int, check_number

_UNSET = object()


class PublishPolicy:
    """Decides, prediction by prediction, whether one is published.

    With neither `on_change` nor `interval`, every prediction is published. Otherwise a prediction
    is published when either rule fires:

    * on change: the top label has been the same for `hysteresis` consecutive predictions (so one
      odd frame does not flip the state) and differs from the label last published, and at least
      `min_interval` seconds have passed since the last publication. A change held back by
      `min_interval` goes out with the first prediction after it that still shows the stable
      label; a flicker frame in between is never published as the change.
    * every `interval` seconds: the current prediction, whatever its label (a heartbeat, and the
      way a consumer sees the scores move while the label stays). A heartbeat that happens to
      carry a flicker label does not count as publishing that label, so the next frame is not
      taken for a change back (the consumer shows the flicker until the next publication).

    Args:
        on_change: Publish when the (stable) top label changes.
        hysteresis: Predictions in a row a new label needs before it counts as a change (>= 1).
        min_interval: Seconds from the previous publication (of any kind, heartbeats included)
            before a change may be published (>= 0).
        interval: Seconds between heartbeat publications; 0 switches heartbeats off.

    Raises:
        TypeError: a number of the wrong type (``interval="60"``).
        ValueError: a negative, NaN or infinite interval, or a hysteresis below 1.
    """

    def __init__(
        self,
        *,
        on_change: bool = False,
        hysteresis: int = 3,
        min_interval: float = 1.0,
        interval: float = 0.0,
    ) -> None:
        check_int("hysteresis", hysteresis, low=1)
        check_number("min_interval", min_interval, low=0)
        check_number("interval", interval, low=0)
        self.on_change = on_change
        self.hysteresis = hysteresis
        self.min_interval = min_interval
        self.interval = interval
        self.every = not on_change and interval == 0
        self._candidate: object = _UNSET
        self._streak = 0
        self._stable: object = _UNSET
        self._published: object = _UNSET
        self._last_time: float | None = None
        self._before_last: tuple[object, float | None] = (_UNSET, None)

    def decide(self, label: str | None, now: float) -> bool:
        """Feed one prediction's top label (None when nothing passed the threshold).

        Args:
            label: The prediction's top label name.
            now: A monotonic time in seconds.

        Returns:
            Whether to publish this prediction. When True, the policy counts its intervals from
            `now`, and records the label as published only if it is the stable one.
        """
        if self.every:
            return True
        if label == self._candidate:
            self._streak += 1
        else:
            self._candidate, self._streak = label, 1
        if self._streak >= self.hysteresis:
            self._stable = self._candidate
        # This frame shows the stable label: it is not a flicker (or a label still building its
        # streak) while the stable label stays what it was.
        steady = self._stable is not _UNSET and label == self._stable
        since = None if self._last_time is None else now - self._last_time
        change = (
            self.on_change
            and steady
            and self._stable != self._published
            and (since is None or since >= self.min_interval)
        )
        heartbeat = self.interval > 0 and (since is None or since >= self.interval)
        if not (change or heartbeat):
            return False
        # `_published` is the state a consumer last saw. Once a label has been stable, only a
        # frame showing the stable label may move it, or a flicker a heartbeat carried would be
        # "changed back" on the next frame. Before that, a heartbeat's label is the only state
        # there is; counting it keeps the label's becoming stable from repeating it.
        self._before_last = (self._published, self._last_time)
        if steady:
            self._published = self._stable
        elif self._stable is _UNSET:
            self._published = label
        self._last_time = now
        return True

    def not_sent(self) -> None:
        """Take back the last True of `decide`: that prediction never reached the consumer.

        For a prediction the sink then had to drop (queue full, QoS 0 while disconnected):
        the consumer still shows the label before it, so the next frame with the stable label
        is a change to publish again, not a repeat to skip.
        """
        self._published, self._last_time = self._before_last
