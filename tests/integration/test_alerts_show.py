"""`dealflow alerts --show ID`: what an alert said, not only whether it arrived, from the
notifier's real store, through the real CLI in its own process."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from dealflow.notifier.alerts import DealContext, compose
from dealflow.notifier.rules import Target
from dealflow.notifier.store import AlertStore
from tests.integration.test_terminal_output import ANSI, RAW, dealflow, env  # noqa: F401 (env is a fixture)

WAIVED = {
    "deal_id": "5f0c2b1e-0000-0000-0000-000000000000", "version": 7, "type": "WalkAwayConditionWaived",
    "timestamp": "2026-11-23T09:00:01+00:00", "actor": "vic@firm", "correlation_id": "c",
    "data": {
        "condition_id": "cond-1", "reason": f"strategic logo {ANSI}", "kind": "term_beyond_limit",
        "subject": "payment_terms_days", "evidence": {"value": 90, "limit": 60},
    },
}  # fmt: skip
TARGET = Target(rule="conditions", recipient="owner", channel="journal", address=None, urgency="normal")


def test_an_alert_shows_its_text_and_its_delivery(env: dict[str, str]) -> None:
    alert = compose(WAIVED, "5f0c2b1e:7", DealContext(WAIVED["deal_id"], "Acme payroll", "Acme Ltd", "ann"), TARGET)
    store = AlertStore(sqlite_path=Path(env["DEALFLOW_NOTIFIER_DB"]))
    try:
        store.record_outcome(alert, "delivered", 1, None)
    finally:
        store.close()

    listed = dealflow(env, "alerts")
    assert listed.stdout.rstrip().endswith(f"tries=1  id={alert.id}"), listed.stdout  # the id --show takes
    shown = dealflow(env, "alerts", "--show", alert.id)
    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.splitlines()
    assert lines[0] == "delivered to owner via journal, tries=1"
    assert lines[1] == "Walk-away condition waived: Acme payroll (Acme Ltd)"
    assert "Condition: term_beyond_limit on payment_terms_days (id cond-1)" in lines
    assert "Waived by: vic@firm" in lines
    assert RAW.search(shown.stdout.replace("\n", "")) is None

    as_json = json.loads(dealflow(env, "alerts", "--show", alert.id, "--json").stdout)
    assert (as_json["alert_id"], as_json["title"], as_json["text"]) == (alert.id, alert.title, alert.text)

    missing = dealflow(env, "alerts", "--show", "no-such-alert")
    assert missing.returncode == 2
    assert "no alert no-such-alert" in missing.stderr


def test_an_alert_stored_before_texts_were_kept_says_so(env: dict[str, str]) -> None:
    # A store as the notifier wrote it before it kept texts: the alerts table only.
    with sqlite3.connect(env["DEALFLOW_NOTIFIER_DB"]) as old:
        old.execute(
            "CREATE TABLE notifier_alerts (alert_id TEXT PRIMARY KEY, event_id TEXT NOT NULL, deal_id TEXT NOT NULL, "
            "event_type TEXT NOT NULL, recipient TEXT NOT NULL, channel TEXT NOT NULL, address TEXT, status TEXT NOT NULL, "
            "attempts INTEGER NOT NULL, last_error TEXT, updated_at TEXT NOT NULL)"
        )
        old.execute(
            "INSERT INTO notifier_alerts VALUES ('a/owner/journal', 'a', 'd', 'ContractSigned', 'owner', 'journal', NULL, "
            "'delivered', 1, NULL, '2026-11-23T09:00:00+00:00')"
        )
    shown = dealflow(env, "alerts", "--show", "a/owner/journal")
    assert shown.returncode == 0, shown.stderr
    assert "its text was not kept" in shown.stdout


def test_alerts_of_a_deal_take_its_whole_id_and_say_so_for_a_short_one(env: dict[str, str]) -> None:
    alert = compose(WAIVED, "5f0c2b1e:7", DealContext(WAIVED["deal_id"], "Acme payroll", "Acme Ltd", "ann"), TARGET)
    store = AlertStore(sqlite_path=Path(env["DEALFLOW_NOTIFIER_DB"]))
    try:
        store.record_outcome(alert, "delivered", 1, None)
    finally:
        store.close()
    assert "5f0c2b1e" in dealflow(env, "alerts", "--deal", WAIVED["deal_id"]).stdout
    short = dealflow(env, "alerts", "--deal", "5f0c2b1e")  # the listing shows 8 characters: a user copies those
    assert (short.returncode, short.stdout) == (2, "")
    assert "--deal takes a deal's whole id, not '5f0c2b1e'" in short.stderr
