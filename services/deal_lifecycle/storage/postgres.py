"""PostgreSQL: eventsourcing's application recorder plus the read model and receipts tables."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from eventsourcing.persistence import StoredEvent
from eventsourcing.postgres import PostgresApplicationRecorder, PostgresDatastore
from psycopg import Cursor
from psycopg.rows import DictRow
from psycopg.sql import SQL, Composed, Identifier

from ..integrity import GENESIS, Link
from ..read_model import CommandReceipt, DealSummary
from . import links_for

_SUMMARY_COLUMNS = SQL("deal_id, title, client_name, owner, stage, version, opened_at, updated_at")
_RECEIPT_COLUMNS = SQL("idempotency_key, fingerprint, deal_id, version, created_id")


class DealRecorder(PostgresApplicationRecorder):
    def __init__(self, datastore: PostgresDatastore, *, events_table_name: str = "stored_events") -> None:
        super().__init__(datastore, events_table_name=events_table_name)
        schema = Identifier(self.datastore.schema)
        self.summaries = Composed([schema, SQL("."), Identifier(f"{events_table_name}_deal_summaries")])
        self.receipts = Composed([schema, SQL("."), Identifier(f"{events_table_name}_command_receipts")])
        self.hashes = Composed([schema, SQL("."), Identifier(f"{events_table_name}_hashes")])
        self.sql_create_statements += [
            SQL(
                "CREATE TABLE IF NOT EXISTS {t} (deal_id text PRIMARY KEY, title text NOT NULL, "
                "client_name text NOT NULL, owner text NOT NULL, stage text NOT NULL, version bigint NOT NULL, "
                "opened_at timestamptz NOT NULL, updated_at timestamptz NOT NULL)"
            ).format(t=self.summaries),
            SQL("CREATE INDEX IF NOT EXISTS {i} ON {t} (stage, opened_at, deal_id)").format(
                i=Identifier(f"{events_table_name}_summaries_stage"), t=self.summaries
            ),
            SQL("CREATE INDEX IF NOT EXISTS {i} ON {t} (owner, opened_at, deal_id)").format(
                i=Identifier(f"{events_table_name}_summaries_owner"), t=self.summaries
            ),
            SQL("CREATE INDEX IF NOT EXISTS {i} ON {t} (opened_at, deal_id)").format(
                i=Identifier(f"{events_table_name}_summaries_opened"), t=self.summaries
            ),
            SQL(
                "CREATE TABLE IF NOT EXISTS {t} (idempotency_key text PRIMARY KEY, fingerprint text NOT NULL, "
                "deal_id text NOT NULL, version bigint NOT NULL, created_id text)"
            ).format(t=self.receipts),
            SQL(
                "CREATE TABLE IF NOT EXISTS {t} (originator_id text NOT NULL, originator_version bigint NOT NULL, "
                "previous_hash text NOT NULL, hash text NOT NULL, PRIMARY KEY (originator_id, originator_version))"
            ).format(t=self.hashes),
        ]

    def _insert_events(
        self,
        curs: Cursor[DictRow],
        stored_events: Sequence[StoredEvent],
        *,
        summaries: Sequence[DealSummary] = (),
        receipt: CommandReceipt | None = None,
        **kwargs: Any,
    ) -> None:
        # Runs in the same transaction as the events: a conflict on either rolls back both.
        super()._insert_events(curs, stored_events, **kwargs)
        self._chain(curs, stored_events)
        self._upsert_summaries(curs, summaries)
        if receipt is not None:
            curs.execute(
                SQL("INSERT INTO {t} ({c}) VALUES (%s, %s, %s, %s, %s)").format(t=self.receipts, c=_RECEIPT_COLUMNS),
                (receipt.idempotency_key, receipt.fingerprint, receipt.deal_id, receipt.version, receipt.created_id),
            )

    def _chain(self, curs: Cursor[DictRow], stored_events: Sequence[StoredEvent]) -> None:
        def previous(originator_id: str, version: int) -> str:
            curs.execute(
                SQL("SELECT hash FROM {t} WHERE originator_id = %s AND originator_version = %s").format(t=self.hashes),
                (originator_id, version),
            )
            row = curs.fetchone()
            return row["hash"] if row else GENESIS

        rows = links_for(stored_events, previous)
        if rows:
            curs.executemany(SQL("INSERT INTO {t} VALUES (%s, %s, %s, %s)").format(t=self.hashes), rows)

    def select_links(self, originator_id: str) -> list[Link]:
        with self.datastore.transaction(commit=False) as curs:
            curs.execute(
                SQL(
                    "SELECT originator_version, previous_hash, hash FROM {t} WHERE originator_id = %s "
                    "ORDER BY originator_version"
                ).format(t=self.hashes),
                (originator_id,),
            )
            return [Link(row["originator_version"], row["previous_hash"], row["hash"]) for row in curs.fetchall()]

    def select_originator_ids(self) -> list[str]:
        """Every stream with events or a recorded hash (so a stream whose events were all deleted is found)."""
        with self.datastore.transaction(commit=False) as curs:
            curs.execute(
                SQL("SELECT originator_id::text AS id FROM {e} UNION SELECT originator_id AS id FROM {h}").format(
                    e=Composed([Identifier(self.datastore.schema), SQL("."), Identifier(self.events_table_name)]),
                    h=self.hashes,
                )
            )
            return sorted({row["id"] for row in curs.fetchall()})

    def _upsert_summaries(self, curs: Cursor[DictRow], summaries: Sequence[DealSummary]) -> None:
        if not summaries:
            return
        curs.executemany(
            SQL(
                "INSERT INTO {t} ({c}) VALUES (%s, %s, %s, %s, %s, %s, %s, %s) "
                "ON CONFLICT (deal_id) DO UPDATE SET stage = excluded.stage, version = excluded.version, "
                "updated_at = excluded.updated_at"
            ).format(t=self.summaries, c=_SUMMARY_COLUMNS),
            [
                (s.deal_id, s.title, s.client_name, s.owner, s.stage, s.version, s.opened_at, s.updated_at)
                for s in summaries
            ],
        )

    def replace_summaries(self, summaries: Sequence[DealSummary]) -> None:
        with self.datastore.transaction(commit=True) as curs:
            curs.execute(SQL("DELETE FROM {t}").format(t=self.summaries))
            self._upsert_summaries(curs, summaries)

    def select_summaries(
        self, *, stage: str | None, owner: str | None, after: tuple[datetime, str] | None, limit: int
    ) -> list[DealSummary]:
        where: list[Composed | SQL] = []
        params: list[Any] = []
        if stage is not None:
            where.append(SQL("stage = %s"))
            params.append(stage)
        if owner is not None:
            where.append(SQL("owner = %s"))
            params.append(owner)
        if after is not None:
            where.append(SQL("(opened_at, deal_id) > (%s, %s)"))
            params += list(after)
        statement = SQL("SELECT {c} FROM {t}").format(c=_SUMMARY_COLUMNS, t=self.summaries)
        if where:
            statement += SQL(" WHERE ") + SQL(" AND ").join(where)
        statement += SQL(" ORDER BY opened_at, deal_id LIMIT %s")
        with self.datastore.transaction(commit=False) as curs:
            curs.execute(statement, [*params, limit])
            return [DealSummary(**row) for row in curs.fetchall()]

    def select_receipt(self, idempotency_key: str) -> CommandReceipt | None:
        with self.datastore.transaction(commit=False) as curs:
            curs.execute(
                SQL("SELECT {c} FROM {t} WHERE idempotency_key = %s").format(c=_RECEIPT_COLUMNS, t=self.receipts),
                (idempotency_key,),
            )
            row = curs.fetchone()
        return None if row is None else CommandReceipt(**row)
