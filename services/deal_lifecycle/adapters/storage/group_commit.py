"""Group commit: the saves of concurrent commands written in one transaction, with one fsync.

A command's save (its events, read-model row and idempotency receipt) is handed to one committer
thread, which writes every save that is ready, up to `max_batch`, in one transaction: each save
in a savepoint of its own, so one that conflicts (its deal's version taken, its idempotency key
raced) is rolled back and fails alone while the others commit. A save returns only once the
transaction that holds it has committed: an answered command survives a crash, and one whose
transaction did not commit was never answered. While more commands are under way than have
handed in their save, the committer waits for them, at most `wait_seconds`: batches grow under
load, and a lone command never waits. A command alone (no other under way, none queued, no batch
being written) writes its save itself, in its own thread: there is nothing to group it with, and
handing it to the committer thread and back would only add latency.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

@dataclass
class Save:
    """One command's save, waiting for its batch to commit."""

    work: Any  # what the recorder writes for it (its stored events and keyword arguments)
    result: Any = None  # set by the batch's writer: what the save returns (the notification ids)
    error: BaseException | None = None  # set by the batch's writer: this save conflicted and was rolled back
    done: threading.Event = field(default_factory=threading.Event)


# Writes a batch in one transaction, each save in a savepoint: sets each save's result, or its
# error when it conflicted (that save alone is rolled back); raises if the transaction did not commit.
WriteBatch = Callable[[Sequence[Save]], None]


class GroupCommit:
    def __init__(self, write_batch: WriteBatch, *, max_batch: int = 64, wait_seconds: float = 0.002) -> None:
        self.write_batch = write_batch
        self.max_batch = max_batch
        self.wait_seconds = wait_seconds
        self._queue: list[Save] = []
        self._ready = threading.Condition()
        self._in_progress = 0  # commands between their start and their save
        self._thread: threading.Thread | None = None
        self._writing = False  # a batch is being written (by the committer, or by a command alone)
        self._closed = False
        self.batches = 0
        self.saves = 0

    @contextmanager
    def command(self) -> Iterator[None]:
        """Around a command: while it runs, a batch waiting for more may wait for its save."""
        with self._ready:
            self._in_progress += 1
        try:
            yield
        finally:
            with self._ready:
                self._in_progress -= 1
                self._ready.notify_all()

    def save(self, work: Any) -> Any:
        """Write `work` in the next batch; returns once that batch committed (or raises its error)."""
        pending = Save(work)
        with self._ready:
            if self._closed:
                raise RuntimeError("the store is closed")
            alone = not self._queue and not self._writing and self._in_progress <= 1
            if alone:
                self._writing = True
            else:
                self._queue.append(pending)
                self._start()
                self._ready.notify_all()
        if alone:
            try:
                self._write([pending])
            finally:
                with self._ready:
                    self._writing = False
                    self._ready.notify_all()
        else:
            pending.done.wait()
        if pending.error is not None:
            raise pending.error
        return pending.result

    def close(self) -> None:
        with self._ready:
            self._closed = True
            self._ready.notify_all()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def _start(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(target=self._run, name="dealflow-group-commit", daemon=True)
            self._thread.start()

    def _next_batch(self) -> list[Save]:
        with self._ready:
            # Nothing to write, or a command alone is writing its own: one writer at a time, always.
            while not self._queue or self._writing:
                if self._closed and not self._queue:
                    return []
                self._ready.wait()
            deadline = time.monotonic() + self.wait_seconds
            # More commands under way than saves handed in: they will be here in a moment.
            while len(self._queue) < self.max_batch and self._in_progress > len(self._queue):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._ready.wait(remaining)
            batch, self._queue = self._queue[: self.max_batch], self._queue[self.max_batch :]
            self._writing = True
            return batch

    def _run(self) -> None:
        while True:
            batch = self._next_batch()
            if not batch:
                return
            try:
                self._write(batch)
            finally:
                with self._ready:
                    self._writing = False
                    self._ready.notify_all()
            # Answered only now: every save that did not fail is committed.
            for pending in batch:
                pending.done.set()

    def _write(self, batch: list[Save]) -> None:
        """One transaction for the batch; if it did not commit, no save in it stands."""
        try:
            self.write_batch(batch)
        except BaseException as error:  # noqa: BLE001 - each save of the batch fails with it
            for pending in batch:
                pending.result, pending.error = None, error
        else:
            self.batches += 1
            self.saves += len(batch)
