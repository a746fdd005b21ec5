"""The scheduler: when a deadline passes, the deal records it, once.

The schedule is the read model's: each deal's row says what its pending deadlines count from
(deadlines.due_from), written with the deal's events, so it is rebuilt from the log with the
rest of the read model. The policy's durations are added when the schedule is read, so a new
policy reschedules every deal without rewriting one. The scheduler sleeps until the earliest
due moment (or until a command may have brought one nearer), then has each due deal keep time
(DealService.keep_time) and sleeps again: it never scans every deal on a timer.

One process at a time drives it per store, elected like the relay; the others stand by. It is
exactly once without the election, too: a deal records a deadline only if it has not already
(the deal remembers), and a second writer loses the version race and runs again on the winner's
facts. On start it catches up: whatever fell due while no scheduler ran is recorded at once, with
the moment it was due.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import timedelta
from typing import Protocol
from uuid import UUID

import structlog

from dealflow.deal_lifecycle.application.clock import Clock
from dealflow.deal_lifecycle.application.service import DealService
from dealflow.deal_lifecycle.domain import deadlines
from dealflow.deal_lifecycle.domain.errors import DealflowError
from dealflow.event_loop import first_of

log = structlog.get_logger("dealflow.scheduler")

# How many due deals are read from the schedule at a time.
BATCH = 200
# The longest it sleeps without looking at the schedule again. Commands in this process wake it at
# once; a command in another process (another worker, another instance) can bring a due moment
# nearer than the one it sleeps towards, so it looks again this often, and more often when the
# policy's shortest duration is shorter (a `2s` deadline is noticed within a second).
MAX_RECHECK_SECONDS = 30.0
MIN_RECHECK_SECONDS = 0.5


class Leadership(Protocol):
    async def acquire(self, stop: asyncio.Event) -> bool: ...

    async def still_leading(self) -> bool: ...

    async def release(self) -> None: ...


class Scheduler:
    def __init__(self, deals: DealService, clock: Clock | None = None) -> None:
        self.deals = deals
        self.clock = clock or deals.clock
        self.recheck_seconds = recheck_seconds(deals)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._woken = asyncio.Event()
        self.leading = False
        self.passes = 0  # looks at the schedule made while leading: what a test waits on, instead of sleeping

    def wake(self) -> None:
        """Look at the schedule again now (from any thread): a command changed a deal, or the clock moved."""
        if self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._woken.set)

    async def run(self, stop: asyncio.Event, leadership: Leadership) -> None:
        """Keep time while leading; stand by while another process leads."""
        self._loop = asyncio.get_running_loop()
        self.deals.on_recorded(self.wake)
        self.clock.on_change(self.wake)
        try:
            while await leadership.acquire(stop):
                self.leading = True
                try:
                    await self._lead(stop, leadership)
                finally:
                    self.leading = False
                    await leadership.release()
        finally:
            self.deals.remove_recorded_listener(self.wake)

    async def _lead(self, stop: asyncio.Event, leadership: Leadership) -> None:
        log.info("scheduler leading", recheck_seconds=self.recheck_seconds)
        unscheduled_at = None
        while not stop.is_set():
            if not await leadership.still_leading():
                log.warning("scheduler lost leadership")
                return
            self._woken.clear()
            # Rows without a schedule (a store from before deadlines; an older process still writing during
            # a rolling upgrade) are looked for on taking the lead and then now and again, not on every wake.
            if unscheduled_at is None or self.clock.now() - unscheduled_at >= timedelta(seconds=MAX_RECHECK_SECONDS):
                unscheduled_at = self.clock.now()
                await self._quietly(lambda: self.schedule_unscheduled(stop.is_set))
            caught_up = await self._quietly(lambda: self.catch_up(stop.is_set))
            next_due = await self._quietly(self.deals.next_due)
            self.passes += 1
            wait = self.recheck_seconds
            if caught_up is not None and next_due is not None:
                until_due = (next_due - self.clock.now()).total_seconds()
                # Still due after a pass: a deal that failed (logged); it is tried at the next look, not in a spin.
                if until_due > 0:
                    wait = min(wait, until_due)
            await first_of(stop.wait(), self._woken.wait(), timeout=wait)

    def catch_up(self, stopping: Callable[[], bool] = lambda: False) -> int:
        """Have every deal with something due keep time; returns how many facts were recorded.

        Each deal is asked once per call, so a row the deal does not agree with (it has nothing due)
        is rewritten, not asked about again and again; a deal that fails is logged and the others go on."""
        return self._each(self.deals.due_deals, stopping, "cannot keep time on a deal")[0]

    def schedule_unscheduled(self, stopping: Callable[[], bool] = lambda: False) -> int:
        """Give a schedule to deals whose rows were written before deadlines existed (an upgraded store)."""
        scheduled = self._each(self.deals.unscheduled_deals, stopping, "cannot schedule a deal")[1]
        if scheduled:
            log.info("scheduled deals written before deadlines existed", deals=scheduled)
        return scheduled

    def _each(self, select: Callable[[int], list[UUID]], stopping: Callable[[], bool], failed: str) -> tuple[int, int]:
        """Have each deal `select` gives keep time, once each, until none is left or the scheduler stops:
        (facts recorded, deals kept). Deals that fail come back from `select`, so it is asked for more
        than those each time: failed deals never crowd out the rest."""
        recorded, kept, asked, failures = 0, 0, set(), 0
        while not stopping():
            rows = [deal_id for deal_id in select(failures + BATCH) if deal_id not in asked]
            if not rows:
                break
            for deal_id in rows:
                if stopping():
                    break
                asked.add(deal_id)
                try:
                    recorded += self.deals.keep_time(deal_id)
                    kept += 1
                except Exception as e:  # one deal that cannot be replayed or written: reported, the others go on
                    failures += 1
                    code = e.code if isinstance(e, DealflowError) else type(e).__name__
                    log.error(failed, deal_id=str(deal_id), code=code, reason=str(e))
        return recorded, kept

    async def _quietly(self, work: object) -> object:
        """Run store work in a thread; a store that fails is logged and tried again at the next look."""
        try:
            return await asyncio.to_thread(work)  # type: ignore[arg-type]
        except Exception as e:  # the store unreachable, say: the next look tries again
            log.warning("scheduler cannot read or write the store", error=f"{type(e).__name__}: {e}")
            return None


def recheck_seconds(deals: DealService) -> float:
    shortest = [abs(offset) for offset in deadlines.offsets(deals.policy.deadlines).values() if offset]
    half = min(shortest, default=timedelta(seconds=MAX_RECHECK_SECONDS * 2)).total_seconds() / 2
    return min(MAX_RECHECK_SECONDS, max(MIN_RECHECK_SECONDS, half))
