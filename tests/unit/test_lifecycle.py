"""The lifecycle machine: which command each stage allows, and that nothing is ever silently ignored."""

from __future__ import annotations

import pytest

from statemachine.exceptions import TransitionNotAllowed

from dealflow.deal_lifecycle.domain import lifecycle
from dealflow.deal_lifecycle.domain.errors import SigningRefused
from dealflow.deal_lifecycle.domain.lifecycle import TRANSITIONS, DealLifecycle, NotAllowedAtStage, permit
from dealflow.deal_lifecycle.domain.model import Stage

NEGOTIATION = {
    "propose_term",
    "agree_term",
    "record_concession",
    "refuse_non_negotiable",
    "accept_non_negotiable",
    "record_client_facts",
    "declare_impasse",
    "resolve_impasse",
    "escalate",
    "waive_condition",
}
# The passing of time, recorded by the service: a deadline can be missed while the deal is open.
OPEN_DEADLINES = {"record_missed_deadline"}
ALLOWED = {
    Stage.PROSPECT: {"sign_letter_of_intent", "walk_away", *NEGOTIATION, *OPEN_DEADLINES},
    Stage.LETTER_OF_INTENT: {
        "hold_transition_meeting",
        "record_expectation",
        "decide_expectation",
        "withdraw_expectation",
        "walk_away",
        *NEGOTIATION,
        *OPEN_DEADLINES,
    },
    Stage.TRANSITION_MEETING: {
        "hold_transition_meeting",
        "record_expectation",
        "decide_expectation",
        "withdraw_expectation",
        "record_sales_promise",
        "decide_sales_promise",
        "withdraw_sales_promise",
        "renegotiate_sales_promise",
        "sign_contract",
        *NEGOTIATION,
        "walk_away",
        *OPEN_DEADLINES,
    },
    # After signing only delivery is judged: each agreed expectation marked, reminded, or found overdue.
    Stage.CONTRACT_SIGNED: {"record_expectation_outcome", "record_expectation_due_soon", "record_expectation_overdue"},
    Stage.WALKED_AWAY: set(),
}


def all_commands() -> list[str]:
    return sorted(str(e) for e in DealLifecycle(start_value=Stage.PROSPECT).events)


def test_the_machine_has_exactly_the_stages_of_the_domain() -> None:
    assert set(DealLifecycle.states_map) == {str(s) for s in Stage}
    # Walking away ends a deal; signing starts the relationship, whose delivery is judged after it.
    assert {s.value for s in DealLifecycle.final_states} == {Stage.WALKED_AWAY}
    assert lifecycle.CLOSED == {Stage.CONTRACT_SIGNED, Stage.WALKED_AWAY}


@pytest.mark.parametrize("stage", list(Stage))
def test_each_stage_allows_exactly_its_commands(stage: Stage) -> None:
    allowed = set()
    for command in all_commands():
        if command == "sign_contract":
            continue  # guarded by blockers; covered in test_deal
        try:
            permit(stage, command)
        except NotAllowedAtStage:
            continue
        allowed.add(command)
    assert allowed == ALLOWED[stage] - {"sign_contract"}


@pytest.mark.parametrize(
    ("stage", "command", "after"),
    [
        (Stage.PROSPECT, "sign_letter_of_intent", Stage.LETTER_OF_INTENT),
        (Stage.LETTER_OF_INTENT, "hold_transition_meeting", Stage.TRANSITION_MEETING),
        (Stage.TRANSITION_MEETING, "hold_transition_meeting", Stage.TRANSITION_MEETING),
        (Stage.LETTER_OF_INTENT, "record_expectation", Stage.LETTER_OF_INTENT),
        (Stage.PROSPECT, "walk_away", Stage.WALKED_AWAY),
        (Stage.TRANSITION_MEETING, "walk_away", Stage.WALKED_AWAY),
    ],
)
def test_permit_names_the_stage_after_the_command(stage: Stage, command: str, after: Stage) -> None:
    assert permit(stage, command) == after


def test_walking_away_after_signing_is_refused() -> None:
    with pytest.raises(NotAllowedAtStage, match="walk away while the deal is at stage contract_signed"):
        permit(Stage.CONTRACT_SIGNED, "walk_away")


def test_an_unknown_command_raises_instead_of_being_ignored() -> None:
    with pytest.raises(NotAllowedAtStage):
        permit(Stage.PROSPECT, "promote_to_vip")


@pytest.mark.parametrize("stage", list(Stage))
@pytest.mark.parametrize("command", all_commands())
def test_the_transition_table_answers_as_the_machine_does(stage: Stage, command: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """permit() reads a table made from the machine once; a fresh machine, asked the same, agrees."""
    monkeypatch.setattr(lifecycle, "signing_blockers", lambda _deal: [])  # the signing guard satisfied
    machine = DealLifecycle(start_value=stage)
    try:
        machine.send(command, deal=None)
    except TransitionNotAllowed:
        with pytest.raises(NotAllowedAtStage):
            permit(stage, command)
    else:
        assert permit(stage, command) == machine.current_state_value


def test_the_table_holds_every_transition_of_the_machine_and_nothing_else() -> None:
    declared = {
        (state.value, str(command)): transition.target.value
        for state in DealLifecycle.states
        for transition in state.transitions
        for command in transition.events
    }
    assert TRANSITIONS == declared


def test_the_machine_still_guards_signing_with_the_blockers() -> None:
    class Blocked:
        stage = Stage.TRANSITION_MEETING
        participants: list = []  # noqa: RUF012
        sales_promises: dict = {}  # noqa: RUF012
        expectations: dict = {}  # noqa: RUF012
        conditions: dict = {}  # noqa: RUF012

    with pytest.raises(SigningRefused, match="no client expectation is recorded"):
        DealLifecycle(start_value=Stage.TRANSITION_MEETING).send("sign_contract", deal=Blocked())
