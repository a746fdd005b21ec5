"""Durations as people write them: one number and one unit, `90m`, `36h`, `14d`, `2s`.

One reading for every place a duration comes from outside (a token's lifetime, and the policy's
deadlines): anything else is refused with what was expected, never guessed at.
"""

from __future__ import annotations

import re
from datetime import timedelta

_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}
_DURATION = re.compile(r"([0-9]{1,9})([smhd])")
# Longer than anything a deadline or a token needs, and well inside what a timedelta holds.
MAX_DAYS = 3650


class DurationError(ValueError):
    """Not one number and one unit (s, m, h, d), or zero, or over ten years."""


def parse_duration(text: str) -> timedelta:
    match = _DURATION.fullmatch(text.strip()) if isinstance(text, str) else None
    if match is None:
        raise DurationError(f"must be one number and one unit (s, m, h or d), e.g. 90m, 36h, 14d; not {str(text)[:40]!r}")
    duration = timedelta(**{_UNITS[match[2]]: int(match[1])})
    if duration <= timedelta(0) or duration > timedelta(days=MAX_DAYS):
        raise DurationError(f"must be more than 0 and at most {MAX_DAYS} days; not {text.strip()!r}")
    return duration


def format_duration(duration: timedelta) -> str:
    """A duration as it is written: one number and the largest unit that says it exactly (`36h`, not `1d12h`)."""
    seconds = int(duration.total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds and seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"
