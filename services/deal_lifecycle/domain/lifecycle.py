"""The deal lifecycle and its guards, declared once.

Every command on a deal is an event of this machine; the aggregate asks the machine
before it records anything. Read top to bottom, the class is the lifecycle, and the
diagram is generated from it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from statemachine import State, StateChart
from statemachine.exceptions import TransitionNotAllowed
from statemachine.transition_list import TransitionList

from .blockers import signing_blockers
from .errors import CommandRefused, SigningRefused

if TYPE_CHECKING:
    from .deal import Deal


def _stays(*stages: State) -> TransitionList:
    """A command that records a fact without changing the stage, allowed only at these stages."""
    allowed = stages[0].to.itself(internal=True)
    for stage in stages[1:]:
        allowed |= stage.to.itself(internal=True)
    return allowed


class DealLifecycle(StateChart):
    # For a guard, silence is a bug: an event the current stage does not allow must raise.
    allow_event_without_transition = False
    # A validator's refusal must reach the caller, not become an internal error event.
    catch_errors_as_events = False

    prospect = State(initial=True)
    letter_of_intent = State()
    transition_meeting = State()
    contract_signed = State(final=True)
    walked_away = State(final=True)

    sign_letter_of_intent = prospect.to(letter_of_intent)
    # Attendance may be completed in a later session of the same meeting.
    hold_transition_meeting = letter_of_intent.to(transition_meeting) | transition_meeting.to.itself(internal=True)
    # Expectations are elicited from the letter of intent on.
    record_expectation = _stays(letter_of_intent, transition_meeting)
    decide_expectation = _stays(letter_of_intent, transition_meeting)
    withdraw_expectation = _stays(letter_of_intent, transition_meeting)
    # Sales promises are put on the table, and decided, in the transition meeting only.
    record_sales_promise = _stays(transition_meeting)
    decide_sales_promise = _stays(transition_meeting)
    withdraw_sales_promise = _stays(transition_meeting)
    renegotiate_sales_promise = _stays(transition_meeting)
    # Negotiation goes on until the contract is signed: the window in which the firm can still walk away.
    propose_term = _stays(prospect, letter_of_intent, transition_meeting)
    agree_term = _stays(prospect, letter_of_intent, transition_meeting)
    record_concession = _stays(prospect, letter_of_intent, transition_meeting)
    refuse_non_negotiable = _stays(prospect, letter_of_intent, transition_meeting)
    accept_non_negotiable = _stays(prospect, letter_of_intent, transition_meeting)
    record_client_facts = _stays(prospect, letter_of_intent, transition_meeting)
    declare_impasse = _stays(prospect, letter_of_intent, transition_meeting)
    resolve_impasse = _stays(prospect, letter_of_intent, transition_meeting)
    escalate = _stays(prospect, letter_of_intent, transition_meeting)
    waive_condition = _stays(prospect, letter_of_intent, transition_meeting)
    sign_contract = transition_meeting.to(contract_signed, validators="signing_is_unblocked")
    # Walking away is possible until the contract is signed, never after.
    walk_away = prospect.to(walked_away) | letter_of_intent.to(walked_away) | transition_meeting.to(walked_away)

    def signing_is_unblocked(self, deal: Deal) -> None:
        blockers = signing_blockers(deal)
        if blockers:
            raise SigningRefused(blockers)


class NotAllowedAtStage(CommandRefused):
    code = "not_allowed_at_stage"


def permit(stage: str, command: str, **context: Any) -> str:
    """Ask the lifecycle whether `command` may happen at `stage`; return the stage after it.

    Raises NotAllowedAtStage, or the refusal a validator raised. Changes nothing.
    """
    machine = DealLifecycle(start_value=stage)
    try:
        machine.send(command, **context)
    except TransitionNotAllowed:
        raise NotAllowedAtStage(
            f"cannot {command.replace('_', ' ')} while the deal is at stage {stage}"
        ) from None
    return str(machine.current_state_value)
