"""The one clock of the deal service: when facts happen, what "today" is, and when deadlines fall due.

Everything that asks the time asks this clock, so a test can move it (ManualClock) and see
fourteen days pass in a moment, with no `sleep` and no patching of the standard library.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Protocol


class Clock(Protocol):
    def now(self) -> datetime:
        """The time now, aware, in UTC."""

    def on_change(self, listener: Callable[[], None]) -> None:
        """Call `listener` whenever the clock is set other than by time passing (a ManualClock moved)."""


class SystemClock:
    """The time as the machine keeps it."""

    def now(self) -> datetime:
        return datetime.now(UTC)

    def on_change(self, listener: Callable[[], None]) -> None:
        """Real time only passes: nothing to listen to."""


class ManualClock:
    """A clock that stands still until moved: `advance(timedelta(days=15))`. Whoever waits on a
    moment (the scheduler) is told when it moves, from whichever thread moves it."""

    def __init__(self, start: datetime | None = None) -> None:
        self._now = start or datetime.now(UTC)
        self._lock = threading.Lock()
        self._listeners: list[Callable[[], None]] = []

    def now(self) -> datetime:
        with self._lock:
            return self._now

    def advance(self, by: timedelta) -> datetime:
        with self._lock:
            self._now += by
            moved = self._now
        self._changed()
        return moved

    def set(self, moment: datetime) -> None:
        with self._lock:
            self._now = moment
        self._changed()

    def on_change(self, listener: Callable[[], None]) -> None:
        self._listeners.append(listener)

    def _changed(self) -> None:
        for listener in list(self._listeners):
            listener()
