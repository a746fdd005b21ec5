"""PostgreSQL: eventsourcing's application recorder plus the read model and receipts tables."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from functools import wraps
from typing import Any
from uuid import UUID

import psycopg
from eventsourcing.persistence import IntegrityError, InterfaceError, OperationalError, StoredEvent
from eventsourcing.postgres import PostgresAggregateRecorder, PostgresApplicationRecorder, PostgresDatastore, PostgresRecorder
from eventsourcing.utils import retry
from psycopg import Cursor
from psycopg.rows import DictRow
from psycopg.sql import SQL, Composable, Composed, Identifier, Literal

from dealflow.deal_lifecycle.adapters.storage import links_for
from dealflow.deal_lifecycle.adapters.storage.group_commit import GroupCommit, Save
from dealflow.deal_lifecycle.adapters.storage.chain import ChainTables, Item, event_items, receipt_item, snapshot_item, trusted
from dealflow.deal_lifecycle.application.integrity import GENESIS, SNAPSHOT, Entry, Head, Link, Stored, receipt_content, snapshot_content, stream_key
from dealflow.deal_lifecycle.application.read_model import CommandReceipt, DealSummary
from dealflow.deal_lifecycle.domain import deadlines

def created_alone(create: Callable[..., None]) -> Callable[..., None]:
    """A recorder's table creation, run by one process at a time (a PostgreSQL advisory lock per schema).

    Two processes starting at once on a new database (two workers, two instances) would both run
    CREATE TABLE IF NOT EXISTS and the rest: PostgreSQL does not serialise those, and the loser
    fails on the catalog (a duplicate pg_type name, a tuple concurrently updated). Waiting for the
    other process instead finds the tables there. On SQLite the database's write lock does this."""

    @wraps(create)
    def alone(recorder: Any) -> None:
        datastore = recorder.datastore
        if not isinstance(datastore, PostgresDatastore):
            create(recorder)
            return
        lock = ("SELECT pg_advisory_lock(hashtext(%s))", (f"dealflow: creating the tables of {datastore.schema}",))
        with datastore.get_connection() as conn:  # its own connection, held while the others create
            conn.execute(*lock)
            try:
                create(recorder)
            finally:
                conn.execute(lock[0].replace("pg_advisory_lock", "pg_advisory_unlock"), lock[1])

    return alone


_SUMMARY_COLUMNS = SQL("deal_id, title, client_name, owner, stage, version, opened_at, updated_at")
# The deal's schedule (deadlines.SCHEDULE): one column per kind of moment, holding what it is counted from.
_DUE_FROM = {kind: f"due_from_{kind}" for kind in deadlines.SCHEDULE}
# Added to the table after it first shipped: a store written before deadlines has NULL in them.
_SCHEDULE_COLUMNS = {"overdue": "boolean", **dict.fromkeys(_DUE_FROM.values(), "timestamptz")}
_ROW_COLUMNS = SQL(", ").join([_SUMMARY_COLUMNS, *(Identifier(column) for column in _SCHEDULE_COLUMNS)])
_UPDATE_ON_CONFLICT = SQL(", ").join(
    [
        SQL("stage = excluded.stage, version = excluded.version, updated_at = excluded.updated_at"),
        *(SQL("{c} = excluded.{c}").format(c=Identifier(column)) for column in _SCHEDULE_COLUMNS),
    ]
)
_RECEIPT_COLUMNS = SQL("idempotency_key, fingerprint, deal_id, version, created_id")


def store_exists(env: Mapping[str, str], *, events_table_name: str = "stored_events") -> bool:
    """Whether a deal store is there, judged by its events table, without creating anything.

    Read-only commands ask first, so an auditor pointed at the wrong database or schema hears
    "no store" instead of being shown a new empty one as intact.
    """
    schema = env.get("POSTGRES_SCHEMA", "").strip() or "public"
    with psycopg.connect(
        host=env["POSTGRES_HOST"],
        port=int(env["POSTGRES_PORT"]),
        dbname=env["POSTGRES_DBNAME"],
        user=env["POSTGRES_USER"],
        password=env["POSTGRES_PASSWORD"],
        connect_timeout=5,
    ) as conn:
        row = conn.execute("SELECT to_regclass(%s)", (f'"{schema}"."{events_table_name}"',)).fetchone()
    return row is not None and row[0] is not None


class DealRecorder(PostgresApplicationRecorder):
    def __init__(self, datastore: PostgresDatastore, *, events_table_name: str = "stored_events") -> None:
        super().__init__(datastore, events_table_name=events_table_name)
        schema = Identifier(self.datastore.schema)
        self.summaries = Composed([schema, SQL("."), Identifier(f"{events_table_name}_deal_summaries")])
        self.receipts = Composed([schema, SQL("."), Identifier(f"{events_table_name}_command_receipts")])
        self.hashes = Composed([schema, SQL("."), Identifier(f"{events_table_name}_hashes")])
        # eventsourcing's PostgreSQL factory names the snapshots table after the same prefix.
        self.snapshots_table_name = events_table_name.removesuffix("events") + "snapshots"
        quoted = f'"{self.datastore.schema}"."{events_table_name}'
        # Concurrent transactions take the head row FOR UPDATE, before the events table's own lock.
        self.chain = ChainTables(f'{quoted}_store_chain"', f'{quoted}_store_chain_head"', placeholder="%s", lock=" FOR UPDATE")
        self.sql_create_statements += [
            *(SQL(statement) for statement in self.chain.create_statements("BIGINT")),  # type: ignore[arg-type]
            SQL(
                "CREATE TABLE IF NOT EXISTS {t} (deal_id text PRIMARY KEY, title text NOT NULL, "
                "client_name text NOT NULL, owner text NOT NULL, stage text NOT NULL, version bigint NOT NULL, "
                "opened_at timestamptz NOT NULL, updated_at timestamptz NOT NULL, {schedule})"
            ).format(t=self.summaries, schedule=self._schedule_columns(SQL(""))),
            SQL("CREATE INDEX IF NOT EXISTS {i} ON {t} (stage, opened_at, deal_id)").format(
                i=Identifier(f"{events_table_name}_summaries_stage"), t=self.summaries
            ),
            SQL("CREATE INDEX IF NOT EXISTS {i} ON {t} (owner, opened_at, deal_id)").format(
                i=Identifier(f"{events_table_name}_summaries_owner"), t=self.summaries
            ),
            SQL("CREATE INDEX IF NOT EXISTS {i} ON {t} (opened_at, deal_id)").format(
                i=Identifier(f"{events_table_name}_summaries_opened"), t=self.summaries
            ),
            # The scheduler's: what falls due first, per kind (select_due, select_next_due) ...
            *(
                SQL("CREATE INDEX IF NOT EXISTS {i} ON {t} ({c}, deal_id) WHERE {c} IS NOT NULL").format(
                    i=self._index_name(f"{events_table_name}_summaries_{column}"), t=self.summaries, c=Identifier(column)
                )
                for column in _DUE_FROM.values()
            ),
            # ... the overdue deals, listed as every listing is (select_summaries(overdue=True)) ...
            SQL("CREATE INDEX IF NOT EXISTS {i} ON {t} (opened_at, deal_id) WHERE overdue").format(
                i=self._index_name(f"{events_table_name}_summaries_overdue"), t=self.summaries
            ),
            # ... and the rows written before deadlines existed, to be given a schedule (select_unscheduled).
            SQL("CREATE INDEX IF NOT EXISTS {i} ON {t} (deal_id) WHERE overdue IS NULL").format(
                i=self._index_name(f"{events_table_name}_summaries_unscheduled"), t=self.summaries
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

    group: GroupCommit | None = None

    def enable_group_commit(self, *, max_batch: int, wait_seconds: float) -> None:
        self.group = GroupCommit(self._write_batch, max_batch=max_batch, wait_seconds=wait_seconds)

    def insert_events(self, stored_events: Sequence[StoredEvent], **kwargs: Any) -> Sequence[int] | None:
        if self.group is not None:
            return self.group.save((stored_events, kwargs))  # type: ignore[no-any-return]
        with self.chain.counting():
            return super().insert_events(stored_events, **kwargs)

    @retry((InterfaceError, OperationalError), max_attempts=10, wait=0.2)
    def _write_batch(self, batch: Sequence[Save]) -> None:
        """Every save of the batch in one transaction, each in a savepoint: a conflict rolls back that save alone.
        A connection lost before the commit loses nothing that was answered: the batch is written again."""
        for pending in batch:
            pending.result = pending.error = None
        # In pipeline mode, as the library's own insert_events: the statements of a save go to the
        # server together instead of one round trip each.
        with self.chain.counting(), self.datastore.get_connection() as conn, conn.pipeline() as pipeline, conn.transaction():
            for pending in batch:
                stored_events, kwargs = pending.work
                mark = self.chain.mark()
                try:
                    with conn.transaction(), conn.cursor() as curs:  # nested: a savepoint
                        self._insert_events(curs, stored_events, **kwargs)
                        self._insert_stored_events(curs, stored_events, **kwargs)
                        pipeline.sync()  # a conflict is raised here, inside this save's savepoint
                        pending.result = self._fetch_ids_after_insert_events(curs, stored_events, **kwargs)
                except psycopg.IntegrityError as conflict:
                    self.chain.rewind(mark)
                    pending.error = IntegrityError(conflict)

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
        items = self._chain(curs, stored_events)
        self._upsert_summaries(curs, summaries)
        if receipt is not None:
            curs.execute(
                SQL("INSERT INTO {t} ({c}) VALUES (%s, %s, %s, %s, %s)").format(t=self.receipts, c=_RECEIPT_COLUMNS),
                (receipt.idempotency_key, receipt.fingerprint, receipt.deal_id, receipt.version, receipt.created_id),
            )
            items.append(receipt_item(receipt.idempotency_key, receipt.fingerprint, receipt.deal_id, receipt.version, receipt.created_id))
        # A cursor of its own: in pipeline mode, a fetch on the cursor that has just run an executemany
        # (the hash rows above) can be handed that INSERT's result instead of the head's row.
        with curs.connection.cursor() as head_cursor:
            self.chain.append(head_cursor, items)

    @staticmethod
    def _index_name(name: str) -> Identifier:
        # PostgreSQL would cut a longer name short, and two indexes could then share one (IF NOT EXISTS skipping the second).
        PostgresRecorder.check_identifier_length(name)
        return Identifier(name)

    @staticmethod
    def _schedule_columns(add: SQL) -> Composed:
        return SQL(", ").join(
            SQL("{add}{c} {type}").format(add=add, c=Identifier(column), type=SQL(type_)) for column, type_ in _SCHEDULE_COLUMNS.items()
        )

    @created_alone
    def create_table(self) -> None:
        # Run by one process at a time (created_alone): two starting at once on an old store do not both migrate it.
        self._add_schedule_columns()  # first: the statements index the new columns
        super().create_table()
        with self.datastore.transaction(commit=True) as curs:
            self.chain.start(curs, lambda: self._existing_items(curs))

    def _add_schedule_columns(self) -> None:
        """Give a deal summaries table written before deadlines existed their columns (its rows keep NULL).

        Only when one is missing: ALTER TABLE takes the table's strongest lock even when there is
        nothing to add, and would queue every reader and writer behind it at each start."""
        with self.datastore.transaction(commit=True) as curs:
            curs.execute(
                "SELECT column_name FROM information_schema.columns WHERE table_schema = %s AND table_name = %s",
                (self.datastore.schema, f"{self.events_table_name}_deal_summaries"),
            )
            present = {row["column_name"] for row in curs.fetchall()}
            if present and not present >= _SCHEDULE_COLUMNS.keys():  # no table: it is created whole
                curs.execute(
                    SQL("ALTER TABLE {t} {columns}").format(t=self.summaries, columns=self._schedule_columns(SQL("ADD COLUMN IF NOT EXISTS ")))
                )

    def _existing_items(self, curs: Cursor[DictRow]) -> list[Item]:
        """What a store written before the store-wide chain holds, in the order it was written."""
        curs.execute(SQL("SELECT originator_id, originator_version, hash FROM {t}").format(t=self.hashes))
        links = {(row["originator_id"], row["originator_version"]): row["hash"] for row in curs.fetchall()}
        curs.execute(
            SQL("SELECT originator_id::text AS id, originator_version FROM {e} ORDER BY notification_id").format(e=self._events())
        )
        items = []
        for row in curs.fetchall():
            key = (row["id"], row["originator_version"])
            if key in links:  # an event without a link is reported by the stream's own chain
                items += event_items([(key[0], key[1], "", links[key])])
        curs.execute(SQL("SELECT {c} FROM {t} ORDER BY ctid").format(c=_RECEIPT_COLUMNS, t=self.receipts))
        items += [receipt_item(*row.values()) for row in curs.fetchall()]
        if self._snapshots_exist(curs):
            curs.execute(SQL("SELECT originator_id::text AS id, originator_version, topic, state FROM {s}").format(s=self._snapshots()))
            items += [snapshot_item(row["id"], row["originator_version"], row["topic"], bytes(row["state"])) for row in curs.fetchall()]
        return items

    def _events(self) -> Composed:
        return Composed([Identifier(self.datastore.schema), SQL("."), Identifier(self.events_table_name)])

    def _snapshots(self) -> Composed:
        return Composed([Identifier(self.datastore.schema), SQL("."), Identifier(self.snapshots_table_name)])

    def _snapshots_exist(self, curs: Cursor[DictRow]) -> bool:
        curs.execute("SELECT to_regclass(%s) AS t", (f'"{self.datastore.schema}"."{self.snapshots_table_name}"',))
        row = curs.fetchone()
        return row is not None and row["t"] is not None

    def snapshot_recorder(self, *, create_table: bool = True) -> SnapshotRecorder:
        recorder = SnapshotRecorder(self.datastore, self.chain, events_table_name=self.snapshots_table_name)
        if create_table:
            recorder.create_table()
        return recorder

    def select_chain_head(self) -> Head | None:
        with self.datastore.transaction(commit=False) as curs:
            return self.chain.select_head(curs)

    def select_store_chain(self) -> tuple[Head | None, list[Entry], Stored]:
        """The store-wide chain and what the store holds now, read in one transaction."""
        with self.datastore.transaction(commit=False) as curs:
            curs.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            head, entries = self.chain.select_head(curs), self.chain.select_entries(curs)
            curs.execute(SQL("SELECT originator_id, originator_version, hash FROM {t}").format(t=self.hashes))
            events = {stream_key(row["originator_id"], row["originator_version"]): row["hash"] for row in curs.fetchall()}
            curs.execute(SQL("SELECT {c} FROM {t}").format(c=_RECEIPT_COLUMNS, t=self.receipts))
            receipts = {row["idempotency_key"]: receipt_content(*row.values()) for row in curs.fetchall()}
            snapshots = {}
            if self._snapshots_exist(curs):
                curs.execute(SQL("SELECT originator_id::text AS id, originator_version, topic, state FROM {s}").format(s=self._snapshots()))
                snapshots = {stream_key(row["id"], row["originator_version"]): snapshot_content(row["topic"], bytes(row["state"])) for row in curs.fetchall()}
        return head, entries, Stored(events, receipts, snapshots)

    def _chain(self, curs: Cursor[DictRow], stored_events: Sequence[StoredEvent]) -> list[Item]:
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
        return event_items(rows)

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
            SQL("INSERT INTO {t} ({c}) VALUES ({v}) ON CONFLICT (deal_id) DO UPDATE SET {u}").format(
                t=self.summaries,
                c=_ROW_COLUMNS,
                v=SQL(", ").join([SQL("%s")] * (8 + len(_SCHEDULE_COLUMNS))),
                u=_UPDATE_ON_CONFLICT,
            ),
            [_summary_row(s) for s in summaries],
        )

    def replace_summaries(self, summaries: Sequence[DealSummary]) -> None:
        with self.datastore.transaction(commit=True) as curs:
            curs.execute(SQL("DELETE FROM {t}").format(t=self.summaries))
            self._upsert_summaries(curs, summaries)

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
        where: list[Composed | SQL] = []
        params: list[Any] = []
        if stage is not None:
            where.append(SQL("stage = %s"))
            params.append(stage)
        if owner is not None:
            where.append(SQL("owner = %s"))
            params.append(owner)
        if overdue is not None:
            where.append(SQL("overdue") if overdue else SQL("overdue IS NOT TRUE"))
        if after is not None:
            where.append(SQL("(opened_at, deal_id) > (%s, %s)"))
            params += list(after)
        statement = SQL("SELECT {c} FROM {t}").format(c=_ROW_COLUMNS, t=self.summaries)
        if where:
            statement += SQL(" WHERE ") + SQL(" AND ").join(where)
        statement += SQL(" ORDER BY opened_at, deal_id LIMIT %s")
        with self.datastore.transaction(commit=False) as curs:
            curs.execute(statement, [*params, limit])
            return [_summary(row) for row in curs.fetchall()]

    def select_due(self, offsets: Mapping[str, timedelta], now: datetime, limit: int) -> list[str]:
        """The deals with something due at `now`: a kind k of `offsets` counted from at or before now - offsets[k].

        Earliest due first (at most `limit`), each deal once. One indexed range per kind, each cut at
        `limit` rows in the order of its index: the first `limit` deals overall are among them."""
        kinds = _kinds(offsets)
        if not kinds or limit <= 0:
            return []
        branches: list[Composable] = []
        params: list[Any] = []
        for n, kind in enumerate(kinds):
            branches.append(
                SQL("(SELECT deal_id, {c} AS due_from, {n} AS kind FROM {t} WHERE {c} <= %s ORDER BY {c}, deal_id LIMIT %s)").format(
                    c=Identifier(_DUE_FROM[kind]), n=Literal(n), t=self.summaries
                )
            )
            params += [_utc(now) - offsets[kind], limit]
        with self.datastore.transaction(commit=False) as curs:
            curs.execute(SQL(" UNION ALL ").join(branches), params)
            rows = curs.fetchall()
        return _earliest_due(((row["deal_id"], row["due_from"] + offsets[kinds[row["kind"]]]) for row in rows), limit)

    def select_next_due(self, offsets: Mapping[str, timedelta]) -> datetime | None:
        """The earliest moment anything falls due under these offsets (None: nothing of theirs is scheduled)."""
        kinds = _kinds(offsets)
        if not kinds:
            return None
        firsts = SQL(", ").join(
            SQL("(SELECT {c} FROM {t} WHERE {c} IS NOT NULL ORDER BY {c} LIMIT 1) AS {c}").format(c=Identifier(_DUE_FROM[kind]), t=self.summaries)
            for kind in kinds
        )
        with self.datastore.transaction(commit=False) as curs:
            curs.execute(SQL("SELECT ") + firsts)
            row = curs.fetchone()
        assert row is not None  # a SELECT without FROM has its one row
        moments = [row[_DUE_FROM[kind]].astimezone(UTC) + offsets[kind] for kind in kinds if row[_DUE_FROM[kind]] is not None]
        return min(moments, default=None)

    def select_unscheduled(self, limit: int) -> list[str]:
        """Deals whose row was written before deadlines existed (overdue NULL): they have no schedule yet."""
        with self.datastore.transaction(commit=False) as curs:
            curs.execute(SQL("SELECT deal_id FROM {t} WHERE overdue IS NULL ORDER BY deal_id LIMIT %s").format(t=self.summaries), (limit,))
            return [row["deal_id"] for row in curs.fetchall()]

    def select_receipt(self, idempotency_key: str) -> CommandReceipt | None:
        with self.datastore.transaction(commit=False) as curs:
            curs.execute(
                SQL("SELECT {c} FROM {t} WHERE idempotency_key = %s").format(c=_RECEIPT_COLUMNS, t=self.receipts),
                (idempotency_key,),
            )
            row = curs.fetchone()
        return None if row is None else CommandReceipt(**row)


def _utc(value: datetime) -> datetime:
    """A schedule moment as written and compared: timezone-aware (a naive one would be read in the session's zone)."""
    if value.tzinfo is None:
        raise ValueError(f"a schedule moment must be timezone-aware, not {value!r}")
    return value


def _kinds(offsets: Mapping[str, timedelta]) -> list[str]:
    unknown = set(offsets) - set(_DUE_FROM)
    if unknown:
        raise ValueError(f"not kinds of the schedule: {sorted(unknown)}")
    return [kind for kind in deadlines.SCHEDULE if kind in offsets]


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
        s.opened_at,
        s.updated_at,
        s.overdue,
        *(None if (moment := s.due_from.get(kind)) is None else _utc(moment) for kind in _DUE_FROM),
    )


def _summary(row: DictRow) -> DealSummary:
    return DealSummary(
        deal_id=row["deal_id"],
        title=row["title"],
        client_name=row["client_name"],
        owner=row["owner"],
        stage=row["stage"],
        version=row["version"],
        opened_at=row["opened_at"],
        updated_at=row["updated_at"],
        overdue=row["overdue"],
        due_from={kind: row[column].astimezone(UTC) for kind, column in _DUE_FROM.items() if row[column] is not None},
    )


def _earliest_due(due: Iterable[tuple[str, datetime]], limit: int) -> list[str]:
    """Deal ids by the earliest moment each falls due (then by id), each once, at most `limit`."""
    first: dict[str, datetime] = {}
    for deal_id, moment in due:
        if deal_id not in first or moment < first[deal_id]:
            first[deal_id] = moment
    return sorted(first, key=lambda deal_id: (first[deal_id], deal_id))[:limit]


class SnapshotRecorder(PostgresAggregateRecorder):
    """Snapshots, each chained when written and trusted when read only if its bytes match its entry.

    A snapshot that does not match is skipped with a warning, and the deal replayed from its events.
    """

    def __init__(self, datastore: PostgresDatastore, chain: ChainTables, *, events_table_name: str) -> None:
        super().__init__(datastore, events_table_name=events_table_name)
        self.chain = chain

    @created_alone
    def create_table(self) -> None:
        super().create_table()

    def select_stored(self, originator_id: UUID) -> Sequence[StoredEvent]:
        """Every snapshot of a stream as stored, trusted or not (for verify)."""
        return super().select_events(originator_id)

    def insert_events(self, stored_events: Sequence[StoredEvent], **kwargs: Any) -> Sequence[int] | None:
        # The library writes snapshots outside a transaction; the snapshot and its entry go in one here.
        if stored_events:
            with self.chain.counting(), self.datastore.transaction(commit=True) as curs:
                self.chain.append(curs, [snapshot_item(str(s.originator_id), s.originator_version, s.topic, s.state) for s in stored_events])
                self._insert_stored_events(curs, stored_events, **kwargs)
        return None

    def select_events(self, originator_id: UUID | str, **kwargs: Any) -> Sequence[StoredEvent]:
        snapshots = super().select_events(originator_id, **kwargs)
        if not snapshots:
            return snapshots
        with self.datastore.transaction(commit=False) as curs:
            return [s for s in snapshots if trusted(s, self.chain.select_content(curs, SNAPSHOT, stream_key(str(s.originator_id), s.originator_version)))]
