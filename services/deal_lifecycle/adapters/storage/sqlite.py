"""SQLite: eventsourcing's application recorder plus the read model and receipts tables."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from datetime import datetime
from typing import Any
from uuid import UUID

from eventsourcing.persistence import IntegrityError, StoredEvent
from eventsourcing.sqlite import SQLiteAggregateRecorder, SQLiteApplicationRecorder, SQLiteCursor, SQLiteDatastore

from dealflow.deal_lifecycle.adapters.storage import links_for
from dealflow.deal_lifecycle.adapters.storage.group_commit import GroupCommit, Save
from dealflow.deal_lifecycle.adapters.storage.chain import ChainTables, Item, event_items, receipt_item, snapshot_item, trusted
from dealflow.deal_lifecycle.application.integrity import GENESIS, SNAPSHOT, Entry, Head, Link, Stored, receipt_content, snapshot_content, stream_key
from dealflow.deal_lifecycle.application.read_model import CommandReceipt, DealSummary

_SUMMARY_COLUMNS = "deal_id, title, client_name, owner, stage, version, opened_at, updated_at"
_RECEIPT_COLUMNS = "idempotency_key, fingerprint, deal_id, version, created_id"


def _timestamp(value: datetime) -> str:
    # Fixed width, so text order is time order (isoformat() drops zero microseconds).
    return value.strftime("%Y-%m-%dT%H:%M:%S.%f%z")


SNAPSHOTS_TABLE = "stored_snapshots"  # where eventsourcing's SQLite factory keeps snapshots


def _chain_tables() -> ChainTables:
    # SQLite has one writer at a time: the head needs no row lock.
    return ChainTables("store_chain", "store_chain_head", placeholder="?", lock="")


class DealRecorder(SQLiteApplicationRecorder):
    chain = _chain_tables()

    def __init__(self, datastore: SQLiteDatastore, **kwargs: Any) -> None:
        self.chain = _chain_tables()  # this recorder's own count of entries written
        super().__init__(datastore, **kwargs)

    def construct_create_table_statements(self) -> list[str]:
        return [
            *self.chain.create_statements("INTEGER"),
            *super().construct_create_table_statements(),
            f"CREATE TABLE IF NOT EXISTS deal_summaries ({_SUMMARY_COLUMNS.replace('deal_id', 'deal_id TEXT PRIMARY KEY')})",
            "CREATE INDEX IF NOT EXISTS deal_summaries_stage ON deal_summaries (stage, opened_at, deal_id)",
            "CREATE INDEX IF NOT EXISTS deal_summaries_owner ON deal_summaries (owner, opened_at, deal_id)",
            "CREATE INDEX IF NOT EXISTS deal_summaries_opened ON deal_summaries (opened_at, deal_id)",
            f"CREATE TABLE IF NOT EXISTS command_receipts ({_RECEIPT_COLUMNS.replace('idempotency_key', 'idempotency_key TEXT PRIMARY KEY')})",
            "CREATE TABLE IF NOT EXISTS event_hashes (originator_id TEXT NOT NULL, originator_version INTEGER NOT NULL, "
            "previous_hash TEXT NOT NULL, hash TEXT NOT NULL, PRIMARY KEY (originator_id, originator_version))",
        ]

    group: GroupCommit | None = None

    def enable_group_commit(self, *, max_batch: int, wait_seconds: float) -> None:
        self.group = GroupCommit(self._write_batch, max_batch=max_batch, wait_seconds=wait_seconds)

    def insert_events(self, stored_events: Sequence[StoredEvent], **kwargs: Any) -> Sequence[int] | None:
        if self.group is not None:
            return self.group.save((stored_events, kwargs))  # type: ignore[no-any-return]
        with self.chain.counting():
            return super().insert_events(stored_events, **kwargs)

    def _write_batch(self, batch: Sequence[Save]) -> None:
        """Every save of the batch in one transaction, each in a savepoint: a conflict rolls back that save alone."""
        with self.chain.counting(), self.datastore.transaction(commit=True) as c:
            for n, pending in enumerate(batch):
                stored_events, kwargs = pending.work
                mark = self.chain.mark()
                c.execute(f"SAVEPOINT save_{n}")
                try:
                    pending.result = self._insert_events(c, stored_events, **kwargs)
                except sqlite3.IntegrityError as conflict:
                    c.execute(f"ROLLBACK TO save_{n}")
                    self.chain.rewind(mark)
                    pending.error = IntegrityError(conflict)
                c.execute(f"RELEASE save_{n}")

    def _insert_events(
        self,
        c: SQLiteCursor,
        stored_events: Sequence[StoredEvent],
        *,
        summaries: Sequence[DealSummary] = (),
        receipt: CommandReceipt | None = None,
        **kwargs: Any,
    ) -> Sequence[int] | None:
        notification_ids = super()._insert_events(c, stored_events, **kwargs)
        items = self._chain(c, stored_events)
        self._upsert_summaries(c, summaries)
        if receipt is not None:
            c.execute(
                f"INSERT INTO command_receipts ({_RECEIPT_COLUMNS}) VALUES (?, ?, ?, ?, ?)",
                (receipt.idempotency_key, receipt.fingerprint, receipt.deal_id, receipt.version, receipt.created_id),
            )
            items.append(receipt_item(*_receipt_fields(receipt)))
        self.chain.append(c, items)
        return notification_ids

    def _chain(self, c: SQLiteCursor, stored_events: Sequence[StoredEvent]) -> list[Item]:
        def previous(originator_id: str, version: int) -> str:
            c.execute(
                "SELECT hash FROM event_hashes WHERE originator_id = ? AND originator_version = ?", (originator_id, version)
            )
            row = c.fetchone()
            return row["hash"] if row else GENESIS

        links = links_for(stored_events, previous)
        c.executemany("INSERT INTO event_hashes VALUES (?, ?, ?, ?)", links)
        return event_items(links)

    def create_table(self) -> None:
        super().create_table()
        with self.datastore.transaction(commit=True) as c:
            self.chain.start(c, lambda: self._existing_items(c))

    def _existing_items(self, c: SQLiteCursor) -> list[Item]:
        """What a store written before the store-wide chain holds, in the order it was written."""
        c.execute("SELECT originator_id, originator_version, hash FROM event_hashes")
        links = {(row[0], row[1]): row[2] for row in c.fetchall()}
        c.execute(f"SELECT originator_id, originator_version FROM {self.events_table_name} ORDER BY rowid")
        items = []
        for row in c.fetchall():
            key = (str(UUID(row[0])), row[1])
            if key in links:  # an event without a link is reported by the stream's own chain
                items += event_items([(key[0], key[1], "", links[key])])
        c.execute(f"SELECT {_RECEIPT_COLUMNS} FROM command_receipts ORDER BY rowid")
        items += [receipt_item(*tuple(row)) for row in c.fetchall()]
        c.execute("SELECT name FROM sqlite_master WHERE type = 'table' AND name = ?", (SNAPSHOTS_TABLE,))
        if c.fetchone() is not None:
            c.execute(f"SELECT originator_id, originator_version, topic, state FROM {SNAPSHOTS_TABLE}")
            items += [snapshot_item(str(UUID(row[0])), row[1], row[2], row[3]) for row in c.fetchall()]
        return items

    def snapshot_recorder(self, *, create_table: bool = True) -> SnapshotRecorder:
        recorder = SnapshotRecorder(self.datastore, self.chain)
        if create_table:
            recorder.create_table()
        return recorder

    def select_chain_head(self) -> Head | None:
        with self.datastore.transaction(commit=False) as c:
            return self.chain.select_head(c)

    def select_store_chain(self) -> tuple[Head | None, list[Entry], Stored]:
        """The store-wide chain and what the store holds now, read in one transaction."""
        with self.datastore.transaction(commit=False) as c:
            head, entries = self.chain.select_head(c), self.chain.select_entries(c)
            c.execute("SELECT originator_id, originator_version, hash FROM event_hashes")
            events = {stream_key(row[0], row[1]): row[2] for row in c.fetchall()}
            c.execute(f"SELECT {_RECEIPT_COLUMNS} FROM command_receipts")
            receipts = {row[0]: receipt_content(*tuple(row)) for row in c.fetchall()}
            c.execute(f"SELECT originator_id, originator_version, topic, state FROM {SNAPSHOTS_TABLE}")
            snapshots = {stream_key(str(UUID(row[0])), row[1]): snapshot_content(row[2], row[3]) for row in c.fetchall()}
        return head, entries, Stored(events, receipts, snapshots)

    def select_links(self, originator_id: str) -> list[Link]:
        with self.datastore.transaction(commit=False) as c:
            c.execute(
                "SELECT originator_version, previous_hash, hash FROM event_hashes WHERE originator_id = ? "
                "ORDER BY originator_version",
                (originator_id,),
            )
            return [Link(*tuple(row)) for row in c.fetchall()]

    def select_originator_ids(self) -> list[str]:
        """Every stream with events or a recorded hash (so a stream whose events were all deleted is found)."""
        with self.datastore.transaction(commit=False) as c:
            c.execute(f"SELECT originator_id FROM {self.events_table_name} UNION SELECT originator_id FROM event_hashes")
            return sorted({str(UUID(row[0])) for row in c.fetchall()})

    def _upsert_summaries(self, c: SQLiteCursor, summaries: Sequence[DealSummary]) -> None:
        c.executemany(
            f"INSERT INTO deal_summaries ({_SUMMARY_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?) "
            "ON CONFLICT (deal_id) DO UPDATE SET stage = excluded.stage, version = excluded.version, "
            "updated_at = excluded.updated_at",
            [
                (
                    s.deal_id,
                    s.title,
                    s.client_name,
                    s.owner,
                    s.stage,
                    s.version,
                    _timestamp(s.opened_at),
                    _timestamp(s.updated_at),
                )
                for s in summaries
            ],
        )

    def replace_summaries(self, summaries: Sequence[DealSummary]) -> None:
        with self.datastore.transaction(commit=True) as c:
            c.execute("DELETE FROM deal_summaries")
            self._upsert_summaries(c, summaries)

    def select_summaries(
        self, *, stage: str | None, owner: str | None, after: tuple[datetime, str] | None, limit: int
    ) -> list[DealSummary]:
        where, params = [], []
        if stage is not None:
            where.append("stage = ?")
            params.append(stage)
        if owner is not None:
            where.append("owner = ?")
            params.append(owner)
        if after is not None:
            where.append("(opened_at, deal_id) > (?, ?)")
            params += [_timestamp(after[0]), after[1]]
        statement = f"SELECT {_SUMMARY_COLUMNS} FROM deal_summaries"
        if where:
            statement += " WHERE " + " AND ".join(where)
        statement += " ORDER BY opened_at, deal_id LIMIT ?"
        with self.datastore.transaction(commit=False) as c:
            c.execute(statement, [*params, limit])
            return [
                DealSummary(
                    **{
                        **dict(row),
                        "opened_at": datetime.fromisoformat(row["opened_at"]),
                        "updated_at": datetime.fromisoformat(row["updated_at"]),
                    }
                )
                for row in c.fetchall()
            ]

    def select_receipt(self, idempotency_key: str) -> CommandReceipt | None:
        with self.datastore.transaction(commit=False) as c:
            c.execute(f"SELECT {_RECEIPT_COLUMNS} FROM command_receipts WHERE idempotency_key = ?", (idempotency_key,))
            row = c.fetchone()
        return None if row is None else CommandReceipt(**dict(row))


def _receipt_fields(receipt: CommandReceipt) -> tuple[str, str, str, int, str | None]:
    return (receipt.idempotency_key, receipt.fingerprint, receipt.deal_id, receipt.version, receipt.created_id)


class SnapshotRecorder(SQLiteAggregateRecorder):
    """Snapshots, each chained when written and trusted when read only if its bytes match its entry.

    A snapshot that does not match (edited, or put there outside the service) is skipped with a
    warning: the deal is then replayed from its events, which the chains cover.
    """

    def __init__(self, datastore: SQLiteDatastore, chain: ChainTables) -> None:
        super().__init__(datastore, events_table_name=SNAPSHOTS_TABLE)
        self.chain = chain

    def select_stored(self, originator_id: UUID) -> Sequence[StoredEvent]:
        """Every snapshot of a stream as stored, trusted or not (for verify)."""
        return super().select_events(originator_id)

    def insert_events(self, stored_events: Sequence[StoredEvent], **kwargs: Any) -> Sequence[int] | None:
        with self.chain.counting():
            return super().insert_events(stored_events, **kwargs)

    def _insert_events(self, c: SQLiteCursor, stored_events: Sequence[StoredEvent], **kwargs: Any) -> Sequence[int] | None:
        super()._insert_events(c, stored_events, **kwargs)
        self.chain.append(c, [snapshot_item(str(s.originator_id), s.originator_version, s.topic, s.state) for s in stored_events])
        return None

    def select_events(self, originator_id: UUID | str, **kwargs: Any) -> Sequence[StoredEvent]:
        snapshots = super().select_events(originator_id, **kwargs)
        if not snapshots:
            return snapshots
        with self.datastore.transaction(commit=False) as c:
            return [s for s in snapshots if trusted(s, self.chain.select_content(c, SNAPSHOT, stream_key(str(s.originator_id), s.originator_version)))]

