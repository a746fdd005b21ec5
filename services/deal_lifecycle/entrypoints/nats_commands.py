"""Commands over NATS: `deals.commands.<command>`, request/reply, into the same application service.

The message is the command's JSON payload (the same model the HTTP route decodes) plus
the identifiers HTTP carries in its path (`deal_id`, `promise_id`, ...). Headers are the
HTTP ones: `Authorization: Bearer <token>` (judged by the same table, before the payload is
read), `Idempotency-Key`, `If-Match`, `X-On-Behalf-Of`, `X-Correlation-ID`. The reply is
`{"deal": ..., "id": ...}`, or the same error body HTTP sends (401, 403, 422, 409...), with
the status in the `Nats-Service-Error-Code` header: a refusal is always an explicit reply.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any
from uuid import UUID, uuid4

import structlog
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from pydantic import BaseModel, ValidationError, create_model

from dealflow.deal_lifecycle.application import commands as c
from dealflow.deal_lifecycle.application.access import Verifier, authorize
from dealflow.deal_lifecycle.application.command_table import BY_NAME, COMMANDS, DealCommand
from dealflow.deal_lifecycle.application.service import DealService
from dealflow.deal_lifecycle.application.views import command_view
from dealflow.deal_lifecycle.config import Settings
from dealflow.deal_lifecycle.domain.errors import DealflowError
from dealflow.deal_lifecycle.entrypoints import edge
from dealflow.deal_lifecycle.entrypoints.refusals import INTERNAL_ERROR, error_body, internal_error_body, invalid_body, status_of
from dealflow.nats_contract import COMMANDS_PREFIX

log = structlog.get_logger("dealflow.nats")

QUEUE_GROUP = "deal-lifecycle"
# Where replies may go: a requester's inbox (nats-py's `_INBOX.`, or a prefix of its own such as
# `_INBOX_watcher.`), or `_R_.`, the server's mapping of a reply across accounts.
REPLY_PREFIXES = ("_INBOX", "_R_.")
ERROR_CODE = "Nats-Service-Error-Code"
ERROR = "Nats-Service-Error"

def _message(command: DealCommand) -> type[BaseModel]:
    """The command's body model with the identifiers HTTP carries in its path, as fields."""
    identifiers = command.ids if command.opens else ("deal_id", *command.ids)
    fields: dict[str, Any] = {name: (UUID if name == "deal_id" else c.Name, ...) for name in identifiers}
    body = command.body or c.Command
    return create_model(f"{body.__name__}Message", __base__=body, **fields)


# The message each subject takes, derived from the command table.
MESSAGES: dict[str, type[BaseModel]] = {command.name: _message(command) for command in COMMANDS}


class CommandResponder:
    """Answers `deals.commands.*` requests; several processes share them through a queue group."""

    def __init__(self, deals: DealService, nc: NATS, verifier: Verifier, max_body_bytes: int = Settings.max_request_bytes) -> None:
        self.deals = deals
        self.nc = nc
        self.verifier = verifier
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
        if not msg.reply.startswith(REPLY_PREFIXES):
            # A reply goes to the requester's inbox (or, across accounts, the server's mapping of it),
            # never to a subject the sender named: that could be a deal's events or checkpoints.
            log.warning("command not answered: its reply subject is not an inbox", reply=msg.reply[:100])
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
        name = subject.removeprefix(f"{COMMANDS_PREFIX}.")
        command = BY_NAME.get(name)
        if command is None:
            known = ", ".join(sorted(BY_NAME))
            return _error("unknown_command", f"no command {name[:100]!r} (known: {known})", 404)
        if len(data) > self.max_body_bytes:
            return _error("request_too_large", f"the message is over {self.max_body_bytes} bytes", 413)
        try:
            edge.total_header_size(list(headers.items()))
            # Who, and may they: before the payload is read, as on HTTP.
            caller = await edge.authenticate(get, self.verifier)
            structlog.contextvars.bind_contextvars(caller=caller.sub)
            authorize(command.roles, caller.roles, command.name)
            edge.check_headers(get)
            message = MESSAGES[name].model_validate(edge.decode_json(data or b"{}"))
            ctx = edge.command_context(get, request_id, caller)
        except DealflowError as refusal:
            return _refused(refusal)
        except ValidationError as e:
            errors = [
                {"field": ".".join(str(p) for p in err["loc"]) or "body", "rule": err["msg"]} for err in e.errors()
            ]
            return invalid_body(errors), {ERROR_CODE: "422", ERROR: "invalid_command"}
        body = None if command.body is None else command.body(**{field: getattr(message, field) for field in command.body.model_fields})
        deal_id = None if command.opens else message.deal_id  # type: ignore[attr-defined]
        ids = {name: getattr(message, name) for name in command.ids}
        try:
            outcome = await asyncio.to_thread(self.deals.handle, command.name, deal_id, body, ctx, **ids)
        except DealflowError as refusal:
            return _refused(refusal)
        # Opening creates the deal itself: its id is what HTTP's 201 answers with, so the reply carries it too.
        created = str(outcome.deal.id) if command.opens else outcome.created_id
        return {"id": created, "replayed": outcome.replayed, "deal": command_view(outcome.deal, limits=caller.sees_private_limits, policy=self.deals.policy)}, {}


def _refused(refusal: DealflowError) -> tuple[dict[str, Any], dict[str, str]]:
    return error_body(refusal), {ERROR_CODE: str(status_of(refusal)), ERROR: refusal.code}


def _internal(fault: Exception) -> tuple[dict[str, Any], dict[str, str]]:
    # One JSON log line with the request id (bound in answer) and the traceback.
    log.error("internal_error", exc_info=fault)
    request_id = structlog.contextvars.get_contextvars().get("request_id")
    return internal_error_body(request_id), {ERROR_CODE: "500", ERROR: INTERNAL_ERROR}


def _error(code: str, message: str, status: int) -> tuple[dict[str, Any], dict[str, str]]:
    return {"code": code, "message": message}, {ERROR_CODE: str(status), ERROR: code}

