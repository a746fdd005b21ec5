"""Small builders shared by the tests: the same steps a real client takes, in the domain's words."""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path
from uuid import UUID

from dealflow.deal_lifecycle.adapters.policy_file import load_policy
from dealflow.deal_lifecycle.application import commands as c
from dealflow.deal_lifecycle.application.service import DealService
from dealflow.deal_lifecycle.domain.deal import Deal
from dealflow.deal_lifecycle.domain.model import Attribution, Participant, Role, Side

ROOT = Path(__file__).resolve().parents[1]
POLICY_FILE = ROOT / "deploy" / "policy.toml"
# The sample policy shipped in deploy/: payment terms public 45 / limit 60 days (higher is worse),
# discount public 0 / limit 10 %, non-negotiable msa_signed_first, minimum annual value 50 000,
# concessions: at most 2 more given than received, and something won after 3 given.
POLICY = load_policy(POLICY_FILE)

BY = Attribution(actor="ann@firm", correlation_id="corr-1")
TODAY = date(2026, 11, 23)
LATER = TODAY + timedelta(days=90)
FULL_ATTENDANCE = [Participant("Sam", Role.SALES), Participant("Olu", Role.OPERATIONS), Participant("Cleo", Role.CLIENT)]


def ctx(actor: str = "ann@firm", *, key: str | None = None, expected: int | None = None) -> c.CommandContext:
    return c.CommandContext(actor=actor, correlation_id="corr-1", idempotency_key=key, expected_version=expected)


def expectation(side: Side, statement: str = "monthly report") -> c.RecordExpectation:
    return c.RecordExpectation(
        side=side, statement=statement, metric="reports delivered", target="12 a year", due=date.today() + timedelta(days=90), priority=1
    )


def meeting(*roles: Role) -> c.HoldTransitionMeeting:
    attendees = [p for p in FULL_ATTENDANCE if p.role in (roles or tuple(Role))]
    return c.HoldTransitionMeeting(participants=[c.ParticipantIn(name=p.name, role=p.role) for p in attendees])


def open_deal(service: DealService, title: str = "Acme payroll", owner: str = "ann") -> UUID:
    outcome = service.handle("open_deal", None, c.OpenDeal(title=title, client_name="Acme Ltd", owner=owner), ctx())
    return outcome.deal.id


def in_transition_meeting(service: DealService, *roles: Role) -> UUID:
    deal_id = open_deal(service)
    service.handle("sign_letter_of_intent", deal_id, None, ctx())
    service.handle("hold_transition_meeting", deal_id, meeting(*roles), ctx())
    return deal_id


def ready_to_sign(service: DealService) -> UUID:
    """A deal with every signing blocker cleared: the way a real deal gets there."""
    deal_id = open_deal(service)
    service.handle("sign_letter_of_intent", deal_id, None, ctx())
    for side in Side:
        eid = service.handle("record_expectation", deal_id, expectation(side), ctx()).created_id
        assert eid is not None
        service.handle("decide_expectation", deal_id, c.DecideExpectation(agreed=True), ctx(), expectation_id=eid)
    service.handle("hold_transition_meeting", deal_id, meeting(), ctx())
    pid = service.handle("record_sales_promise", deal_id, c.RecordSalesPromise(statement="go-live in 30 days"), ctx()).created_id
    assert pid is not None
    service.handle("decide_sales_promise", deal_id, c.DecideSalesPromise(accepted=True), ctx(), promise_id=pid)
    return deal_id


def domain_deal_in_meeting() -> Deal:
    deal = Deal.open(title="Acme payroll", client_name="Acme Ltd", owner="ann", by=BY)
    deal.sign_letter_of_intent(by=BY)
    deal.hold_transition_meeting(participants=FULL_ATTENDANCE, by=BY)
    return deal
