"""Relay stalls alert people: the sample rules alert ops, misspelt events are refused, and the text says what to do."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from dealflow.deal_lifecycle.adapters.relay_status import Stall
from dealflow.notifier.alerts import DealContext, compose_relay
from dealflow.notifier.rules import RulesError, load_rules
from dealflow.notifier.schemas import EventSchemas
from tests.support import ROOT

SAMPLE = ROOT / "deploy" / "alert-rules.toml"
STALL = Stall(
    notification_id=1203,
    event_id="5f0c2b1e:7",
    deal_id="5f0c2b1e",
    event_type="SigningRefused",
    size_bytes=1_450_112,
    reason="1450112 bytes is over the NATS server's max_payload of 1048576 bytes",
    since=datetime(2026, 11, 23, 21, 2, 11, tzinfo=UTC),
)
DEAL = DealContext("5f0c2b1e", "Payroll outsourcing", "Acme Ltd", "ann")


def body(position: int = 1202) -> dict[str, object]:
    """What the relay publishes (relay_status.Stall.message)."""
    return dict(json.loads(STALL.message(position)))


def test_the_sample_alerts_ops_urgently_on_a_stall_and_its_resume() -> None:
    rules = load_rules(SAMPLE)
    for kind in ("RelayStalled", "RelayResumed"):
        targets = {t.recipient: t for t in rules.targets(kind, owner=None)}
        assert "ops" in targets and targets["ops"].urgency == "urgent", kind


def test_a_rule_naming_an_event_that_does_not_exist_is_refused_at_start_up(tmp_path: Path) -> None:
    text = SAMPLE.read_text().replace('events = ["RelayStalled", "RelayResumed"]', 'events = ["RelayStaled"]')
    path = tmp_path / "rules.toml"
    path.write_text(text)
    with pytest.raises(RulesError) as refused:
        load_rules(path)
    line = text.splitlines().index('events = ["RelayStaled"]') + 1
    assert str(refused.value).startswith(f"{path}:{line}:") and "'RelayStaled'" in str(refused.value)


def test_a_stall_alert_says_which_event_why_since_when_and_what_to_do() -> None:
    [ops] = [t for t in load_rules(SAMPLE).targets("RelayStalled", owner=None) if t.recipient == "ops"]
    EventSchemas().check_relay_stall(body())
    alert = compose_relay("RelayStalled", body(), DEAL, ops)
    assert alert.title == "URGENT: Relay stalled: deal events no longer reach NATS at notification 1203"
    for expected in (
        "SigningRefused 5f0c2b1e:7 (notification 1203)",
        "Payroll outsourcing for Acme Ltd",
        "1450112 bytes",
        "over the NATS server's max_payload of 1048576 bytes",
        "Since: 2026-11-23T21:02:11Z",
        "dealflow relay --status",
        "--nats-max-payload",
    ):
        assert expected in alert.text, expected
    # The relay repeats a stall every minute, its position unchanged or not: one alert id per stall.
    assert compose_relay("RelayStalled", body(1202), DEAL, ops).id == compose_relay("RelayStalled", body(1190), DEAL, ops).id
    resumed = compose_relay("RelayResumed", body(1203), DEAL, ops)
    assert resumed.id != alert.id and "published SigningRefused 5f0c2b1e:7" in resumed.text
