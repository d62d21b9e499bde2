"""Temporal smoothing of class probabilities, so a live label does not flicker.

Top-k and the score threshold are the Classifier's (`Classifier.top_k`, `threshold`); this
module adds what needs more than one frame. A smoother takes each frame's full probability
vector and returns the smoothed one, from which the Classifier picks the top classes as usual:

- `MeanSmoother(n)`: the mean of the last `n` vectors (a box filter; reacts within `n` frames).
- `EmaSmoother(alpha)`: an exponential moving average (``s = alpha * p + (1 - alpha) * s``).

`classify` runs one frame through a Classifier with an optional smoother; the Pipeline uses
it. Smoothing is time spent in ``postprocess`` and is timed there.
"""

from __future__ import annotations

import time
from collections import deque
from typing import Protocol

import numpy as np
import numpy.typing as npt

from edge_sdk.classifier import Classifier
from edge_sdk.types import Frame, Prediction, Timings

FloatArray = npt.NDArray[np.float32]


class Smoother(Protocol):
    """Turns a stream of probability vectors into a steadier one."""

    def update(self, probs: FloatArray) -> FloatArray:
        """Add this frame's probabilities; return the smoothed vector (same shape)."""
        ...

    def reset(self) -> None:
        """Forget the history (e.g. after the scene changed on purpose)."""
        ...


class MeanSmoother:
    """Mean of the last `window` probability vectors.

    A running sum makes each update O(classes) whatever the window. The sum is kept in float64
    so adding and subtracting for hours does not drift.

    Args:
        window: Number of frames averaged; 1 means no smoothing.

    Raises:
        ValueError: `window` < 1.
    """

    def __init__(self, window: int) -> None:
        if window < 1:
            raise ValueError(f"smoothing window must be >= 1, got {window}")
        self.window = window
        self._history: deque[FloatArray] = deque()
        self._sum: npt.NDArray[np.float64] | None = None

    def update(self, probs: FloatArray) -> FloatArray:
        if self._sum is None or self._sum.shape != probs.shape:
            self.reset()
            self._sum = np.zeros(probs.shape, np.float64)
        self._history.append(probs)
        self._sum += probs
        if len(self._history) > self.window:
            self._sum -= self._history.popleft()
        mean: FloatArray = (self._sum / len(self._history)).astype(np.float32)
        return mean

    def reset(self) -> None:
        self._history.clear()
        self._sum = None


class EmaSmoother:
    """Exponential moving average of probability vectors.

    Args:
        alpha: Weight of the newest frame, in (0, 1]; 1 means no smoothing. About
            ``2 / (n + 1)`` behaves like a mean over `n` frames.

    Raises:
        ValueError: `alpha` outside (0, 1].
    """

    def __init__(self, alpha: float) -> None:
        if not 0.0 < alpha <= 1.0:
            raise ValueError(f"alpha must be within (0, 1], got {alpha}")
        self.alpha = alpha
        self._state: FloatArray | None = None

    def update(self, probs: FloatArray) -> FloatArray:
        if self._state is None or self._state.shape != probs.shape:
            self._state = probs.astype(np.float32, copy=True)
        else:
            self._state = (self.alpha * probs + (1.0 - self.alpha) * self._state).astype(np.float32)
        return self._state

    def reset(self) -> None:
        self._state = None


def make_smoother(smoothing: int | Smoother | None) -> Smoother | None:
    """Turn the Pipeline's ``smoothing`` argument into a smoother.

    None, 0 or 1 mean none; an int N > 1 is `MeanSmoother(N)`; anything else is used as is.

    Raises:
        ValueError: a negative int.
        TypeError: neither an int nor an object with ``update`` and ``reset``.
    """
    if smoothing is None:
        return None
    if isinstance(smoothing, bool):
        raise TypeError("smoothing must be a frame count or a Smoother, not a bool")
    if isinstance(smoothing, int):
        if smoothing < 0:
            raise ValueError(f"smoothing must be >= 0 frames, got {smoothing}")
        return MeanSmoother(smoothing) if smoothing > 1 else None
    if not (hasattr(smoothing, "update") and hasattr(smoothing, "reset")):
        raise TypeError(f"smoothing must be an int or a Smoother, got {type(smoothing).__name__}")
    return smoothing


def classify(classifier: Classifier, frame: Frame, smoother: Smoother | None = None) -> Prediction:
    """Classify one frame, smoothing its probabilities over time when a smoother is given.

    Without a smoother this is exactly ``classifier.classify(frame)``. With one, it runs the
    Classifier's three public stages itself so the smoother sees the full probability vector.
    """
    if smoother is None:
        return classifier.classify(frame)
    t0 = time.perf_counter_ns()
    tensor = classifier.preprocess(frame.image)
    t1 = time.perf_counter_ns()
    output = classifier.runtime.run(tensor)
    t2 = time.perf_counter_ns()
    top = classifier.top(smoother.update(classifier.probabilities(output)))
    t3 = time.perf_counter_ns()
    return Prediction(
        frame_index=frame.index,
        timestamp_ns=frame.timestamp_ns,
        top=top,
        timings=Timings(
            preprocess=(t1 - t0) / 1e6, inference=(t2 - t1) / 1e6, postprocess=(t3 - t2) / 1e6
        ),
        model=classifier.card.name,
        file=frame.file,
    )
