"""The relay's status, kept in the event store's database so that any process can read it.

The leading relay writes one row: who leads, its position, what it is doing and, when it
is stalled, at which event and why. `dealflow relay --status` and `dealflow up` read it.
It lives in the store's own database because that is what every relay and every
operator's shell already reaches, on SQLite and PostgreSQL alike (a file beside SQLite
would not reach the other hosts a PostgreSQL deployment runs relays on), and it is as
durable as the position it describes.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from typing import Any

from eventsourcing.postgres import PostgresDatastore
from psycopg.sql import SQL, Composed, Identifier
from pydantic import BaseModel, Field

from dealflow.deal_lifecycle.adapters.bus import PUBLISHED_TOPICS, RELAY_RESUMED_SUBJECT, RELAY_STALLED_SUBJECT
from dealflow.deal_lifecycle.adapters.storage.postgres import created_alone

RELAY_NAME = "deals.events.relay"
# Published on core NATS when the relay stalls (again at most once a minute while it stays
# stalled) and once when it resumes: for monitoring, and for the notifier, which alerts people.
STALLED_SUBJECT = RELAY_STALLED_SUBJECT
RESUMED_SUBJECT = RELAY_RESUMED_SUBJECT

# What the relay is doing: waiting means for NATS or the store (the last error says which).
RELAYING, WAITING, STALLED, RESTARTING, STOPPED = "relaying", "waiting", "stalled", "restarting", "stopped"
# A running relay reports at least this often; a report much older says no relay runs on the store now.
HEARTBEAT_SECONDS = 15.0
STALE_AFTER_SECONDS = 3 * HEARTBEAT_SECONDS


def now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class Stall:
    """The event the relay stopped at, and why it cannot be published."""

    notification_id: int
    event_id: str
    deal_id: str
    event_type: str
    size_bytes: int
    reason: str
    since: datetime

    def message(self, position: int) -> bytes:
        """The body of a `deals.relay.stalled` (or `.resumed`) message."""
        return RelayStalledMessage(**asdict(self), position=position).model_dump_json().encode()


class RelayStalledMessage(BaseModel):
    """On deals.relay.stalled: the relay cannot publish this event, and publishes nothing after it until
    it can; on deals.relay.resumed: it has now published it."""

    notification_id: int = Field(description="the event's position in the store's event log")
    event_id: str = Field(description="<originator id>:<version>, its Nats-Msg-Id")
    deal_id: str
    event_type: str
    size_bytes: int = Field(description="the message's size on the wire, headers included")
    reason: str = Field(description="why it cannot be published, e.g. over the server's max_payload")
    since: datetime = Field(description="when the relay first stalled at it")
    position: int = Field(description="the last notification the relay has published")


@dataclass(frozen=True)
class RelayState:
    state: str
    holder: str
    position: int
    updated_at: datetime
    stall: Stall | None = None
    last_error: str | None = None

    def but(self, **changes: Any) -> RelayState:
        return replace(self, updated_at=now(), **changes)


class StatusTable:
    """One row per relay name, a JSON document: the same statements on SQLite and PostgreSQL."""

    def __init__(self, recorder: Any) -> None:
        self.datastore = recorder.datastore
        if isinstance(self.datastore, PostgresDatastore):
            schema = Identifier(self.datastore.schema)
            self.table: Any = Composed([schema, SQL("."), Identifier(f"{recorder.events_table_name}_relay_status")])
            self.events: Any = Composed([schema, SQL("."), Identifier(recorder.events_table_name)])
            self.mark, self.id_column = "%s", "notification_id"
        else:
            self.table, self.events = SQL("relay_status"), SQL(recorder.events_table_name)
            self.mark, self.id_column = "?", "rowid"

    def _sql(self, text: str, **names: Any) -> Any:
        statement = SQL(text.replace("?", self.mark)).format(**names)
        return statement if isinstance(self.datastore, PostgresDatastore) else statement.as_string(None)

    @created_alone  # two processes creating it at once on PostgreSQL
    def create(self) -> None:
        with self.datastore.transaction(commit=True) as c:
            c.execute(self._sql("CREATE TABLE IF NOT EXISTS {t} (name TEXT PRIMARY KEY, document TEXT NOT NULL)", t=self.table))

    def write(self, state: RelayState) -> None:
        document = json.dumps(_jsonable(asdict(state)))
        with self.datastore.transaction(commit=True) as c:
            c.execute(
                self._sql(
                    "INSERT INTO {t} (name, document) VALUES (?, ?) ON CONFLICT (name) DO UPDATE SET document = excluded.document",
                    t=self.table,
                ),
                (RELAY_NAME, document),
            )

    def read(self) -> RelayState | None:
        with self.datastore.transaction(commit=False) as c:
            c.execute(self._sql("SELECT document FROM {t} WHERE name = ?", t=self.table), (RELAY_NAME,))
            row = c.fetchone()
        if row is None:
            return None
        data = json.loads(row["document"] if isinstance(row, dict) else row[0])
        stall = data.pop("stall")
        return RelayState(
            **{**data, "updated_at": datetime.fromisoformat(data["updated_at"])},
            stall=None if stall is None else Stall(**{**stall, "since": datetime.fromisoformat(stall["since"])}),
        )

    def count_after(self, position: int) -> int:
        """How many published events are stored after the position: the relay's lag."""
        marks = ", ".join([self.mark] * len(PUBLISHED_TOPICS))
        with self.datastore.transaction(commit=False) as c:
            c.execute(
                self._sql(f"SELECT COUNT(*) AS n FROM {{e}} WHERE {self.id_column} > ? AND topic IN ({marks})", e=self.events),
                (position, *PUBLISHED_TOPICS),
            )
            row = c.fetchone()
        return int(row["n"] if isinstance(row, dict) else row[0])


@dataclass(frozen=True)
class Report:
    """What `dealflow relay --status` shows."""

    position: int
    last_stored: int
    lag: int
    relay: RelayState | None
    at: datetime

    @property
    def stalled(self) -> bool:
        return self.relay is not None and self.relay.state == STALLED

    @property
    def stale(self) -> bool:
        """The last report is too old for a relay that is still running: none runs on this store now."""
        return (
            self.relay is not None
            and self.relay.state != STOPPED
            and (self.at - self.relay.updated_at).total_seconds() > STALE_AFTER_SECONDS
        )

    def as_json(self) -> dict[str, Any]:
        return _jsonable({**asdict(self), "stalled": self.stalled, "stale": self.stale})

    def lines(self) -> list[str]:
        out = []
        relay = self.relay
        if relay is not None and relay.stall is not None and self.stalled:
            s = relay.stall
            out += [
                f"STALLED at notification {s.notification_id} since {_when(s.since)} ({_ago(self.at, s.since)} ago)",
                f"  event:  {s.event_type} {s.event_id} (deal {s.deal_id}), {s.size_bytes} bytes",
                f"  reason: {s.reason}",
                "  nothing after it is published until it is; the relay retries by itself (see README, On NATS JetStream)",
            ]
        out += [
            f"position:    {self.position} (saved)",
            f"last stored: {self.last_stored}",
            f"lag:         {self.lag} event(s) to publish",
        ]
        if relay is None:
            out.append("relay:       has never reported (none has run on this store yet)")
        elif self.stale:
            out.append(
                f"relay:       not running: no report for {_ago(self.at, relay.updated_at)} (it reports every "
                f"{HEARTBEAT_SECONDS:g} s); the last said {relay.state}, led by {relay.holder}. Nothing is published until a relay runs"
            )
        else:
            out.append(f"relay:       {relay.state}, led by {relay.holder}, last report {_ago(self.at, relay.updated_at)} ago")
            if relay.last_error and relay.state != RELAYING:
                out.append(f"last error:  {relay.last_error}")
        return out


def report(deals: Any, tracking: Any) -> Report:
    table = StatusTable(deals.recorder)
    table.create()
    position = tracking.max_tracking_id(RELAY_NAME) or 0
    return Report(
        position=position,
        last_stored=deals.recorder.max_notification_id() or 0,
        lag=table.count_after(position),
        relay=table.read(),
        at=now(),
    )


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    return value


def _when(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _ago(at: datetime, then: datetime) -> str:
    seconds = max(0, int((at - then).total_seconds()))
    if seconds < 120:
        return f"{seconds}s"
    if seconds < 7200:
        return f"{seconds // 60}m"
    return f"{seconds // 3600}h"


class Announcer:
    """What `dealflow up` says about the relay: a loud line when it stalls (again every few
    minutes while it stays stalled), one line when it resumes, nothing while all is well."""

    def __init__(self, repeat_seconds: float = 300.0) -> None:
        self.repeat_seconds = repeat_seconds
        self.stalled_at: int | None = None
        self.said_at: datetime | None = None

    def lines(self, current: Report) -> list[str]:
        stall = current.relay.stall if current.relay is not None and current.stalled else None
        if stall is None:
            if self.stalled_at is None:
                return []
            resumed, self.stalled_at, self.said_at = self.stalled_at, None, None
            return [f"dealflow: the relay resumed: notification {resumed} is published, lag {current.lag} event(s)"]
        due = self.said_at is None or (current.at - self.said_at).total_seconds() >= self.repeat_seconds
        if stall.notification_id == self.stalled_at and not due:
            return []
        self.stalled_at, self.said_at = stall.notification_id, current.at
        return [
            f"dealflow: RELAY STALLED since {_when(stall.since)} at notification {stall.notification_id} "
            f"({stall.event_type} {stall.event_id}, {stall.size_bytes} bytes): {stall.reason}. "
            f"{current.lag} event(s) wait behind it and do not reach NATS; see `dealflow relay --status`."
        ]
