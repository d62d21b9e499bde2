"""The shared argument checks: kinds are TypeErrors, ranges ValueErrors, both naming the argument."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from edge_sdk.checks import check_int, check_number


def test_integers_within_bounds_pass_as_int() -> None:
    assert check_int("top_k", 3, low=1) == 3
    assert type(check_int("top_k", np.int64(7), low=1, high=10)) is int


@pytest.mark.parametrize("value", [2.5, 2.0, "3", None, True])
def test_non_integers_are_type_errors(value: Any) -> None:
    with pytest.raises(TypeError, match="top_k must be an integer"):
        check_int("top_k", value, low=1)


def test_integers_out_of_range_are_value_errors() -> None:
    with pytest.raises(ValueError, match=r"num_threads must be within \[1, 64\], got 100000"):
        check_int("num_threads", 100000, low=1, high=64)
    with pytest.raises(ValueError, match="max_frames must be >= 1, got 0"):
        check_int("max_frames", 0, low=1)


def test_numbers_within_bounds_pass_as_float() -> None:
    assert check_number("threshold", 1, low=0.0, high=1.0) == 1.0
    assert check_number("max_fps", np.float32(2.5), low=0.0, low_open=True) == 2.5


@pytest.mark.parametrize("value", ["0.5", None, False, [0.5]])
def test_non_numbers_are_type_errors(value: Any) -> None:
    with pytest.raises(TypeError, match="threshold must be a number"):
        check_number("threshold", value, low=0.0, high=1.0)


@pytest.mark.parametrize(
    "value, message",
    [
        (float("nan"), "max_fps must be a finite number, got nan"),
        (float("inf"), "max_fps must be a finite number, got inf"),
        (0.0, "max_fps must be > 0.0, got 0.0"),
        (-1, "max_fps must be > 0.0, got -1.0"),
    ],
)
def test_nan_infinite_and_out_of_range_numbers_are_value_errors(value: float, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        check_number("max_fps", value, low=0.0, low_open=True)
