"""One lock per deal, so a process runs one command on a deal at a time.

Commands on one deal that arrive together then queue instead of racing for the same
version in the store (where all but one would lose). Only deals with a command running
or waiting hold a lock: the table keeps weak references, and a lock nobody holds or
waits for goes away, so memory does not grow with the number of deals ever touched.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Hashable, Iterator
from contextlib import contextmanager


class _Lock:
    # Locks cannot be weakly referenced; this holder can.
    __slots__ = ("__weakref__", "lock")

    def __init__(self) -> None:
        # Re-entrant: a command that ever ran another on its own deal must not hang on itself.
        self.lock = threading.RLock()


class DealLocks:
    def __init__(self) -> None:
        self._guard = threading.Lock()
        self._locks: weakref.WeakValueDictionary[Hashable, _Lock] = weakref.WeakValueDictionary()

    @contextmanager
    def hold(self, deal_id: Hashable) -> Iterator[None]:
        """Run the block while no other thread of this process runs one for the same deal."""
        with self._guard:
            held = self._locks.get(deal_id)
            if held is None:
                held = self._locks[deal_id] = _Lock()
        # `held` stays referenced while this thread waits or holds it, so the entry lives as long as needed.
        with held.lock:
            yield

    def __len__(self) -> int:
        """How many deals have a command running or waiting (for tests and diagnostics)."""
        return len(self._locks)
