"""The command routes: one per row of the command table, each handing its command to DealService.handle.

The handlers are made from the table, with the signature Litestar reads (path ids, the body
model, the command context), so the OpenAPI document shows each command's own body, ids and
answer. A handler is named after its command, which keeps the operationIds clients generated
code from (e.g. DealsDealIdPromisesPromiseIdDecisionDecideSalesPromise).
"""

from __future__ import annotations

import inspect
import re
from typing import Any
from uuid import UUID

from litestar import Response, post
from litestar.di import NamedDependency, Provide
from litestar.handlers import HTTPRouteHandler
from litestar.params import FromPath, JSONBody
from litestar.status_codes import HTTP_200_OK, HTTP_201_CREATED

from dealflow.deal_lifecycle.application.access import Caller
from dealflow.deal_lifecycle.application.command_table import COMMANDS, DealCommand
from dealflow.deal_lifecycle.application.commands import CommandContext
from dealflow.deal_lifecycle.application.service import DealService
from dealflow.deal_lifecycle.application.views import CommandDealView
from dealflow.deal_lifecycle.entrypoints.http.context import ERROR_RESPONSES, command_context, command_route
from dealflow.deal_lifecycle.entrypoints.http.routes import CreatedView, created_response, deal_response


def _litestar_path(path: str) -> str:
    # The deal's id is a UUID (another string is 404, as for any unknown path); the others are names.
    return re.sub(r"{(\w+)}", lambda m: f"{{{m[1]}:{'uuid' if m[1] == 'deal_id' else 'str'}}}", path)


def _route(command: DealCommand) -> HTTPRouteHandler:
    def handler(deals: DealService, ctx: CommandContext, caller: Caller, **arguments: Any) -> Response[Any]:
        deal_id = arguments.pop("deal_id", None)
        body = arguments.pop("data", None)
        outcome = deals.handle(command.name, deal_id, body, ctx, **arguments)
        if command.opens:
            response = deal_response(outcome, caller, deals.policy, HTTP_201_CREATED)
            response.headers["Location"] = f"/deals/{outcome.deal.id}"
            return response
        return created_response(outcome, caller, deals.policy) if command.creates else deal_response(outcome, caller, deals.policy)

    keyword = inspect.Parameter.KEYWORD_ONLY
    parameters = [
        inspect.Parameter("deals", keyword, annotation=NamedDependency[DealService]),
        *([] if command.opens else [inspect.Parameter("deal_id", keyword, annotation=FromPath[UUID])]),
        *(inspect.Parameter(name, keyword, annotation=FromPath[str]) for name in command.ids),
        *([] if command.body is None else [inspect.Parameter("data", keyword, annotation=JSONBody[command.body])]),  # type: ignore[name-defined]
        inspect.Parameter("ctx", keyword, annotation=NamedDependency[CommandContext]),
        inspect.Parameter("caller", keyword, annotation=NamedDependency[Caller]),
    ]
    answer = Response[CreatedView] if command.creates else Response[CommandDealView]
    handler.__name__ = handler.__qualname__ = command.name
    handler.__signature__ = inspect.Signature(parameters, return_annotation=answer)  # type: ignore[attr-defined]
    handler.__annotations__ = {p.name: p.annotation for p in parameters} | {"return": answer}
    return post(
        _litestar_path(command.path),
        status_code=HTTP_201_CREATED if command.creates or command.opens else HTTP_200_OK,
        sync_to_thread=True,
        summary=command.summary,
        tags=[command.tag],
        responses=ERROR_RESPONSES,
        dependencies={"ctx": Provide(command_context, sync_to_thread=False)},
        opt=command_route(command.name),
    )(handler)


COMMAND_ROUTES: list[HTTPRouteHandler] = [_route(command) for command in COMMANDS]
