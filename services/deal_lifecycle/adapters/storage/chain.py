"""The store-wide chain's two tables, the same on SQLite and PostgreSQL.

`store_chain` holds one row per entry (integrity.Entry); `store_chain_head` one row with the
latest entry's number and hash, the store's id (named by its checkpoints on NATS) and what
was back-filled on upgrade. Writers take the head under a lock in their own transaction, so
concurrent transactions never fork the chain: on PostgreSQL `SELECT ... FOR UPDATE` on the
head row, on SQLite the database's single writer.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import structlog
from eventsourcing.persistence import StoredEvent

from dealflow.deal_lifecycle.application.integrity import EVENT, GENESIS, RECEIPT, SNAPSHOT, Entry, Head, extend, receipt_content, snapshot_content, stream_key

log = structlog.get_logger("dealflow.store")

Item = tuple[str, str, str]  # kind, key, content


class ChainTables:
    def __init__(self, chain: str, head: str, *, placeholder: str, lock: str) -> None:
        self.chain, self.head, self.p, self.lock = chain, head, placeholder, lock
        # Entries this process chained in committed transactions: tells the checkpoint publisher when N
        # more were written. Counted only after the commit, because the publisher reads it when woken
        # by a commit and compares it with the head it can see; counting uncommitted entries made it
        # believe entries were anchored that it could not see yet.
        self.appended = 0
        self._uncommitted = threading.local()
        self._count_lock = threading.Lock()

    def create_statements(self, bigint: str) -> list[str]:
        return [
            f"CREATE TABLE IF NOT EXISTS {self.chain} (seq {bigint} PRIMARY KEY, kind TEXT NOT NULL, key TEXT NOT NULL, "
            "content TEXT NOT NULL, previous_hash TEXT NOT NULL, hash TEXT NOT NULL, UNIQUE (kind, key))",
            f"CREATE TABLE IF NOT EXISTS {self.head} (id INTEGER PRIMARY KEY CHECK (id = 1), seq {bigint} NOT NULL, "
            "hash TEXT NOT NULL, store_id TEXT NOT NULL, backfilled_entries BIGINT NOT NULL DEFAULT 0, backfilled_at TEXT)",
        ]

    def locked_head(self, cursor: Any) -> Head:
        cursor.execute(f"SELECT seq, hash, store_id, backfilled_entries, backfilled_at FROM {self.head} WHERE id = 1{self.lock}")
        row = cursor.fetchone()
        if row is None:
            # The head row is created on open (create_table); a store opened without it cannot chain.
            raise RuntimeError("the store-wide chain has no head row: open the store with table creation on")
        return _head(row)

    def append(self, cursor: Any, items: Sequence[Item]) -> None:
        if not items:
            return
        head = self.locked_head(cursor)
        entries = extend(head.seq, head.hash, items)
        p = self.p
        cursor.executemany(
            f"INSERT INTO {self.chain} (seq, kind, key, content, previous_hash, hash) VALUES ({p}, {p}, {p}, {p}, {p}, {p})",
            [(e.seq, e.kind, e.key, e.content, e.previous_hash, e.hash) for e in entries],
        )
        cursor.execute(f"UPDATE {self.head} SET seq = {p}, hash = {p} WHERE id = 1", (entries[-1].seq, entries[-1].hash))
        self._uncommitted.count = getattr(self._uncommitted, "count", 0) + len(entries)

    def mark(self) -> int:
        """How many entries this thread's open transaction has chained so far (see rewind)."""
        return getattr(self._uncommitted, "count", 0)

    def rewind(self, mark: int) -> None:
        """A savepoint was rolled back: its entries were never written."""
        self._uncommitted.count = mark

    @contextmanager
    def counting(self) -> Iterator[None]:
        """Around one write transaction: what it chained is counted in `appended` once it committed."""
        self._uncommitted.count = 0
        try:
            yield
            with self._count_lock:
                self.appended += self._uncommitted.count
        finally:
            self._uncommitted.count = 0

    def start(self, cursor: Any, existing: Callable[[], Iterable[Item]]) -> None:
        """Once per store, on open: the head row, and every entry already stored chained as found now.

        `existing` is read only once the head row is written (so under the store's write lock: a
        process opening the store at the same moment waits instead of finding the store changed
        under its read) and only if the store was never chained (not on every open)."""
        p = self.p
        cursor.execute(
            f"INSERT INTO {self.head} (id, seq, hash, store_id) VALUES (1, 0, {p}, {p}) ON CONFLICT (id) DO NOTHING",
            (GENESIS, str(uuid.uuid4())),
        )
        head = self.locked_head(cursor)
        if head.backfilled_at is not None:
            return
        items = list(existing())
        self.append(cursor, items)
        cursor.execute(
            f"UPDATE {self.head} SET backfilled_entries = {p}, backfilled_at = {p} WHERE id = 1",
            (len(items), datetime.now(UTC).isoformat(timespec="seconds")),
        )

    def select_head(self, cursor: Any) -> Head | None:
        cursor.execute(f"SELECT seq, hash, store_id, backfilled_entries, backfilled_at FROM {self.head} WHERE id = 1")
        row = cursor.fetchone()
        return None if row is None else _head(row)

    def select_entries(self, cursor: Any) -> list[Entry]:
        cursor.execute(f"SELECT seq, kind, key, content, previous_hash, hash FROM {self.chain} ORDER BY seq")
        return [Entry(*_values(row, ("seq", "kind", "key", "content", "previous_hash", "hash"))) for row in cursor.fetchall()]

    def select_content(self, cursor: Any, kind: str, key: str) -> str | None:
        cursor.execute(f"SELECT content FROM {self.chain} WHERE kind = {self.p} AND key = {self.p}", (kind, key))
        row = cursor.fetchone()
        return None if row is None else _values(row, ("content",))[0]


def _values(row: Any, names: tuple[str, ...]) -> tuple[Any, ...]:
    # sqlite3.Row and psycopg's dict rows both answer by name.
    return tuple(row[name] for name in names)


def _head(row: Any) -> Head:
    seq, hash_, store_id, backfilled, at = _values(row, ("seq", "hash", "store_id", "backfilled_entries", "backfilled_at"))
    return Head(int(seq), hash_, store_id, int(backfilled), at)


def event_items(links: Iterable[tuple[str, int, str, str]]) -> list[Item]:
    """Entries for hash-chain rows (originator id, version, previous hash, hash) as links_for makes them."""
    return [(EVENT, stream_key(originator_id, version), current) for originator_id, version, _, current in links]


def receipt_item(key: str, fingerprint: str, deal_id: str, version: int, created_id: str | None) -> Item:
    return (RECEIPT, key, receipt_content(key, fingerprint, deal_id, version, created_id))


def snapshot_item(originator_id: str, version: int, topic: str, state: bytes) -> Item:
    return (SNAPSHOT, stream_key(originator_id, version), snapshot_content(topic, state))


def trusted(snapshot: StoredEvent, chained: str | None) -> bool:
    if chained == snapshot_content(snapshot.topic, snapshot.state):
        return True
    log.warning(
        "snapshot not trusted, replaying the deal from its events",
        deal_id=str(snapshot.originator_id),
        version=snapshot.originator_version,
        reason="not in the store-wide chain" if chained is None else "differs from the chained hash",
    )
    return False
