"""What an alert says, from events the domain really records: a waiver names its condition and who
waived it, and a refused signing of a closed deal does not advise clearing blockers. When time
runs out, the alert names the deadline or the expectation, when it was due, how late it is, what
was expected and what to do next."""

from __future__ import annotations

import re
from dataclasses import replace
from datetime import timedelta

import pytest

from dealflow.deal_lifecycle.application.views import event_view
from dealflow.deal_lifecycle.domain.deal import Deal
from dealflow.deal_lifecycle.domain.errors import SigningRefused
from dealflow.deal_lifecycle.domain.model import Side
from dealflow.notifier.alerts import DealContext, compose, describe, duration_words, how_late
from dealflow.notifier.rules import Target
from dealflow.notifier.schemas import EventSchemas
from dealflow.terminal import printable
from tests.support import BY, POLICY, domain_deal_in_meeting
from tests.unit.test_deal import signable
from tests.unit.test_terminal_text import HOSTILE, RAW

APPROVER_BY = replace(BY, actor="vic@firm")


def context(deal: Deal) -> DealContext:
    return DealContext(str(deal.id), deal.title, deal.client_name, deal.owner)


def test_a_waiver_alert_names_the_condition_its_evidence_who_waived_it_and_why() -> None:
    deal = domain_deal_in_meeting()
    deal.propose_term(term="payment_terms_days", value=90, side=Side.CLIENT, policy=POLICY, by=BY)
    [condition_id] = list(deal.conditions)
    deal.collect_events()
    deal.waive_condition(condition_id, reason="strategic logo, CFO signed off", role="approver", by=APPROVER_BY)
    [waived] = [event_view(e, limits=True) for e in deal.collect_events()]
    EventSchemas().check(waived, 3)

    _, text = describe(waived, context(deal))
    assert f"Condition: term_beyond_limit on payment_terms_days (id {condition_id})" in text.splitlines()
    assert any(line.startswith("Evidence: ") and "90" in line for line in text.splitlines())
    assert "Waived by: vic@firm (as approver)" in text.splitlines()
    assert "Reason: strategic logo, CFO signed off" in text.splitlines()


def test_a_version_1_waiver_still_reads_with_its_condition_id() -> None:
    v1 = {
        "deal_id": "d", "version": 5, "type": "WalkAwayConditionWaived", "timestamp": "2026-11-23T10:00:00+00:00",
        "actor": "vic@firm", "correlation_id": "c", "data": {"condition_id": "cond-1", "reason": "fine"},
    }  # fmt: skip
    EventSchemas().check(v1, 1)
    _, text = describe(v1, DealContext("d", "Acme payroll", "Acme Ltd", "ann"))
    assert {"Condition: cond-1", "Waived by: vic@firm", "Reason: fine"} <= set(text.splitlines())


@pytest.mark.parametrize("close", ["sign", "walk away"])
def test_refusing_to_sign_a_closed_deal_does_not_advise_clearing_blockers(close: str) -> None:
    deal = signable()
    if close == "sign":
        deal.sign_contract(by=BY)
    else:
        deal.walk_away(reason="the client went quiet", by=BY)
    with pytest.raises(SigningRefused) as refused:
        deal.sign_contract(by=BY)
    assert [b.code for b in refused.value.blockers] == ["stage"]
    assert "signing happens after the transition meeting" not in str(refused.value)

    event = {
        "deal_id": str(deal.id), "version": deal.version, "type": "SigningRefused", "timestamp": "2026-11-23T10:00:00+00:00",
        "actor": "ann@firm", "correlation_id": "c",
        "data": {"blockers": [{"code": b.code, "message": b.message} for b in refused.value.blockers]},
    }  # fmt: skip
    _, text = describe(event, context(deal))
    assert "clear every blocker" not in text
    assert "the deal is closed" in text


def test_a_private_limit_is_in_alerts_only_to_recipients_who_may_see_it() -> None:
    deal = domain_deal_in_meeting()
    deal.collect_events()
    deal.propose_term(term="payment_terms_days", value=90, side=Side.CLIENT, policy=POLICY, by=BY)  # limit 60: raised
    deal.propose_term(term="payment_terms_days", value=58, side=Side.CLIENT, policy=POLICY, by=BY)  # within it: resolved
    views = [event_view(e, limits=True) for e in deal.collect_events()]
    raised, resolved = (next(v for v in views if v["type"] == kind) for kind in ("WalkAwayConditionRaised", "WalkAwayConditionResolved"))
    for target, shown in ((Target("r", "ops", "chat", None, "urgent"), False), (Target("r", "approver", "mail", "a@firm", "urgent", True), True)):
        for view in (raised, resolved):
            alert = compose(view, "e1", context(deal), target)
            limit_shown = re.search(r"(?<![\w.\-])60(?![\w.])", alert.text) is not None
            assert (limit_shown, "limit" in alert.event["data"].get("evidence", {})) == (shown, shown and view is raised), (target.recipient, view["type"], alert.text)
            assert ("value=90" in alert.text) == (view is raised)


# -- deadlines: timing is everything -------------------------------------------------------------

DEAL_ID = "5f0c2b1e-0000-4000-8000-000000000001"
DEAL = DealContext(DEAL_ID, "Payroll outsourcing", "Acme Ltd", "ann")
EXPECTATION_ID = "e-42"
OUTCOME_CALL = f"POST /deals/{DEAL_ID}/expectations/{EXPECTATION_ID}/outcome"


def deal_event(kind: str, data: dict[str, object], *, at: str, actor: str = "dealflow") -> dict[str, object]:
    """An event as the deal service publishes it: the envelope every deal event has, and its data."""
    return {
        "deal_id": DEAL_ID, "version": 9, "type": kind, "timestamp": at, "actor": actor, "on_behalf_of": None,
        "correlation_id": "tick", "data": data,
    }  # fmt: skip


def missed(deadline: str, *, counted_from: str, due_at: str, at: str, expected: str = "what was expected") -> dict[str, object]:
    data = {"deadline": deadline, "due_at": due_at, "expected": expected, "policy_version": "sha256:abc", "counted_from": counted_from}
    return deal_event("DeadlineMissed", data, at=at)


def expectation_event(kind: str, *, side: str = "client", at: str = "2027-02-19T00:00:00+00:00", **fields: str) -> dict[str, object]:
    data: dict[str, object] = {"expectation_id": EXPECTATION_ID, "side": side}
    if kind in ("ExpectationMet", "ExpectationMissed"):
        data["evidence"] = fields.get("evidence", "the February report, sent on 2027-02-20")
        return deal_event(kind, data, at=at, actor="olu@firm")
    data |= {
        "statement": fields.get("statement", "a monthly payroll report"),
        "metric": fields.get("metric", "reports delivered by the 5th"),
        "target": fields.get("target", "12 a year"),
        "due": "2027-02-21",
    }
    if kind == "ExpectationDueSoon":
        data["policy_version"] = "sha256:abc"
    return deal_event(kind, data, at=at)


@pytest.mark.parametrize(
    ("span", "words"),
    [
        (timedelta(days=3, hours=4), "3 days 4 hours"),
        (timedelta(seconds=2, microseconds=999_999), "2 seconds"),
        (timedelta(days=1), "1 day"),
        (timedelta(days=21, seconds=2), "21 days"),  # the largest unit and the next one down: the rest left out
        (timedelta(hours=1, minutes=1, seconds=59), "1 hour 1 minute"),
        (timedelta(minutes=1, seconds=30), "1 minute 30 seconds"),
        (timedelta(days=400, hours=23, minutes=59), "400 days 23 hours"),
        (timedelta(milliseconds=300), "less than a second"),
    ],
)
def test_a_length_of_time_reads_as_people_say_it(span: timedelta, words: str) -> None:
    assert duration_words(span) == words


def test_how_late_counts_between_moments_whatever_their_time_zones() -> None:
    assert how_late("2026-11-15T09:00:00+00:00", "2026-11-18T13:00:00+00:00") == "3 days 4 hours late"
    assert how_late("2026-11-15T09:00:00+00:00", "2026-11-15T10:00:02.5+01:00") == "2 seconds late"
    assert how_late("2026-11-15T09:00:00.123456+00:00", "2026-11-15T09:00:02.2Z") == "2 seconds late"
    assert how_late("2026-11-15T09:00:00+00:00", "2026-11-15T08:59:00+00:00") == "not late: 1 minute before it was due"
    assert how_late("2026-11-15", "soon") == "unknown"


@pytest.mark.parametrize(
    ("deadline", "asks", "counted_from", "next_step"),
    [
        (
            "transition_meeting_within",
            "the transition meeting held within 14 days of the letter of intent",
            "the letter of intent",
            "hold the transition meeting, or walk away while the firm still can.",
        ),
        (
            "contract_within",
            "the contract signed within 14 days of the first transition meeting",
            "the first transition meeting",
            "clear the blockers and sign, or walk away.",
        ),
        (
            "stalled_after",
            "a new fact recorded on the deal at least every 14 days",
            "the last fact recorded on the deal",
            "record what has happened, or walk away: a deal that drifts loses the firm's relative power.",
        ),
    ],
)
def test_a_missed_deadline_says_which_one_due_when_how_late_what_was_expected_and_what_to_do(
    deadline: str, asks: str, counted_from: str, next_step: str
) -> None:
    event = missed(
        deadline, counted_from="2026-11-01T09:00:00+00:00", due_at="2026-11-15T09:00:00+00:00", at="2026-11-18T13:00:00+00:00",
        expected="the transition meeting held, after the letter of intent",
    )  # fmt: skip
    title, text = describe(event, DEAL)
    assert title == "Deadline missed: Payroll outsourcing (Acme Ltd)"
    assert text.splitlines() == [
        f"Deal: Payroll outsourcing for Acme Ltd (owner ann, id {DEAL_ID})",
        "What happened: Deadline missed at 2026-11-18T13:00:00+00:00",
        "By: dealflow",
        f"Deadline: {deadline} ({asks})",
        f"Counted from: {counted_from}, at 2026-11-01T09:00:00+00:00",
        "Due: 2026-11-15T09:00:00+00:00",
        "How late: 3 days 4 hours late when recorded",
        "Expected by then: the transition meeting held, after the letter of intent",
        "Judged by policy sha256:abc",
        f"What to do next: {next_step}",
    ]


def test_a_deadline_recorded_late_says_how_late_it_was_when_recorded() -> None:
    # The service was down: it records the deadline when it catches up at start-up, three weeks on.
    caught_up = missed("stalled_after", counted_from="2026-11-01T09:00:00+00:00", due_at="2026-11-11T09:00:00+00:00", at="2026-12-02T09:00:02+00:00")
    at_once = missed("stalled_after", counted_from="2026-11-01T09:00:00+00:00", due_at="2026-11-11T09:00:00+00:00", at="2026-11-11T09:00:02.4+00:00")
    assert "How late: 21 days late when recorded" in describe(caught_up, DEAL)[1].splitlines()
    assert "How late: 2 seconds late when recorded" in describe(at_once, DEAL)[1].splitlines()
    # A 36-hour deadline reads in days and hours.
    short = missed("contract_within", counted_from="2026-11-01T09:00:00+00:00", due_at="2026-11-02T21:00:00+00:00", at="2026-11-02T21:00:05+00:00")
    assert "Deadline: contract_within (the contract signed within 1 day 12 hours of the first transition meeting)" in describe(short, DEAL)[1]


@pytest.mark.parametrize(
    ("side", "whose", "deliver"),
    [
        ("client", "Side: client (a client expectation: what the client expects of the firm; the firm delivers it)", "deliver it"),
        (
            "provider",
            "Side: provider (a provider expectation: what the firm needs from the client to meet the client's expectations; "
            "the client delivers it)",
            "make sure the client delivers it",
        ),
    ],
)
def test_an_expectation_due_soon_says_what_whose_how_measured_when_and_how_to_mark_it(side: str, whose: str, deliver: str) -> None:
    title, text = describe(expectation_event("ExpectationDueSoon", side=side, at="2027-02-19T00:00:00+00:00"), DEAL)
    assert title == "Expectation due soon: Payroll outsourcing (Acme Ltd)"
    lines = text.splitlines()
    assert lines[3:] == [
        f"Expectation: a monthly payroll report (id {EXPECTATION_ID})",
        whose,
        "Measured by: reports delivered by the 5th, target 12 a year",
        # Due by the end of its due date (UTC): from midnight on the 19th, three days are left.
        "Due: by the end of 2027-02-21 (UTC); 3 days left when reminded",
        "Reminded under policy sha256:abc",
        f"What to do next: {deliver}, and mark it met or missed ({OUTCOME_CALL} with "
        '{"met": true or false, "evidence": ...}).',
    ]


def test_an_overdue_expectation_counts_from_the_end_of_its_due_date_and_says_to_mark_it() -> None:
    title, text = describe(expectation_event("ExpectationOverdue", side="provider", at="2027-02-24T05:00:00+00:00"), DEAL)
    assert title == "Expectation overdue: Payroll outsourcing (Acme Ltd)"
    lines = text.splitlines()
    assert f"Expectation: a monthly payroll report (id {EXPECTATION_ID})" in lines
    assert any(line.startswith("Side: provider (a provider expectation: what the firm needs from the client") for line in lines)
    assert "Measured by: reports delivered by the 5th, target 12 a year" in lines
    assert "Due: by the end of 2027-02-21 (UTC)" in lines
    # Due at 2027-02-22T00:00Z, not at the start of the 21st (which would be 3 days 5 hours).
    assert "How late: 2 days 5 hours late; nobody marked it met or missed by then" in lines
    assert lines[-1] == (
        f'What to do next: mark it met or missed with the evidence ({OUTCOME_CALL} with {{"met": true or false, "evidence": ...}}), '
        "and talk to the client about it if it was missed."
    )


@pytest.mark.parametrize(
    ("kind", "side", "next_step"),
    [
        ("ExpectationMet", "client", "What to do next: nothing; it is on the deal's record as met."),
        ("ExpectationMissed", "client", "What to do next: talk to the client about it: what the firm did not deliver, and how it will make it good."),
        ("ExpectationMissed", "provider", "What to do next: talk to the client about it: the firm needs it from them to meet their expectations."),
    ],
)
def test_a_marked_expectation_says_who_marked_it_with_what_evidence(kind: str, side: str, next_step: str) -> None:
    title, text = describe(expectation_event(kind, side=side, at="2027-02-20T10:00:00+00:00"), DEAL)
    assert title == f"{'Expectation met' if kind == 'ExpectationMet' else 'Expectation missed'}: Payroll outsourcing (Acme Ltd)"
    lines = text.splitlines()
    assert "By: olu@firm" in lines
    assert f"Expectation: {EXPECTATION_ID}" in lines
    assert lines[4].startswith(f"Side: {side} (a {side} expectation")
    assert "Evidence: the February report, sent on 2027-02-20" in lines
    assert lines[-1] == next_step


def hostile_time_events(value: str) -> list[dict[str, object]]:
    """Each new event, with a caller's (or a policy writer's) words set to `value`."""
    return [
        missed("stalled_after", counted_from="2026-11-01T09:00:00+00:00", due_at="2026-11-11T09:00:00+00:00", at="2026-11-12T09:00:00+00:00", expected=value),
        expectation_event("ExpectationDueSoon", statement=value, metric=value, target=value),
        expectation_event("ExpectationOverdue", at="2027-02-23T00:00:00+00:00", statement=value, metric=value, target=value),
        expectation_event("ExpectationMet", evidence=value),
        expectation_event("ExpectationMissed", evidence=value),
    ]


@pytest.mark.parametrize("value", HOSTILE.values(), ids=HOSTILE.keys())
def test_the_words_in_time_alerts_are_shown_as_text(value: str) -> None:
    target = Target(rule="deadline missed", recipient="owner", channel="mail", address="ann@firm.example", urgency="urgent")
    for hostile, benign in zip(hostile_time_events(value), hostile_time_events("harmless"), strict=True):
        alert = compose(hostile, "5f0c2b1e:9", DEAL, target)
        for text in (alert.title, alert.text):
            assert RAW.search(text) is None, (hostile["type"], text)
        # The same lines as on harmless words: a newline in a value forges none.
        assert len(alert.text.splitlines()) == len(compose(benign, "5f0c2b1e:9", DEAL, target).text.splitlines())
        assert printable(value) in alert.text
        shown = next(line for line in alert.text.splitlines() if printable(value) in line)
        assert shown.split(": ", 1)[0] in {"Expected by then", "Expectation", "Measured by", "Evidence"}, shown


@pytest.mark.parametrize("event", hostile_time_events("words"), ids=lambda e: str(e["type"]))
def test_the_time_events_here_are_the_ones_the_deal_service_publishes(event: dict[str, object]) -> None:
    # Fails with "no schema for <Type> v1" until `dealflow schemas` has written schemas/events/<Type>.v1.json.
    EventSchemas().check(event, 1)
