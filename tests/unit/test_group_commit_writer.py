"""GroupCommit on its own (a writer the test holds): one writer at a time, batches under load, and a
command alone writing its save in its own thread."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence

from dealflow.deal_lifecycle.adapters.storage.group_commit import GroupCommit, Save


class Writer:
    """Records who wrote each batch and how many wrote at once; takes `seconds` a batch."""

    def __init__(self, seconds: float = 0.0) -> None:
        self.seconds = seconds
        self.batches: list[tuple[str, list[int]]] = []
        self.writing = 0
        self.most_at_once = 0
        self.lock = threading.Lock()

    def __call__(self, batch: Sequence[Save]) -> None:
        with self.lock:
            self.writing += 1
            self.most_at_once = max(self.most_at_once, self.writing)
        time.sleep(self.seconds)
        for save in batch:
            save.result = save.work
        with self.lock:
            self.writing -= 1
            self.batches.append((threading.current_thread().name, [save.work for save in batch]))


def test_a_command_alone_writes_its_save_in_its_own_thread() -> None:
    writer = Writer()
    group = GroupCommit(writer, wait_seconds=1.0)
    try:
        with group.command():
            started = time.monotonic()
            assert group.save(7) == 7
        assert time.monotonic() - started < 0.5  # it waited for no one
        assert writer.batches == [(threading.current_thread().name, [7])]
    finally:
        group.close()


def test_concurrent_saves_are_batched_and_never_written_two_at_a_time() -> None:
    writer = Writer(seconds=0.01)
    group = GroupCommit(writer, max_batch=64, wait_seconds=0.005)
    start = threading.Barrier(32)
    results: list[object] = [None] * 32

    def command(n: int) -> None:
        start.wait()
        with group.command():
            results[n] = group.save(n)

    threads = [threading.Thread(target=command, args=(n,)) for n in range(32)]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
    finally:
        group.close()
    assert results == list(range(32))  # each got its own save's result
    assert sorted(n for _, saves in writer.batches for n in saves) == list(range(32))  # each written once
    assert writer.most_at_once == 1
    assert len(writer.batches) < 32  # grouped


def test_a_batch_that_fails_fails_each_of_its_saves_and_the_next_batch_goes_on() -> None:
    calls = []

    def failing_once(batch: Sequence[Save]) -> None:
        calls.append([save.work for save in batch])
        if len(calls) == 1:
            raise OSError("disk full")
        for save in batch:
            save.result = save.work

    group = GroupCommit(failing_once)
    try:
        try:
            group.save("first")
        except OSError as error:
            assert str(error) == "disk full"
        else:
            raise AssertionError("the failed batch's save did not fail")
        assert group.save("second") == "second"
    finally:
        group.close()
