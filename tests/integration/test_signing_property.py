"""Property: no sequence of commands reaches contract_signed unless the domain's conditions hold.

Hypothesis drives the application service (on a real SQLite file) with random sequences
of every command, including ones the lifecycle refuses, and checks the stored deal
after each step.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings, strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule, run_state_machine_as_test

from services.deal_lifecycle import commands as c
from services.deal_lifecycle.application import DealService
from services.deal_lifecycle.config import Settings
from services.deal_lifecycle.domain import lifecycle
from services.deal_lifecycle.domain.errors import DealflowError
from services.deal_lifecycle.domain.model import Decision, Role, Side, Stage
from tests.support import ctx, expectation, open_deal

NAMES = {Role.SALES: "Sam", Role.OPERATIONS: "Olu", Role.CLIENT: "Cleo"}


class DealCommands(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.folder = tempfile.mkdtemp()
        self.service = DealService(env=Settings(sqlite_path=Path(self.folder) / "deals.sqlite3").eventsourcing_env())
        self.promises: list[str] = []
        self.expectations: list[str] = []
        self.refused = 0

    @initialize()
    def open(self) -> None:
        self.deal_id = open_deal(self.service)

    def attempt(self, command):  # noqa: ANN001, ANN202
        try:
            return command()
        except DealflowError:
            self.refused += 1  # refusals are part of the exploration; they must store nothing
            return None

    @rule()
    def sign_letter_of_intent(self) -> None:
        self.attempt(lambda: self.service.sign_letter_of_intent(self.deal_id, ctx()))

    @rule(roles=st.sets(st.sampled_from(list(Role)), min_size=1))
    def hold_transition_meeting(self, roles: set[Role]) -> None:
        meeting = c.HoldTransitionMeeting(participants=[c.ParticipantIn(name=NAMES[r], role=r) for r in sorted(roles)])
        self.attempt(lambda: self.service.hold_transition_meeting(self.deal_id, meeting, ctx()))

    @rule(side=st.sampled_from(list(Side)))
    def record_expectation(self, side: Side) -> None:
        outcome = self.attempt(lambda: self.service.record_expectation(self.deal_id, expectation(side), ctx()))
        if outcome is not None:
            self.expectations.append(outcome.created_id)

    @precondition(lambda self: self.expectations)
    @rule(pick=st.integers(min_value=0), agreed=st.booleans())
    def decide_expectation(self, pick: int, agreed: bool) -> None:
        eid = self.expectations[pick % len(self.expectations)]
        decision = c.DecideExpectation(agreed=agreed)
        self.attempt(lambda: self.service.decide_expectation(self.deal_id, eid, decision, ctx()))

    @precondition(lambda self: self.expectations)
    @rule(pick=st.integers(min_value=0))
    def withdraw_expectation(self, pick: int) -> None:
        eid = self.expectations[pick % len(self.expectations)]
        self.attempt(lambda: self.service.withdraw_expectation(self.deal_id, eid, c.Withdraw(reason="refine"), ctx()))

    @rule()
    def record_sales_promise(self) -> None:
        cmd = c.RecordSalesPromise(statement="go-live in 30 days")
        outcome = self.attempt(lambda: self.service.record_sales_promise(self.deal_id, cmd, ctx()))
        if outcome is not None:
            self.promises.append(outcome.created_id)

    @precondition(lambda self: self.promises)
    @rule(pick=st.integers(min_value=0), accepted=st.booleans())
    def decide_sales_promise(self, pick: int, accepted: bool) -> None:
        pid = self.promises[pick % len(self.promises)]
        decision = c.DecideSalesPromise(accepted=accepted)
        self.attempt(lambda: self.service.decide_sales_promise(self.deal_id, pid, decision, ctx()))

    @rule()
    def sign_contract(self) -> None:
        self.attempt(lambda: self.service.sign_contract(self.deal_id, ctx()))

    @rule()
    def walk_away(self) -> None:
        self.attempt(lambda: self.service.walk_away(self.deal_id, c.WalkAway(reason="no fit"), ctx()))

    @invariant()
    def signed_only_when_every_condition_held(self) -> None:
        deal = self.service.get_deal(self.deal_id)
        if deal.stage != Stage.CONTRACT_SIGNED:
            return
        live = [e for e in deal.expectations.values() if e.decision is not Decision.WITHDRAWN]
        for side in Side:
            assert any(e.side is side for e in live), f"signed without a {side} expectation"
        assert all(e.decision is Decision.ACCEPTED for e in live), "signed with an expectation not agreed"
        assert all(p.decision in (Decision.ACCEPTED, Decision.WITHDRAWN) for p in deal.sales_promises.values())
        assert {p.role for p in deal.participants} == set(Role), "signed without full attendance"

    def teardown(self) -> None:
        self.service.close()
        shutil.rmtree(self.folder, ignore_errors=True)


EXPLORE = settings(
    max_examples=60,
    stateful_step_count=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)


def test_no_command_sequence_signs_without_agreed_expectations_accepted_promises_and_attendance() -> None:
    run_state_machine_as_test(DealCommands, settings=EXPLORE)


def test_the_property_catches_a_broken_guard(monkeypatch: pytest.MonkeyPatch) -> None:
    """The property is not vacuous: with the signing guard switched off, Hypothesis finds a bad signing."""
    monkeypatch.setattr(lifecycle, "signing_blockers", lambda _deal: [])
    with pytest.raises(AssertionError, match="signed without"):
        run_state_machine_as_test(DealCommands, settings=settings(EXPLORE, max_examples=200, print_blob=False))
