"""The notifier's record of deliveries, read for `GET /alerts` (the ops dashboard's alerts page).

The one place the deal service reads the notifier's store: opened read-only (`create=False`, as
`dealflow alerts` opens it) on each call, at the path or URL the notifier itself is configured with
(`DEALFLOW_NOTIFIER_DB`, default `var/notifier.sqlite3`, or `DEALFLOW_NOTIFIER_DATABASE_URL`), and
closed again. What an alert *said* is not shown: its text may carry the private limits that only
some recipients see.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, TypedDict

from dealflow.deal_lifecycle.domain.errors import NotFound
from dealflow.notifier.settings import NotifierSettings
from dealflow.notifier.store import AlertStore, AlertStoreUnreachable, NoAlertStore

MAX_LIMIT = 500


class AlertsUnavailable(NotFound):
    """No notifier store where the notifier's settings point (it never ran here), or it cannot be reached."""

    code = "alerts_unavailable"


class AttemptView(TypedDict):
    attempt: int
    at: str
    result: str
    error: str | None


class AlertView(TypedDict):
    alert_id: str
    event_id: str
    deal_id: str
    event_type: str
    recipient: str
    channel: str
    address: str | None
    status: str  # delivered or dead (dead-lettered after its last try)
    attempts: int
    last_error: str | None
    updated_at: str
    tries: list[AttemptView]


class DeadLetterView(TypedDict):
    message_id: str
    subject: str
    reason: str
    at: str


class AlertsView(TypedDict):
    store: str
    alerts: list[AlertView]  # newest first
    dead_letters: list[DeadLetterView]  # messages the notifier could not read, newest first


@dataclass(frozen=True)
class AlertLog:
    """Where the notifier keeps its record (its own settings)."""

    sqlite_path: Path = NotifierSettings.sqlite_path
    database_url: str | None = None

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> AlertLog:
        settings = NotifierSettings.from_env(environ)
        return cls(sqlite_path=settings.sqlite_path, database_url=settings.database_url)

    def describe(self) -> str:
        return NotifierSettings(sqlite_path=self.sqlite_path, database_url=self.database_url).describe_store()

    def recent(self, *, deal_id: str | None = None, limit: int = 100) -> AlertsView:
        """The newest `limit` alerts (of one deal, when given) with their tries, and the newest dead letters."""
        limit = max(1, min(limit, MAX_LIMIT))
        try:
            store = AlertStore(sqlite_path=self.sqlite_path, database_url=self.database_url, create=False)
        except NoAlertStore:
            raise AlertsUnavailable(f"no notifier store at {self.describe()}: alerts appear once the notifier has run here") from None
        except AlertStoreUnreachable:
            raise AlertsUnavailable(f"the notifier store at {self.describe()} cannot be reached") from None
        try:
            records = store.alerts(deal_id=deal_id)[-limit:][::-1]
            alerts: list[AlertView] = [
                {
                    **_fields(record),
                    "tries": [{"attempt": a, "at": at, "result": result, "error": error} for a, at, result, error in store.attempts(record.alert_id)],
                }
                for record in records
            ]
            letters = [
                {"message_id": message_id, "subject": subject, "reason": reason, "at": at}
                for message_id, subject, reason, at in store.dead_letters()
                # A dead letter is a message, not an alert of a deal: of one deal, those on its subjects.
                if deal_id is None or deal_id in subject.split(".")
            ][-limit:][::-1]
        finally:
            store.close()
        return {"store": self.describe(), "alerts": alerts, "dead_letters": letters}


def _fields(record: Any) -> dict[str, Any]:
    # The record as the notifier keeps it (AlertRecord), but for the deal's owner, which the view does not repeat.
    return {name: value for name, value in asdict(record).items() if name != "owner"}
