"""The notifier's record of deliveries, on a real SQLite file and a real PostgreSQL (the `settings`
fixture's store: the notifier keeps its own tables beside the deal service's)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from dealflow.deal_lifecycle.config import Settings
from dealflow.notifier.alerts import DealContext, compose
from dealflow.notifier.rules import Target
from dealflow.notifier.store import DEAD, DELIVERED, AlertStore

SIGNED = {
    "deal_id": "5f0c2b1e-0000-0000-0000-000000000000", "version": 9, "type": "ContractSigned",
    "timestamp": "2026-11-23T09:00:01+00:00", "actor": "crm", "correlation_id": "c", "data": {},
}  # fmt: skip
DEAL = DealContext(SIGNED["deal_id"], "Acme payroll", "Acme Ltd", "ann")


def alert_to(recipient: str) -> object:
    return compose(SIGNED, f"{SIGNED['deal_id']}:9", DEAL, Target(rule="signed", recipient=recipient, channel="hook", address=None, urgency="normal"))


@pytest.fixture
def store(settings: Settings, tmp_path: Path) -> Iterator[AlertStore]:
    alerts = AlertStore(sqlite_path=tmp_path / "alerts.sqlite3", database_url=settings.database_url)
    try:
        yield alerts
    finally:
        alerts.close()


def test_a_delivery_its_tries_and_its_text_are_recorded_together(store: AlertStore) -> None:
    alert = alert_to("owner")
    store.record_attempt(alert.id, 1, "failed", "webhook answered 503")
    assert not store.is_final(alert.id)
    store.record_outcome(alert, DELIVERED, 2, None, delivered_at_attempt=2)
    assert store.is_final(alert.id)
    assert [(n, result) for n, _, result, _ in store.attempts(alert.id)] == [(1, "failed"), (2, "delivered")]
    assert store.alert_text(alert.id) == (alert.title, alert.text)
    assert [(r.status, r.attempts) for r in store.alerts()] == [(DELIVERED, 2)]
    # A redelivered event finds it final: recording it again changes nothing.
    store.record_outcome(alert, DELIVERED, 3, None, delivered_at_attempt=3)
    assert [r.attempts for r in store.alerts()] == [2]


def test_a_dead_letter_keeps_its_tries_and_text(store: AlertStore) -> None:
    alert = alert_to("ops")
    for attempt in (1, 2, 3):
        store.record_attempt(alert.id, attempt, "failed", "connection refused")
    store.record_outcome(alert, DEAD, 3, "connection refused")
    assert [r.alert_id for r in store.alerts(failed=True)] == [alert.id]
    assert [result for _, _, result, _ in store.attempts(alert.id)] == ["failed"] * 3
    assert store.alert_text(alert.id) == (alert.title, alert.text)


def test_an_outcome_that_fails_leaves_neither_the_alert_nor_its_text(store: AlertStore) -> None:
    alert = alert_to("owner")
    broken = type("Broken", (), {**{k: getattr(alert, k) for k in ("id", "event_id", "deal_id", "event_type", "recipient", "channel", "address", "title")}, "text": object()})()
    with pytest.raises(Exception):  # noqa: B017, PT011 - the driver's own error: a value it cannot store
        store.record_outcome(broken, DELIVERED, 1, None, delivered_at_attempt=1)
    assert not store.is_final(alert.id)
    assert store.alert_text(alert.id) is None
    assert store.attempts(alert.id) == []
