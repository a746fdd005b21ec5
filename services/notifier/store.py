"""The notifier's own record: every delivery attempt and each alert's outcome, and dead letters.

An alert is identified by (event id, recipient, channel). Once it is delivered (or
dead-lettered) it is final, so an event redelivered after a crash sends nothing twice.
SQLite by default; PostgreSQL when a URL is given.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit, urlunsplit

from tenacity import Retrying, retry_if_exception_type, stop_after_attempt, wait_random_exponential

SCHEMA = [
    """CREATE TABLE IF NOT EXISTS notifier_alerts (
        alert_id TEXT PRIMARY KEY, event_id TEXT NOT NULL, deal_id TEXT NOT NULL, event_type TEXT NOT NULL,
        recipient TEXT NOT NULL, channel TEXT NOT NULL, address TEXT, status TEXT NOT NULL,
        attempts INTEGER NOT NULL, last_error TEXT, updated_at TEXT NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS notifier_alerts_deal ON notifier_alerts (deal_id, updated_at)",
    """CREATE TABLE IF NOT EXISTS notifier_attempts (
        alert_id TEXT NOT NULL, attempt INTEGER NOT NULL, at TEXT NOT NULL, result TEXT NOT NULL, error TEXT,
        PRIMARY KEY (alert_id, attempt))""",
    # What each alert said, beside its delivery record (a table of its own, so stores made before it need no migration).
    """CREATE TABLE IF NOT EXISTS notifier_alert_texts (
        alert_id TEXT PRIMARY KEY, title TEXT NOT NULL, text TEXT NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS notifier_dead_letters (
        message_id TEXT PRIMARY KEY, subject TEXT NOT NULL, reason TEXT NOT NULL, data TEXT NOT NULL, at TEXT NOT NULL)""",
]

DELIVERED, DEAD = "delivered", "dead"
_COLUMNS = "alert_id, event_id, deal_id, event_type, recipient, channel, address, status, attempts, last_error, updated_at"


class NoAlertStore(LookupError):
    """The configured PostgreSQL database or schema holds no alert store."""


class AlertStoreUnreachable(ConnectionError):
    """The configured PostgreSQL server cannot be reached (down, or no such database)."""


@dataclass(frozen=True)
class AlertRecord:
    alert_id: str
    event_id: str
    deal_id: str
    event_type: str
    recipient: str
    channel: str
    address: str | None
    status: str
    attempts: int
    last_error: str | None
    updated_at: str


def now() -> str:
    return datetime.now(UTC).isoformat()


class AlertStore:
    """Blocking calls; the notifier runs them in a thread."""

    def __init__(self, *, sqlite_path: Path | None = None, database_url: str | None = None, create: bool = True) -> None:
        """Open the store; with `create=False` (the read-only `dealflow alerts`) a missing one is NoAlertStore."""
        self._lock = threading.Lock()
        if database_url:
            import psycopg  # noqa: PLC0415 - only with PostgreSQL

            url = urlsplit(database_url)
            schema = parse_qs(url.query).get("schema", [""])[0]
            try:
                self._conn: Any = psycopg.connect(urlunsplit((url.scheme, url.netloc, url.path, "", "")), autocommit=True)
            except psycopg.OperationalError as error:
                raise AlertStoreUnreachable(str(error).strip()) from error
            if schema:
                if create:
                    self._conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
                self._conn.execute(f'SET search_path TO "{schema}"')
            if not create and self._conn.execute("SELECT to_regclass('notifier_alerts')").fetchone()[0] is None:
                self._conn.close()
                raise NoAlertStore(database_url)
            self._placeholder = "%s"
        else:
            assert sqlite_path is not None
            if not create and not sqlite_path.is_file():
                raise NoAlertStore(str(sqlite_path))
            sqlite_path.parent.mkdir(parents=True, exist_ok=True)
            self._conn = sqlite3.connect(sqlite_path, isolation_level=None, check_same_thread=False, timeout=30)
            # Two notifiers starting at once on a new file race to switch it to WAL; the loser retries.
            for attempt in Retrying(
                retry=retry_if_exception_type(sqlite3.OperationalError),
                stop=stop_after_attempt(20),
                wait=wait_random_exponential(multiplier=0.05, max=1),
                reraise=True,
            ):
                with attempt:
                    self._conn.execute("PRAGMA journal_mode=WAL")
            self._placeholder = "?"
        for statement in SCHEMA:
            self._execute(statement)

    def close(self) -> None:
        self._conn.close()

    @contextmanager
    def _cursor(self) -> Iterator[Any]:
        with self._lock:
            cursor = self._conn.cursor()
            try:
                yield cursor
            finally:
                cursor.close()

    def _execute(self, statement: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        with self._cursor() as cursor:
            cursor.execute(statement.replace("?", self._placeholder), params)
            return list(cursor.fetchall()) if cursor.description else []

    def is_final(self, alert_id: str) -> bool:
        return bool(self._execute("SELECT 1 FROM notifier_alerts WHERE alert_id = ?", (alert_id,)))

    def record_attempt(self, alert_id: str, attempt: int, result: str, error: str | None) -> None:
        self._execute(*self._attempt(alert_id, attempt, result, error))

    @staticmethod
    def _attempt(alert_id: str, attempt: int, result: str, error: str | None) -> tuple[str, Sequence[Any]]:
        return (
            "INSERT INTO notifier_attempts (alert_id, attempt, at, result, error) VALUES (?, ?, ?, ?, ?) "
            "ON CONFLICT (alert_id, attempt) DO UPDATE SET at = excluded.at, result = excluded.result, error = excluded.error",
            (alert_id, attempt, now(), result, error),
        )

    def record_outcome(self, alert: Any, status: str, attempts: int, error: str | None, *, delivered_at_attempt: int | None = None) -> None:
        """The alert's final outcome and its text, in one transaction (one fsync; never one without the
        other), with the try that delivered it when `delivered_at_attempt` is given."""
        statements: list[tuple[str, Sequence[Any]]] = []
        if delivered_at_attempt is not None:
            statements.append(self._attempt(alert.id, delivered_at_attempt, "delivered", None))
        statements.append((
            f"INSERT INTO notifier_alerts ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (alert_id) DO NOTHING",
            (alert.id, alert.event_id, alert.deal_id, alert.event_type, alert.recipient, alert.channel, alert.address, status, attempts, error, now()),
        ))
        statements.append((
            "INSERT INTO notifier_alert_texts (alert_id, title, text) VALUES (?, ?, ?) ON CONFLICT (alert_id) DO NOTHING",
            (alert.id, alert.title, alert.text),
        ))
        self._in_one_transaction(statements)

    def _in_one_transaction(self, statements: Sequence[tuple[str, Sequence[Any]]]) -> None:
        with self._cursor() as cursor:
            if isinstance(self._conn, sqlite3.Connection):
                cursor.execute("BEGIN IMMEDIATE")
                try:
                    for statement, params in statements:
                        cursor.execute(statement, params)
                except BaseException:
                    cursor.execute("ROLLBACK")
                    raise
                cursor.execute("COMMIT")
                return
            with self._conn.transaction():
                for statement, params in statements:
                    cursor.execute(statement.replace("?", self._placeholder), params)

    def alert_text(self, alert_id: str) -> tuple[str, str] | None:
        """The title and text the alert said; None for an alert recorded before texts were kept."""
        rows = self._execute("SELECT title, text FROM notifier_alert_texts WHERE alert_id = ?", (alert_id,))
        return (rows[0][0], rows[0][1]) if rows else None

    def record_dead_letter(self, message_id: str, subject: str, reason: str, data: str) -> None:
        self._execute(
            "INSERT INTO notifier_dead_letters (message_id, subject, reason, data, at) VALUES (?, ?, ?, ?, ?) "
            "ON CONFLICT (message_id) DO NOTHING",
            (message_id, subject, reason, data, now()),
        )

    def alerts(self, *, deal_id: str | None = None, failed: bool = False) -> list[AlertRecord]:
        where, params = [], []
        if deal_id:
            where.append("deal_id = ?")
            params.append(deal_id)
        if failed:
            where.append("status = ?")
            params.append(DEAD)
        statement = f"SELECT {_COLUMNS} FROM notifier_alerts"
        if where:
            statement += " WHERE " + " AND ".join(where)
        return [AlertRecord(*row) for row in self._execute(statement + " ORDER BY updated_at, alert_id", params)]

    def alert(self, alert_id: str) -> AlertRecord | None:
        rows = self._execute(f"SELECT {_COLUMNS} FROM notifier_alerts WHERE alert_id = ?", (alert_id,))
        return AlertRecord(*rows[0]) if rows else None

    def attempts(self, alert_id: str) -> list[tuple[int, str, str, str | None]]:
        return [
            (row[0], row[1], row[2], row[3])
            for row in self._execute(
                "SELECT attempt, at, result, error FROM notifier_attempts WHERE alert_id = ? ORDER BY attempt", (alert_id,)
            )
        ]

    def dead_letters(self) -> list[tuple[str, str, str, str]]:
        return [
            (row[0], row[1], row[2], row[3])
            for row in self._execute("SELECT message_id, subject, reason, at FROM notifier_dead_letters ORDER BY at")
        ]
