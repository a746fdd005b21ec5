"""SQLite: eventsourcing's application recorder plus the read model and receipts tables."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any
from uuid import UUID

from eventsourcing.persistence import StoredEvent
from eventsourcing.sqlite import SQLiteApplicationRecorder, SQLiteCursor

from ..integrity import GENESIS, Link
from ..read_model import CommandReceipt, DealSummary
from . import links_for

_SUMMARY_COLUMNS = "deal_id, title, client_name, owner, stage, version, opened_at, updated_at"
_RECEIPT_COLUMNS = "idempotency_key, fingerprint, deal_id, version, created_id"


def _timestamp(value: datetime) -> str:
    # Fixed width, so text order is time order (isoformat() drops zero microseconds).
    return value.strftime("%Y-%m-%dT%H:%M:%S.%f%z")


class DealRecorder(SQLiteApplicationRecorder):
    def construct_create_table_statements(self) -> list[str]:
        return [
            *super().construct_create_table_statements(),
            f"CREATE TABLE IF NOT EXISTS deal_summaries ({_SUMMARY_COLUMNS.replace('deal_id', 'deal_id TEXT PRIMARY KEY')})",
            "CREATE INDEX IF NOT EXISTS deal_summaries_stage ON deal_summaries (stage, opened_at, deal_id)",
            "CREATE INDEX IF NOT EXISTS deal_summaries_owner ON deal_summaries (owner, opened_at, deal_id)",
            "CREATE INDEX IF NOT EXISTS deal_summaries_opened ON deal_summaries (opened_at, deal_id)",
            f"CREATE TABLE IF NOT EXISTS command_receipts ({_RECEIPT_COLUMNS.replace('idempotency_key', 'idempotency_key TEXT PRIMARY KEY')})",
            "CREATE TABLE IF NOT EXISTS event_hashes (originator_id TEXT NOT NULL, originator_version INTEGER NOT NULL, "
            "previous_hash TEXT NOT NULL, hash TEXT NOT NULL, PRIMARY KEY (originator_id, originator_version))",
        ]

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
        self._chain(c, stored_events)
        self._upsert_summaries(c, summaries)
        if receipt is not None:
            c.execute(
                f"INSERT INTO command_receipts ({_RECEIPT_COLUMNS}) VALUES (?, ?, ?, ?, ?)",
                (receipt.idempotency_key, receipt.fingerprint, receipt.deal_id, receipt.version, receipt.created_id),
            )
        return notification_ids

    def _chain(self, c: SQLiteCursor, stored_events: Sequence[StoredEvent]) -> None:
        def previous(originator_id: str, version: int) -> str:
            c.execute(
                "SELECT hash FROM event_hashes WHERE originator_id = ? AND originator_version = ?", (originator_id, version)
            )
            row = c.fetchone()
            return row["hash"] if row else GENESIS

        c.executemany("INSERT INTO event_hashes VALUES (?, ?, ?, ?)", links_for(stored_events, previous))

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
