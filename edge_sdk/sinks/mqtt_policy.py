"""When the MQTT sink publishes: every prediction, on a label change, and/or every N seconds."""

from __future__ import annotations

_UNSET = object()


class PublishPolicy:
    """Decides, prediction by prediction, whether one is published.

    With neither `on_change` nor `interval`, every prediction is published. Otherwise a prediction
    is published when either rule fires:

    * on change: the top label has been the same for `hysteresis` consecutive predictions (so one
      odd frame does not flip the state) and differs from the label last published, and at least
      `min_interval` seconds have passed since the last publication. A change held back by
      `min_interval` goes out with the first prediction after it, if the label still holds.
    * every `interval` seconds: the current prediction, whatever its label (a heartbeat, and the
      way a consumer sees the scores move while the label stays).

    Args:
        on_change: Publish when the (stable) top label changes.
        hysteresis: Predictions in a row a new label needs before it counts as a change (>= 1).
        min_interval: Seconds between two publications caused by changes (>= 0).
        interval: Seconds between heartbeat publications; 0 switches heartbeats off.

    Raises:
        ValueError: a negative interval or a hysteresis below 1.
    """

    def __init__(
        self,
        *,
        on_change: bool = False,
        hysteresis: int = 3,
        min_interval: float = 1.0,
        interval: float = 0.0,
    ) -> None:
        if hysteresis < 1:
            raise ValueError(f"hysteresis must be >= 1, got {hysteresis}")
        if min_interval < 0:
            raise ValueError(f"min_interval must be >= 0 seconds, got {min_interval}")
        if interval < 0:
            raise ValueError(f"interval must be >= 0 seconds (0 = off), got {interval}")
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

    def decide(self, label: str | None, now: float) -> bool:
        """Feed one prediction's top label (None when nothing passed the threshold).

        Args:
            label: The prediction's top label name.
            now: A monotonic time in seconds.

        Returns:
            Whether to publish this prediction. When True, the policy records it as published.
        """
        if self.every:
            return True
        if label == self._candidate:
            self._streak += 1
        else:
            self._candidate, self._streak = label, 1
        if self._streak >= self.hysteresis:
            self._stable = self._candidate
        since = None if self._last_time is None else now - self._last_time
        publish = False
        if (
            self.on_change
            and self._stable is not _UNSET
            and self._stable != self._published
            and (since is None or since >= self.min_interval)
        ):
            publish = True
        if self.interval > 0 and (since is None or since >= self.interval):
            publish = True
        if publish:
            self._published = label
            self._last_time = now
        return publish
