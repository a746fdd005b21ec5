"""Commands over NATS: `deals.commands.<command>`, request/reply, into the same application service.

The message is the command's JSON payload (the same model the HTTP route decodes) plus
the identifiers HTTP carries in its path (`deal_id`, `promise_id`, ...). Headers are the
HTTP ones: `Idempotency-Key`, `If-Match`, `X-Actor`, `X-Actor-Role`, `X-Correlation-ID`.
The reply is `{"deal": ..., "id": ...}`, or the same error body HTTP sends, with the
status in the `Nats-Service-Error-Code` header.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from uuid import UUID, uuid4

import structlog
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from pydantic import BaseModel, ValidationError, create_model

from . import commands as c
from . import edge
from .application import DealService, Outcome
from .bus import COMMANDS_PREFIX
from .config import Settings
from .domain.errors import DealflowError
from .refusals import INTERNAL_ERROR, error_body, internal_error_body, invalid_body, status_of
from .views import command_view

log = structlog.get_logger("dealflow.nats")

QUEUE_GROUP = "deal-lifecycle"
ERROR_CODE = "Nats-Service-Error-Code"
ERROR = "Nats-Service-Error"

Call = Callable[[DealService, Any, c.CommandContext], Outcome]


@dataclass(frozen=True)
class Route:
    """One command: its payload model (with the identifiers) and how the service is called."""

    message: type[BaseModel]
    call: Call


def _route(body: type[c.Command] | None, call: Call, *identifiers: str) -> Route:
    fields: dict[str, Any] = {name: (UUID if name == "deal_id" else c.Name, ...) for name in identifiers}
    name = f"{(body or c.Command).__name__}Message"
    return Route(create_model(name, __base__=body or c.Command, **fields), call)


ROUTES: dict[str, Route] = {
    "open_deal": _route(c.OpenDeal, lambda s, m, ctx: s.open_deal(c.OpenDeal(**_body(m, c.OpenDeal)), ctx)),
    "sign_letter_of_intent": _route(None, lambda s, m, ctx: s.sign_letter_of_intent(m.deal_id, ctx), "deal_id"),
    "hold_transition_meeting": _route(
        c.HoldTransitionMeeting,
        lambda s, m, ctx: s.hold_transition_meeting(m.deal_id, _as(m, c.HoldTransitionMeeting), ctx),
        "deal_id",
    ),
    "record_sales_promise": _route(
        c.RecordSalesPromise,
        lambda s, m, ctx: s.record_sales_promise(m.deal_id, _as(m, c.RecordSalesPromise), ctx),
        "deal_id",
    ),
    "decide_sales_promise": _route(
        c.DecideSalesPromise,
        lambda s, m, ctx: s.decide_sales_promise(m.deal_id, m.promise_id, _as(m, c.DecideSalesPromise), ctx),
        "deal_id",
        "promise_id",
    ),
    "withdraw_sales_promise": _route(
        c.Withdraw,
        lambda s, m, ctx: s.withdraw_sales_promise(m.deal_id, m.promise_id, _as(m, c.Withdraw), ctx),
        "deal_id",
        "promise_id",
    ),
    "renegotiate_sales_promise": _route(
        c.RenegotiateSalesPromise,
        lambda s, m, ctx: s.renegotiate_sales_promise(m.deal_id, m.promise_id, _as(m, c.RenegotiateSalesPromise), ctx),
        "deal_id",
        "promise_id",
    ),
    "record_expectation": _route(
        c.RecordExpectation,
        lambda s, m, ctx: s.record_expectation(m.deal_id, _as(m, c.RecordExpectation), ctx),
        "deal_id",
    ),
    "decide_expectation": _route(
        c.DecideExpectation,
        lambda s, m, ctx: s.decide_expectation(m.deal_id, m.expectation_id, _as(m, c.DecideExpectation), ctx),
        "deal_id",
        "expectation_id",
    ),
    "withdraw_expectation": _route(
        c.Withdraw,
        lambda s, m, ctx: s.withdraw_expectation(m.deal_id, m.expectation_id, _as(m, c.Withdraw), ctx),
        "deal_id",
        "expectation_id",
    ),
    "propose_term": _route(
        c.ProposeTerm, lambda s, m, ctx: s.propose_term(m.deal_id, _as(m, c.ProposeTerm), ctx), "deal_id"
    ),
    "agree_term": _route(
        c.AgreeTerm, lambda s, m, ctx: s.agree_term(m.deal_id, m.term, _as(m, c.AgreeTerm), ctx), "deal_id", "term"
    ),
    "record_concession": _route(
        c.RecordConcession,
        lambda s, m, ctx: s.record_concession(m.deal_id, _as(m, c.RecordConcession), ctx),
        "deal_id",
    ),
    "refuse_non_negotiable": _route(
        c.RefuseNonNegotiable,
        lambda s, m, ctx: s.refuse_non_negotiable(m.deal_id, m.name, _as(m, c.RefuseNonNegotiable), ctx),
        "deal_id",
        "name",
    ),
    "accept_non_negotiable": _route(
        None, lambda s, m, ctx: s.accept_non_negotiable(m.deal_id, m.name, ctx), "deal_id", "name"
    ),
    "record_client_facts": _route(
        c.RecordClientFacts,
        lambda s, m, ctx: s.record_client_facts(m.deal_id, _as(m, c.RecordClientFacts), ctx),
        "deal_id",
    ),
    "declare_impasse": _route(
        c.DeclareImpasse, lambda s, m, ctx: s.declare_impasse(m.deal_id, _as(m, c.DeclareImpasse), ctx), "deal_id"
    ),
    "resolve_impasse": _route(
        c.ResolveImpasse,
        lambda s, m, ctx: s.resolve_impasse(m.deal_id, m.impasse_id, _as(m, c.ResolveImpasse), ctx),
        "deal_id",
        "impasse_id",
    ),
    "escalate": _route(c.Escalate, lambda s, m, ctx: s.escalate(m.deal_id, _as(m, c.Escalate), ctx), "deal_id"),
    "waive_condition": _route(
        c.WaiveCondition,
        lambda s, m, ctx: s.waive_condition(m.deal_id, m.condition_id, _as(m, c.WaiveCondition), ctx),
        "deal_id",
        "condition_id",
    ),
    "sign_contract": _route(None, lambda s, m, ctx: s.sign_contract(m.deal_id, ctx), "deal_id"),
    "walk_away": _route(c.WalkAway, lambda s, m, ctx: s.walk_away(m.deal_id, _as(m, c.WalkAway), ctx), "deal_id"),
}


def _body(message: BaseModel, model: type[c.Command]) -> dict[str, Any]:
    return {name: getattr(message, name) for name in model.model_fields}


def _as(message: BaseModel, model: type[c.Command]) -> Any:
    return model(**_body(message, model))


class CommandResponder:
    """Answers `deals.commands.*` requests; several processes share them through a queue group."""

    def __init__(self, deals: DealService, nc: NATS, max_body_bytes: int = Settings.max_request_bytes) -> None:
        self.deals = deals
        self.nc = nc
        # The same bound as an HTTP body (DEALFLOW_MAX_REQUEST_BYTES), though NATS would carry up to max_payload.
        self.max_body_bytes = max_body_bytes

    async def listen(self) -> None:
        await self.nc.subscribe(f"{COMMANDS_PREFIX}.*", queue=QUEUE_GROUP, cb=self.handle)
        # Once started, commands are served: the server has the subscription (else "no responders").
        await self.nc.flush()

    async def handle(self, msg: Msg) -> None:
        # Every request gets a reply, even when the service itself fails on it.
        try:
            body, headers = await self.answer(msg.subject, msg.data, msg.headers or {})
        except Exception as fault:  # noqa: BLE001 - answered as 500 and logged with its traceback
            body, headers = _internal(fault)
        if not msg.reply:
            return
        try:
            await self.nc.publish(msg.reply, json.dumps(body).encode(), headers=headers or None)
        except Exception as fault:  # noqa: BLE001 - e.g. a reply over max_payload: still answer, small
            body, headers = _internal(fault)
            await self.nc.publish(msg.reply, json.dumps(body).encode(), headers=headers)

    async def answer(self, subject: str, data: bytes, headers: dict[str, str]) -> tuple[dict[str, Any], dict[str, str]]:
        """The reply body and headers for one command message (empty headers on success)."""
        structlog.contextvars.clear_contextvars()

        def get(name: str) -> list[str]:
            # nats-py gives one value per header name (the last one sent).
            return [headers[name]] if name in headers else []

        try:
            request_id = edge.request_id(get(edge.REQUEST_ID))
        except edge.InvalidHeader as refusal:
            structlog.contextvars.bind_contextvars(request_id=uuid4().hex, subject=subject[:200])
            return _refused(refusal)
        structlog.contextvars.bind_contextvars(request_id=request_id, subject=subject[:200])
        command = subject.removeprefix(f"{COMMANDS_PREFIX}.")
        route = ROUTES.get(command)
        if route is None:
            known = ", ".join(sorted(ROUTES))
            return _error("unknown_command", f"no command {command[:100]!r} (known: {known})", 404)
        if len(data) > self.max_body_bytes:
            return _error("request_too_large", f"the message is over {self.max_body_bytes} bytes", 413)
        try:
            edge.total_header_size(list(headers.items()))
            edge.check_headers(get)
            message = route.message.model_validate(edge.decode_json(data or b"{}"))
            ctx = edge.command_context(get, request_id)
        except DealflowError as refusal:
            return _refused(refusal)
        except ValidationError as e:
            errors = [
                {"field": ".".join(str(p) for p in err["loc"]) or "body", "rule": err["msg"]} for err in e.errors()
            ]
            return invalid_body(errors), {ERROR_CODE: "422", ERROR: "invalid_command"}
        try:
            outcome = await asyncio.to_thread(route.call, self.deals, message, ctx)
        except DealflowError as refusal:
            return _refused(refusal)
        # Opening creates the deal itself: its id is what HTTP's 201 answers with, so the reply carries it too.
        created = str(outcome.deal.id) if command == "open_deal" else outcome.created_id
        return {"id": created, "replayed": outcome.replayed, "deal": command_view(outcome.deal)}, {}


def _refused(refusal: DealflowError) -> tuple[dict[str, Any], dict[str, str]]:
    return error_body(refusal), {ERROR_CODE: str(status_of(refusal)), ERROR: refusal.code}


def _internal(fault: Exception) -> tuple[dict[str, Any], dict[str, str]]:
    # One JSON log line with the request id (bound in answer) and the traceback.
    log.error("internal_error", exc_info=fault)
    request_id = structlog.contextvars.get_contextvars().get("request_id")
    return internal_error_body(request_id), {ERROR_CODE: "500", ERROR: INTERNAL_ERROR}


def _error(code: str, message: str, status: int) -> tuple[dict[str, Any], dict[str, str]]:
    return {"code": code, "message": message}, {ERROR_CODE: str(status), ERROR: code}

