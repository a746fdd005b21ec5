"""What `dealflow relay --status` says of a relay that is running, stopped, or gone without a word."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from dealflow.deal_lifecycle.adapters.relay_status import RELAYING, STOPPED, RelayState, Report

NOW = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)


def report(state: str, reported_seconds_ago: float) -> Report:
    relay = RelayState(state=state, holder="host-1:42", position=7, updated_at=NOW - timedelta(seconds=reported_seconds_ago))
    return Report(position=7, last_stored=9, lag=2, relay=relay, at=NOW)


def test_a_relay_that_reports_is_running() -> None:
    running = report(RELAYING, 10)
    assert not running.stale and running.as_json()["stale"] is False
    assert running.lines()[-1] == "relay:       relaying, led by host-1:42, last report 10s ago"


def test_a_relay_that_has_not_reported_for_long_is_said_not_to_be_running() -> None:
    gone = report(RELAYING, 120)  # killed, say: it never said it stopped
    assert gone.stale and gone.as_json()["stale"] is True
    assert gone.lines()[-1].startswith("relay:       not running: no report for 2m (it reports every 15 s); the last said relaying")


def test_a_relay_that_stopped_says_so_however_long_ago() -> None:
    stopped = report(STOPPED, 3600)
    assert not stopped.stale
    assert stopped.lines()[-1].startswith("relay:       stopped, led by host-1:42")
