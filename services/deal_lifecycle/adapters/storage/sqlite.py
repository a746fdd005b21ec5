"""SQLite: eventsourcing's application recorder plus the read model and receipts tables."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

from eventsourcing.persistence import IntegrityError, StoredEvent
from eventsourcing.sqlite import SQLiteAggregateRecorder, SQLiteApplicationRecorder, SQLiteCursor, SQLiteDatastore

from dealflow.deal_lifecycle.adapters.storage import links_for
from dealflow.deal_lifecycle.adapters.storage.group_commit import GroupCommit, Save
from dealflow.deal_lifecycle.adapters.storage.chain import ChainTables, Item, event_items, receipt_item, snapshot_item, trusted
from dealflow.deal_lifecycle.application.integrity import GENESIS, SNAPSHOT, Entry, Head, Link, Stored, receipt_content, snapshot_content, stream_key
from dealflow.deal_lifecycle.application.read_model import CommandReceipt, DealSummary
from dealflow.deal_lifecycle.domain import deadlines

_SUMMARY_COLUMNS = "deal_id, title, client_name, owner, stage, version, opened_at, updated_at"
# The deal's schedule (deadlines.SCHEDULE): one column per kind of moment, holding what it is counted from.
_DUE_FROM = {kind: f"due_from_{kind}" for kind in deadlines.SCHEDULE}
assert all(column.isidentifier() for column in _DUE_FROM.values())
# Added to the table after it first shipped: a store written before deadlines has NULL in them.
_SCHEDULE_COLUMNS = {"overdue": "INTEGER", **dict.fromkeys(_DUE_FROM.values(), "TEXT")}
_ROW_COLUMNS = ", ".join([_SUMMARY_COLUMNS, *_SCHEDULE_COLUMNS])
_RECEIPT_COLUMNS = "idempotency_key, fingerprint, deal_id, version, created_id"


def _timestamp(value: datetime) -> str:
    # Fixed width, so text order is time order (isoformat() drops zero microseconds).
    return value.strftime("%Y-%m-%dT%H:%M:%S.%f%z")


def _utc_timestamp(value: datetime) -> str:
    """A schedule moment as stored: in UTC, so that text order is time order across the column."""
    if value.tzinfo is None:
        raise ValueError(f"a schedule moment must be timezone-aware, not {value!r}")
    return _timestamp(value.astimezone(UTC))


def _kinds(offsets: Mapping[str, timedelta]) -> list[str]:
    unknown = set(offsets) - set(_DUE_FROM)
    if unknown:
        raise ValueError(f"not kinds of the schedule: {sorted(unknown)}")
    return [kind for kind in deadlines.SCHEDULE if kind in offsets]


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
            f"CREATE TABLE IF NOT EXISTS deal_summaries ({_SUMMARY_COLUMNS.replace('deal_id', 'deal_id TEXT PRIMARY KEY')}, "
            + ", ".join(f"{column} {type_}" for column, type_ in _SCHEDULE_COLUMNS.items())
            + ")",
            "CREATE INDEX IF NOT EXISTS deal_summaries_stage ON deal_summaries (stage, opened_at, deal_id)",
            "CREATE INDEX IF NOT EXISTS deal_summaries_owner ON deal_summaries (owner, opened_at, deal_id)",
            "CREATE INDEX IF NOT EXISTS deal_summaries_opened ON deal_summaries (opened_at, deal_id)",
            # The scheduler's: what falls due first, per kind (select_due, select_next_due) ...
            *(
                f"CREATE INDEX IF NOT EXISTS deal_summaries_{column} ON deal_summaries ({column}, deal_id) WHERE {column} IS NOT NULL"
                for column in _DUE_FROM.values()
            ),
            # ... the overdue deals, listed as every listing is (select_summaries(overdue=True)) ...
            "CREATE INDEX IF NOT EXISTS deal_summaries_overdue ON deal_summaries (opened_at, deal_id) WHERE overdue = 1",
            # ... and the rows written before deadlines existed, to be given a schedule (select_unscheduled).
            "CREATE INDEX IF NOT EXISTS deal_summaries_unscheduled ON deal_summaries (deal_id) WHERE overdue IS NULL",
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
        self._add_schedule_columns()  # first: the statements index the new columns
        super().create_table()
        with self.datastore.transaction(commit=True) as c:
            self.chain.start(c, lambda: self._existing_items(c))

    def _add_schedule_columns(self) -> None:
        """Give a deal summaries table written before deadlines existed their columns (its rows keep NULL).

        SQLite has no ADD COLUMN IF NOT EXISTS: the columns there are read first, in a transaction
        that holds the write lock from its start, so two processes starting at once on an old store
        take turns, and the second finds the columns added."""
        with self.datastore.get_connection(commit=True) as conn:
            c = conn.cursor()
            # Looked at first without the write lock: a new store (no table yet) or one already migrated
            # needs none, and processes opening a new store at once must not queue for it.
            c.execute("PRAGMA table_info(deal_summaries)")
            present = {row["name"] for row in c.fetchall()}
            if not present or set(_SCHEDULE_COLUMNS) <= present:
                return
            c.execute("BEGIN IMMEDIATE")
            try:
                c.execute("PRAGMA table_info(deal_summaries)")
                present = {row["name"] for row in c.fetchall()}
                if present:  # else the table is created whole
                    for column, type_ in _SCHEDULE_COLUMNS.items():
                        if column not in present:
                            c.execute(f"ALTER TABLE deal_summaries ADD COLUMN {column} {type_}")
            except BaseException:
                conn.rollback()
                raise
            conn.commit()

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
        c.executemany(_UPSERT_SUMMARY, [_summary_row(s) for s in summaries])

    def replace_summaries(self, summaries: Sequence[DealSummary]) -> None:
        with self.datastore.transaction(commit=True) as c:
            c.execute("DELETE FROM deal_summaries")
            self._upsert_summaries(c, summaries)

    def select_summaries(
        self,
        *,
        stage: str | None,
        owner: str | None,
        after: tuple[datetime, str] | None,
        limit: int,
        overdue: bool | None = None,
    ) -> list[DealSummary]:
        """A page of summaries in (opened_at, deal_id) order, after the cursor; overdue=True: only the
        overdue deals, overdue=False: only the others (rows written before deadlines among them)."""
        where, params = [], []
        if stage is not None:
            where.append("stage = ?")
            params.append(stage)
        if owner is not None:
            where.append("owner = ?")
            params.append(owner)
        if overdue is not None:
            where.append("overdue = 1" if overdue else "overdue IS NOT 1")
        if after is not None:
            where.append("(opened_at, deal_id) > (?, ?)")
            params += [_timestamp(after[0]), after[1]]
        statement = f"SELECT {_ROW_COLUMNS} FROM deal_summaries"
        if where:
            statement += " WHERE " + " AND ".join(where)
        statement += " ORDER BY opened_at, deal_id LIMIT ?"
        with self.datastore.transaction(commit=False) as c:
            c.execute(statement, [*params, limit])
            return [_summary(row) for row in c.fetchall()]

    def select_due(self, offsets: Mapping[str, timedelta], now: datetime, limit: int) -> list[str]:
        """The deals with something due at `now`: a kind k of `offsets` counted from at or before now - offsets[k].

        Earliest due first (at most `limit`), each deal once. One indexed range per kind, each cut at
        `limit` rows in the order of its index: the first `limit` deals overall are among them."""
        kinds = _kinds(offsets)
        if not kinds or limit <= 0:
            return []
        branches, params = [], []
        for n, kind in enumerate(kinds):
            column = _DUE_FROM[kind]
            branches.append(
                f"SELECT * FROM (SELECT deal_id, {column} AS due_from, {n} AS kind FROM deal_summaries "
                f"WHERE {column} <= ? ORDER BY {column}, deal_id LIMIT ?)"
            )
            params += [_utc_timestamp(now - offsets[kind]), limit]
        with self.datastore.transaction(commit=False) as c:
            c.execute(" UNION ALL ".join(branches), params)
            rows = c.fetchall()
        return _earliest_due(
            ((row["deal_id"], datetime.fromisoformat(row["due_from"]) + offsets[kinds[row["kind"]]]) for row in rows), limit
        )

    def select_next_due(self, offsets: Mapping[str, timedelta]) -> datetime | None:
        """The earliest moment anything falls due under these offsets (None: nothing of theirs is scheduled)."""
        kinds = _kinds(offsets)
        if not kinds:
            return None
        firsts = ", ".join(
            f"(SELECT {column} FROM deal_summaries WHERE {column} IS NOT NULL ORDER BY {column} LIMIT 1)"
            for column in (_DUE_FROM[kind] for kind in kinds)
        )
        with self.datastore.transaction(commit=False) as c:
            c.execute(f"SELECT {firsts}")
            row = c.fetchone()
        moments = [datetime.fromisoformat(first) + offsets[kind] for kind, first in zip(kinds, tuple(row), strict=True) if first is not None]
        return min(moments, default=None)

    def select_unscheduled(self, limit: int) -> list[str]:
        """Deals whose row was written before deadlines existed (overdue NULL): they have no schedule yet."""
        with self.datastore.transaction(commit=False) as c:
            c.execute("SELECT deal_id FROM deal_summaries WHERE overdue IS NULL ORDER BY deal_id LIMIT ?", (limit,))
            return [row["deal_id"] for row in c.fetchall()]

    def select_receipt(self, idempotency_key: str) -> CommandReceipt | None:
        with self.datastore.transaction(commit=False) as c:
            c.execute(f"SELECT {_RECEIPT_COLUMNS} FROM command_receipts WHERE idempotency_key = ?", (idempotency_key,))
            row = c.fetchone()
        return None if row is None else CommandReceipt(**dict(row))


_UPSERT_SUMMARY = (
    f"INSERT INTO deal_summaries ({_ROW_COLUMNS}) VALUES ({', '.join('?' * (8 + len(_SCHEDULE_COLUMNS)))}) "
    "ON CONFLICT (deal_id) DO UPDATE SET stage = excluded.stage, version = excluded.version, updated_at = excluded.updated_at, "
    + ", ".join(f"{column} = excluded.{column}" for column in _SCHEDULE_COLUMNS)
)


def _summary_row(s: DealSummary) -> tuple[Any, ...]:
    if not s.due_from.keys() <= _DUE_FROM.keys():
        raise ValueError(f"not kinds of the schedule: {sorted(s.due_from.keys() - _DUE_FROM.keys())}")
    return (
        s.deal_id,
        s.title,
        s.client_name,
        s.owner,
        s.stage,
        s.version,
        _timestamp(s.opened_at),
        _timestamp(s.updated_at),
        None if s.overdue is None else int(s.overdue),
        *(None if (moment := s.due_from.get(kind)) is None else _utc_timestamp(moment) for kind in _DUE_FROM),
    )


def _summary(row: sqlite3.Row) -> DealSummary:
    return DealSummary(
        deal_id=row["deal_id"],
        title=row["title"],
        client_name=row["client_name"],
        owner=row["owner"],
        stage=row["stage"],
        version=row["version"],
        opened_at=datetime.fromisoformat(row["opened_at"]),
        updated_at=datetime.fromisoformat(row["updated_at"]),
        overdue=None if row["overdue"] is None else bool(row["overdue"]),
        due_from={kind: datetime.fromisoformat(row[column]) for kind, column in _DUE_FROM.items() if row[column] is not None},
    )


def _earliest_due(due: Iterable[tuple[str, datetime]], limit: int) -> list[str]:
    """Deal ids by the earliest moment each falls due (then by id), each once, at most `limit`."""
    first: dict[str, datetime] = {}
    for deal_id, moment in due:
        if deal_id not in first or moment < first[deal_id]:
            first[deal_id] = moment
    return sorted(first, key=lambda deal_id: (first[deal_id], deal_id))[:limit]


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

