"""Every command a deal takes, in one table.

Each row is the whole of a command outside the aggregate: its name (the NATS subject
`deals.commands.<name>`, the HTTP operation and the application's log field), its body model,
its HTTP path (whose `{ids}` are what the command takes besides its body), what it runs on the
aggregate, what it creates, and the roles that may send it (access.py judges them, on every
door, before the body is read). The HTTP routes, the NATS
responder, the command schemas, AsyncAPI and the README's command table are all derived from
it; a test holds the table, the lifecycle's events, the HTTP routes and the NATS subjects to
the same set of names.

Adding a command: a line in the lifecycle, an event class, an aggregate method, a body model,
and a row here.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import date
from typing import Any

from dealflow.deal_lifecycle.application import commands as c
from dealflow.deal_lifecycle.application.access import SENDS_COMMANDS, WAIVES_CONDITIONS, AccessRole
from dealflow.deal_lifecycle.domain.deal import Deal
from dealflow.deal_lifecycle.domain.model import Attribution, Participant
from dealflow.deal_lifecycle.domain.policy import Policy


@dataclass(frozen=True)
class Call:
    """What a row's `run` has to work with: the command as sent, and what the service adds."""

    body: Any  # the row's body model, or None for a bodiless command
    ids: Mapping[str, str]  # the path's ids besides deal_id, e.g. {"promise_id": "..."}
    by: Attribution
    role: str  # the role the caller sends it under (access.authorize): a waiver records it
    policy: Policy
    today: date


# What a command does to the deal: returns the id of what it created, if anything. open_deal
# alone has no deal to run on (it is given None) and returns the new Deal.
Run = Callable[[Any, Call], Any]


@dataclass(frozen=True)
class DealCommand:
    name: str
    path: str  # under the HTTP root, e.g. /deals/{deal_id}/promises/{promise_id}/decision
    body: type[c.Command] | None
    run: Run
    summary: str  # one line for the OpenAPI document and the README
    creates: str | None = None  # what a 201 answer's `id` names ("promise", ...); None: 200 with the deal
    tag: str = "deals"
    # Who may send it: the roles of a caller's token, one of which must be here.
    roles: frozenset[AccessRole] = SENDS_COMMANDS

    @property
    def ids(self) -> tuple[str, ...]:
        """The identifiers the path carries besides the deal's own."""
        return tuple(name for name in re.findall(r"{(\w+)}", self.path) if name != "deal_id")

    @property
    def target(self) -> str | None:
        """The path's one id besides the deal's (it is part of the idempotency fingerprint)."""
        return self.ids[0] if self.ids else None

    @property
    def opens(self) -> bool:
        """The one command that makes a deal rather than changing one."""
        return "{deal_id}" not in self.path


def _participants(call: Call) -> list[Participant]:
    return [Participant(p.name, p.role) for p in call.body.participants]


COMMANDS: tuple[DealCommand, ...] = (
    # -- the lifecycle ---------------------------------------------------------------------
    DealCommand(
        "open_deal", "/deals", c.OpenDeal,
        lambda _, x: Deal.open(title=x.body.title, client_name=x.body.client_name, owner=x.body.owner, by=x.by),
        "Open a deal (stage prospect)",
    ),
    DealCommand(
        "sign_letter_of_intent", "/deals/{deal_id}/letter-of-intent", None,
        lambda d, x: d.sign_letter_of_intent(by=x.by),
        "The letter of intent is signed (prospect to letter of intent)",
    ),
    DealCommand(
        "hold_transition_meeting", "/deals/{deal_id}/transition-meeting", c.HoldTransitionMeeting,
        lambda d, x: d.hold_transition_meeting(participants=_participants(x), by=x.by),
        "The transition meeting is held, with who attended (sales, operations, client)",
    ),
    DealCommand(
        "sign_contract", "/deals/{deal_id}/contract", None,
        lambda d, x: d.sign_contract(by=x.by),
        "Sign the contract; 409 with every blocker if it may not be signed yet",
    ),
    DealCommand(
        "walk_away", "/deals/{deal_id}/walk-away", c.WalkAway,
        lambda d, x: d.walk_away(reason=x.body.reason, cited_conditions=x.body.cited_conditions, by=x.by),
        "Walk away (never after signing), citing the walk-away conditions that caused it",
    ),
    # -- Sales promises, decided by Operations in the transition meeting ---------------------
    DealCommand(
        "record_sales_promise", "/deals/{deal_id}/promises", c.RecordSalesPromise,
        lambda d, x: d.record_sales_promise(statement=x.body.statement, by=x.by),
        "Sales puts a promise on the table", creates="promise",
    ),
    DealCommand(
        "decide_sales_promise", "/deals/{deal_id}/promises/{promise_id}/decision", c.DecideSalesPromise,
        lambda d, x: d.decide_sales_promise(x.ids["promise_id"], accepted=x.body.accepted, reason=x.body.reason, policy=x.policy, by=x.by),
        "Operations accepts or rejects a Sales promise",
    ),
    DealCommand(
        "withdraw_sales_promise", "/deals/{deal_id}/promises/{promise_id}/withdrawal", c.Withdraw,
        lambda d, x: d.withdraw_sales_promise(x.ids["promise_id"], reason=x.body.reason, by=x.by),
        "Sales takes a promise back",
    ),
    DealCommand(
        "renegotiate_sales_promise", "/deals/{deal_id}/promises/{promise_id}/renegotiation", c.RenegotiateSalesPromise,
        lambda d, x: d.renegotiate_sales_promise(x.ids["promise_id"], statement=x.body.statement, by=x.by),
        "A rejected promise is back on the table in new words, pending again",
    ),
    # -- expectations, both ways ------------------------------------------------------------
    DealCommand(
        "record_expectation", "/deals/{deal_id}/expectations", c.RecordExpectation,
        lambda d, x: d.record_expectation(
            side=x.body.side, statement=x.body.statement, metric=x.body.metric, target=x.body.target,
            due=x.body.due, priority=x.body.priority, today=x.today, by=x.by,
        ),
        "A side states what it expects, measurably (due not in the past, nor beyond 50 years; priority 1 is the highest)", creates="expectation",
    ),
    DealCommand(
        "decide_expectation", "/deals/{deal_id}/expectations/{expectation_id}/decision", c.DecideExpectation,
        lambda d, x: d.decide_expectation(x.ids["expectation_id"], agreed=x.body.agreed, reason=x.body.reason, policy=x.policy, by=x.by),
        "The other side agrees to or rejects an expectation",
    ),
    DealCommand(
        "withdraw_expectation", "/deals/{deal_id}/expectations/{expectation_id}/withdrawal", c.Withdraw,
        lambda d, x: d.withdraw_expectation(x.ids["expectation_id"], reason=x.body.reason, by=x.by),
        "An expectation is taken off the table (e.g. to be refined)",
    ),
    # -- after signing: did we deliver? ------------------------------------------------------
    DealCommand(
        "record_expectation_outcome", "/deals/{deal_id}/expectations/{expectation_id}/outcome", c.RecordExpectationOutcome,
        lambda d, x: d.record_expectation_outcome(x.ids["expectation_id"], met=x.body.met, evidence=x.body.evidence, by=x.by),
        "After signing: an agreed expectation (either side's) was met or missed, with the evidence",
    ),
    # -- Right Terms ----------------------------------------------------------------------------
    DealCommand(
        "propose_term", "/deals/{deal_id}/terms", c.ProposeTerm,
        lambda d, x: d.propose_term(term=x.body.term, value=x.body.value, side=x.body.by, policy=x.policy, by=x.by),
        "A side puts a term on the table (by client: a demand; by provider: a proposal)", tag="negotiation",
    ),
    DealCommand(
        "agree_term", "/deals/{deal_id}/terms/{term}/agreement", c.AgreeTerm,
        lambda d, x: d.agree_term(term=x.ids["term"], value=x.body.value, policy=x.policy, by=x.by),
        "Both sides agree a term at a value", tag="negotiation",
    ),
    DealCommand(
        "record_concession", "/deals/{deal_id}/concessions", c.RecordConcession,
        lambda d, x: d.record_concession(side=x.body.by, what=x.body.what, policy=x.policy, by=x.by),
        "A side gave something", creates="concession", tag="negotiation",
    ),
    DealCommand(
        "refuse_non_negotiable", "/deals/{deal_id}/non-negotiables/{name}/refusal", c.RefuseNonNegotiable,
        lambda d, x: d.refuse_non_negotiable(name=x.ids["name"], reason=x.body.reason, policy=x.policy, by=x.by),
        "The client refuses one of the firm's non-negotiables", tag="negotiation",
    ),
    DealCommand(
        "accept_non_negotiable", "/deals/{deal_id}/non-negotiables/{name}/acceptance", None,
        lambda d, x: d.accept_non_negotiable(name=x.ids["name"], policy=x.policy, by=x.by),
        "The client accepts one of the firm's non-negotiables", tag="negotiation",
    ),
    DealCommand(
        "record_client_facts", "/deals/{deal_id}/client-facts", c.RecordClientFacts,
        lambda d, x: d.record_client_facts(annual_value=x.body.annual_value, industry=x.body.industry, policy=x.policy, by=x.by),
        "Facts judged by the right-client criteria (either or both)", tag="negotiation",
    ),
    DealCommand(
        "declare_impasse", "/deals/{deal_id}/impasses", c.DeclareImpasse,
        lambda d, x: d.declare_impasse(topic=x.body.topic, by=x.by),
        "The sides are stuck on a topic", creates="impasse", tag="negotiation",
    ),
    DealCommand(
        "resolve_impasse", "/deals/{deal_id}/impasses/{impasse_id}/resolution", c.ResolveImpasse,
        lambda d, x: d.resolve_impasse(x.ids["impasse_id"], how=x.body.how, by=x.by),
        "An impasse is broken, and how", tag="negotiation",
    ),
    DealCommand(
        "escalate", "/deals/{deal_id}/escalations", c.Escalate,
        lambda d, x: d.escalate(
            impasse_id=x.body.impasse_id, to=x.body.to, counterpart_consented=x.body.counterpart_consented,
            strategies_tried=list(x.body.strategies_tried), by=x.by,
        ),
        "Over the counterpart's head, while an impasse is open", creates="escalation", tag="negotiation",
    ),
    DealCommand(
        "waive_condition", "/deals/{deal_id}/conditions/{condition_id}/waiver", c.WaiveCondition,
        lambda d, x: d.waive_condition(x.ids["condition_id"], reason=x.body.reason, role=x.role, by=x.by),
        "Waive a walk-away condition, with the reason (the waiver records the role it was made under)", tag="negotiation",
        roles=WAIVES_CONDITIONS,
    ),
)

BY_NAME: dict[str, DealCommand] = {command.name: command for command in COMMANDS}
