"""Durations as people write them: one number and one unit, and nothing else."""

from __future__ import annotations

from datetime import timedelta

import pytest

from dealflow.durations import DurationError, parse_duration


@pytest.mark.parametrize(("text", "expected"), [("2s", timedelta(seconds=2)), ("90m", timedelta(minutes=90)), ("36h", timedelta(hours=36)), ("14d", timedelta(days=14)), (" 1h ", timedelta(hours=1))])
def test_one_number_and_one_unit(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize("text", ["", "1", "h", "1.5h", "1h30m", "-1d", "0s", "1w", "1H", "١d", "99999d", "1 h", "P1D"])
def test_anything_else_is_refused_saying_what_is_expected(text: str) -> None:
    with pytest.raises(DurationError, match="must be"):
        parse_duration(text)
