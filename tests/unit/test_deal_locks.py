"""The per-deal locks: one command per deal at a time, deals independent, nothing kept afterwards."""

from __future__ import annotations

import threading
import time
from uuid import uuid4

from dealflow.deal_lifecycle.application.deal_locks import DealLocks


def test_one_deal_runs_one_block_at_a_time() -> None:
    locks, deal = DealLocks(), uuid4()
    inside, overlaps = [0], []
    barrier = threading.Barrier(20)

    def run() -> None:
        barrier.wait()
        for _ in range(50):
            with locks.hold(deal):
                inside[0] += 1
                time.sleep(0)  # let another thread in, if the lock would let it
                overlaps.append(inside[0])
                inside[0] -= 1

    threads = [threading.Thread(target=run) for _ in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert set(overlaps) == {1}


def test_another_deal_is_not_held_up() -> None:
    locks, first, second = DealLocks(), uuid4(), uuid4()
    holding, release = threading.Event(), threading.Event()

    def hold_first() -> None:
        with locks.hold(first):
            holding.set()
            release.wait()

    holder = threading.Thread(target=hold_first)
    holder.start()
    holding.wait()
    with locks.hold(second):  # would never return if deals shared a lock
        assert len(locks) == 2
    release.set()
    holder.join()


def test_a_lock_nobody_holds_or_awaits_is_forgotten() -> None:
    locks = DealLocks()
    for _ in range(1000):
        with locks.hold(uuid4()):
            pass
    assert len(locks) == 0
