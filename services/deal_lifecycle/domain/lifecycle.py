"""The deal lifecycle and its guards, declared once.

Every command on a deal is an event of this machine; the aggregate asks the lifecycle
before it records anything. Read top to bottom, the class is the lifecycle, and the
diagram is generated from it. The machine is read once, at import, into a table of
(stage, command) -> stage after, so asking costs a dict lookup, not a machine per command.
"""

from __future__ import annotations

from statemachine import State, StateChart
from statemachine.transition_list import TransitionList

from . import blockers
from .blockers import SigningState
from .errors import Blocker, CommandRefused, SigningRefused


def signing_blockers(deal: SigningState) -> list[Blocker]:
    """Every reason the contract cannot be signed now: the stage's first (from the lifecycle), then the deal's own."""
    if deal.stage in CLOSED:
        # A closed deal has nothing left to clear: naming its old blockers would advise work that cannot help.
        return [blockers.closed(deal.stage)]
    at_stage = [] if (deal.stage, "sign_contract") in TRANSITIONS else [blockers.too_early(deal.stage)]
    return [*at_stage, *blockers.open_items(deal)]


def signing_is_unblocked(deal: SigningState) -> None:
    """The guard on signing: refused with every blocker at once, so the caller clears them all in one go."""
    found = signing_blockers(deal)
    if found:
        raise SigningRefused(found)


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
    # A signed deal never ends: the relationship goes on (its expectations are judged), so no path leads
    # from it to a final stage. Still checked: every stage but walked_away has a way on (trap states).
    validate_final_reachability = False

    prospect = State(initial=True)
    letter_of_intent = State()
    transition_meeting = State()
    # Not final: the contract is where the relationship starts, and delivery is judged after it.
    contract_signed = State()
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
    sign_contract = transition_meeting.to(contract_signed, validators=signing_is_unblocked)
    # Walking away is possible until the contract is signed, never after.
    walk_away = prospect.to(walked_away) | letter_of_intent.to(walked_away) | transition_meeting.to(walked_away)
    # After signing, the only commands: each agreed expectation is marked met or missed.
    record_expectation_outcome = _stays(contract_signed)
    # The passing of time, recorded by the service itself (deadlines.py), never sent by a caller:
    # a deadline missed while the deal is open; after signing, an expectation due soon, or overdue.
    record_missed_deadline = _stays(prospect, letter_of_intent, transition_meeting)
    record_expectation_due_soon = _stays(contract_signed)
    record_expectation_overdue = _stays(contract_signed)


class NotAllowedAtStage(CommandRefused):
    code = "not_allowed_at_stage"


def _transitions(machine: type[StateChart]) -> dict[tuple[str, str], str]:
    """(stage, command) -> the stage after it, for every transition the machine declares."""
    table: dict[tuple[str, str], str] = {}
    for state in machine.states:
        for transition in state.transitions:
            # A condition would make the answer depend on more than the stage: the table could not hold it.
            if list(transition.cond):
                raise TypeError(f"{transition} has a condition; the lifecycle table answers from the stage alone")
            for command in transition.events:
                key = (state.value, str(command))
                if key in table:
                    raise TypeError(f"{command} is declared twice from {state.value}")
                table[key] = transition.target.value
    return table


TRANSITIONS = _transitions(DealLifecycle)
# The lifecycle's own commands that no caller sends: the service records them as time passes.
RECORDED_BY_THE_SERVICE = frozenset({"record_missed_deadline", "record_expectation_due_soon", "record_expectation_overdue"})
# Stages at which the deal is still being negotiated: the firm can still walk away.
OPEN = frozenset(stage for stage, command in TRANSITIONS if command == "walk_away")
# Stages at which negotiation is over: signed, or walked away from. Nothing is left to sign.
CLOSED = frozenset(state.value for state in DealLifecycle.states) - OPEN


def permit(stage: str, command: str) -> str:
    """Ask the lifecycle whether `command` may happen at `stage`; return the stage after it.

    Raises NotAllowedAtStage. Changes nothing. Signing has a guard besides the stage
    (`signing_is_unblocked`), which the deal runs itself, once.
    """
    try:
        return TRANSITIONS[(stage, command)]
    except KeyError:
        raise NotAllowedAtStage(f"cannot {command.replace('_', ' ')} while the deal is at stage {stage}") from None
