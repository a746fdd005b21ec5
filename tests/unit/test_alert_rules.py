"""The alert rules file: the sample loads, invalid rules are refused naming the line, and events find their targets."""

from __future__ import annotations

from dataclasses import replace

from pathlib import Path

import pytest

from dealflow.notifier.alerts import DealContext, compose
from dealflow.notifier.rules import RulesError, load_rules
from tests.support import ROOT

SAMPLE = ROOT / "deploy" / "alert-rules.toml"
BASE = [
    "[channels.hook]",
    'type = "webhook"',
    'url = "http://127.0.0.1:9/alerts"',
    "",
    "[channels.mail]",
    'type = "email"',
    'host = "127.0.0.1"',
    'sender = "dealflow@firm.example"',
    "",
    "[recipients.ops]",
    'channel = "hook"',
    "",
    "[recipients.owner]",
    'channel = "mail"',
    'address = "{owner}@firm.example"',
    "",
    "[[rules]]",
    'name = "transitions"',
    'events = ["LetterOfIntentSigned"]',
    'notify = ["ops", "owner"]',
]


def write(tmp_path: Path, lines: list[str]) -> Path:
    path = tmp_path / "rules.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def refusal(path: Path) -> str:
    with pytest.raises(RulesError) as caught:
        load_rules(path)
    return str(caught.value)


def test_the_sample_alerts_on_everything_the_issue_names() -> None:
    rules = load_rules(SAMPLE)
    for event_type in (
        "LetterOfIntentSigned",
        "TransitionMeetingHeld",
        "ContractSigned",
        "WalkAwayConditionRaised",
        "WalkAwayConditionResolved",
        "WalkAwayConditionWaived",
        "SigningRefused",
        "EscalatedOverCounterpart",
        "WalkedAway",
    ):
        assert rules.targets(event_type, owner="ann"), event_type
    raised = {t.recipient: t for t in rules.targets("WalkAwayConditionRaised", owner="ann")}
    assert {t.urgency for t in raised.values()} == {"urgent"}
    assert raised["owner"].address == "ann@firm.example"
    assert {"owner", "approver", "ops"} <= set(raised)
    assert rules.targets("DealOpened", owner="ann") == []


def test_each_recipient_is_targeted_once_and_the_urgent_rule_wins(tmp_path: Path) -> None:
    lines = [*BASE, "", "[[rules]]", 'name = "again"', 'events = ["LetterOfIntentSigned"]', 'notify = ["ops"]', 'urgency = "urgent"']
    targets = load_rules(write(tmp_path, lines)).targets("LetterOfIntentSigned", owner="bo")
    assert [(t.recipient, t.urgency, t.address) for t in targets] == [("ops", "urgent", None), ("owner", "normal", "bo@firm.example")]


@pytest.mark.parametrize(
    ("change", "line_text", "problem"),
    [
        (('channel = "hook"', 'channel = "pager"'), 'channel = "pager"', "channel 'pager', which is not defined"),
        (('notify = ["ops", "owner"]', 'notify = ["ops", "cfo"]'), 'notify = ["ops", "cfo"]', "notifies 'cfo', which is not a recipient"),
        (('type = "webhook"', 'type = "carrier_pigeon"'), "[channels.hook]", "channels.hook: Input tag 'carrier_pigeon'"),
        (('url = "http://127.0.0.1:9/alerts"', 'url = "ftp://x"'), 'url = "ftp://x"', "channels.hook.url: String should match"),
        (('address = "{owner}@firm.example"', ""), "[recipients.owner]", "needs an address"),
        (('events = ["LetterOfIntentSigned"]', "events = []"), "events = []", "rules.0.events"),
    ],
)
def test_invalid_rules_are_refused_naming_the_line_and_problem(
    tmp_path: Path, change: tuple[str, str], line_text: str | None, problem: str
) -> None:
    lines = [change[1] if line == change[0] else line for line in BASE]
    path = write(tmp_path, lines)
    message = refusal(path)
    assert problem in message, message
    if line_text is not None:
        assert message.startswith(f"{path}:{lines.index(line_text) + 1}:"), message


def test_an_alert_names_the_deal_client_actor_evidence_and_next_step() -> None:
    rules = load_rules(SAMPLE)
    [owner] = [t for t in rules.targets("WalkAwayConditionRaised", owner="ann") if t.recipient == "owner"]
    event = {
        "deal_id": "d-1",
        "version": 4,
        "type": "WalkAwayConditionRaised",
        "timestamp": "2026-11-23T09:00:00+00:00",
        "actor": "dealflow",
        "correlation_id": "c",
        "data": {
            "kind": "term_beyond_limit",
            "subject": "payment_terms_days",
            "evidence": {"value": 90, "limit": 60},
            "policy_version": "sha256:abc",
        },
    }
    alert = compose(event, "d-1:4", DealContext("d-1", "Payroll outsourcing", "Acme Ltd", "ann"), owner)
    assert alert.id == "d-1:4/owner/email"
    assert alert.title == "URGENT: Walk-away condition raised: Payroll outsourcing (Acme Ltd)"
    assert "By: dealflow" in alert.text
    assert "Evidence: value=90" in alert.text.splitlines()  # the owner may not see the private limit
    assert "limit=60" in compose(event, "d-1:4", DealContext("d-1", "Payroll outsourcing", "Acme Ltd", "ann"), replace(owner, sees_private_limits=True)).text
    assert "What to do next: revise the term within the private limit" in alert.text
    assert "sha256:abc" in alert.text


def test_the_sample_alerts_the_owner_and_ops_when_time_runs_out() -> None:
    rules = load_rules(SAMPLE)
    for event_type, urgency in (("DeadlineMissed", "urgent"), ("ExpectationOverdue", "urgent"), ("ExpectationDueSoon", "normal")):
        targets = {t.recipient: t for t in rules.targets(event_type, owner="ann")}
        assert set(targets) == {"owner", "ops", "journal"}, event_type
        assert {t.urgency for t in targets.values()} == {urgency}, event_type
        assert targets["owner"].address == "ann@firm.example"
    for event_type in ("ExpectationMet", "ExpectationMissed"):
        assert {t.recipient for t in rules.targets(event_type, owner="ann")} == {"owner", "journal"}, event_type


def test_a_missed_deadline_alerts_the_owner_urgently_with_how_late_and_what_to_do() -> None:
    rules = load_rules(SAMPLE)
    [owner] = [t for t in rules.targets("DeadlineMissed", owner="ann") if t.recipient == "owner"]
    event = {
        "deal_id": "d-1", "version": 9, "type": "DeadlineMissed", "timestamp": "2026-12-10T09:30:00+00:00",
        "actor": "dealflow", "on_behalf_of": None, "correlation_id": "c",
        "data": {
            "deadline": "contract_within", "due_at": "2026-12-01T09:00:00+00:00",
            "expected": "the contract signed, after the transition meeting", "policy_version": "sha256:abc",
            "counted_from": "2026-11-01T09:00:00+00:00",
        },
    }  # fmt: skip
    alert = compose(event, "d-1:9", DealContext("d-1", "Payroll outsourcing", "Acme Ltd", "ann"), owner)
    assert (alert.id, alert.address, alert.urgency) == ("d-1:9/owner/email", "ann@firm.example", "urgent")
    assert alert.title == "URGENT: Deadline missed: Payroll outsourcing (Acme Ltd)"
    assert "Deadline: contract_within (the contract signed within 30 days of the first transition meeting)" in alert.text.splitlines()
    assert "How late: 9 days late when recorded" in alert.text.splitlines()
    assert "What to do next: clear the blockers and sign, or walk away." in alert.text.splitlines()
