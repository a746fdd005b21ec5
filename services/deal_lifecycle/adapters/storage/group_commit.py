"""Group commit: the saves of concurrent commands written in one transaction, with one fsync.

A command's save (its events, read-model row and idempotency receipt) is handed to one committer
thread, which writes every save that is ready, up to `max_batch`, in one transaction: each save
in a savepoint of its own, so one that conflicts (its deal's version taken, its idempotency key
raced) is rolled back and fails alone while the others commit. A save returns only once the
transaction that holds it has committed: an answered command survives a crash, and one whose
transaction did not commit was never answered. While more commands are under way than have
handed in their save, the committer waits for them, at most `wait_seconds`: batches grow under
load, and a lone command never waits.
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
            self._queue.append(pending)
            self._start()
            self._ready.notify_all()
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
            while not self._queue and not self._closed:
                self._ready.wait()
            if not self._queue:
                return []
            deadline = time.monotonic() + self.wait_seconds
            # More commands under way than saves handed in: they will be here in a moment.
            while len(self._queue) < self.max_batch and self._in_progress > len(self._queue):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._ready.wait(remaining)
            batch, self._queue = self._queue[: self.max_batch], self._queue[self.max_batch :]
            return batch

    def _run(self) -> None:
        while True:
            batch = self._next_batch()
            if not batch:
                return
            try:
                self.write_batch(batch)
            except BaseException as error:  # noqa: BLE001 - the transaction did not commit: no save in it stands
                for pending in batch:
                    pending.result, pending.error = None, error
            else:
                self.batches += 1
                self.saves += len(batch)
            # Answered only now: every save that did not fail is committed.
            for pending in batch:
                pending.done.set()
