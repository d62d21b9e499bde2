"""Argument checks shared by the public constructors.

Each check raises TypeError for a value of the wrong kind and ValueError for one out of range,
with the argument's name in the message, so a mistake shows where it was made instead of as a
``'<' not supported`` or a wrong answer further down. bool is refused where a number is asked
for (``top_k=True`` is a mistake, not 1), NaN everywhere (it passes every comparison).
"""

from __future__ import annotations

import math
import numbers
from typing import Any


def _range_text(low: float | None, high: float | None, low_open: bool) -> str:
    above = f"> {low}" if low_open else f">= {low}"
    if low is not None and high is not None:
        return f"within {'(' if low_open else '['}{low}, {high}]"
    return above if low is not None else f"<= {high}"


def check_int(name: str, value: Any, *, low: int | None = None, high: int | None = None) -> int:
    """Return `value` as an int if it is an integer within [`low`, `high`].

    numpy integers are accepted; floats are not, even whole ones (``2.0`` threads is a slip).

    Raises:
        TypeError: not an integer.
        ValueError: outside the bounds.
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer, got {value!r} ({type(value).__name__})")
    number = int(value)
    if (low is not None and number < low) or (high is not None and number > high):
        raise ValueError(f"{name} must be {_range_text(low, high, False)}, got {number}")
    return number


def check_number(
    name: str,
    value: Any,
    *,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
) -> float:
    """Return `value` as a float if it is a finite real number within the bounds.

    The lower bound is inclusive unless `low_open`; the upper one always is.

    Raises:
        TypeError: not a real number.
        ValueError: NaN, infinite, or outside the bounds.
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a number, got {value!r} ({type(value).__name__})")
    try:
        number = float(value)
    except OverflowError:  # an int of hundreds of digits (TOML reads one as is)
        raise ValueError(f"{name} must be {_range_text(low, high, low_open)}, got a number of "
                         f"{len(str(value))} digits") from None
    if not math.isfinite(number):
        raise ValueError(f"{name} must be a finite number, got {number}")
    too_low = low is not None and (number <= low if low_open else number < low)
    if too_low or (high is not None and number > high):
        raise ValueError(f"{name} must be {_range_text(low, high, low_open)}, got {number}")
    return number


__all__ = ["check_int", "check_number"]
