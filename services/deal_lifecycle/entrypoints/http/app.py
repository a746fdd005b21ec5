"""The HTTP app: routes, error answers, OpenAPI at /schema; given its service by the composition root."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager
from typing import Any

import structlog
from litestar import Litestar, Request, Response, get
from litestar.di import Provide
from litestar.exceptions import HTTPException, ValidationException
from litestar.openapi import OpenAPIConfig
from litestar.openapi.spec import Components, SecurityScheme
from litestar.datastructures import State
from litestar.status_codes import HTTP_400_BAD_REQUEST, HTTP_422_UNPROCESSABLE_ENTITY

from dealflow.deal_lifecycle.adapters.alert_log import AlertLog
from dealflow.deal_lifecycle.application.access import Unauthenticated, Verifier
from dealflow.deal_lifecycle.application.service import DealService
from dealflow.deal_lifecycle.config import Settings
from dealflow.deal_lifecycle.domain.errors import DealflowError
from dealflow.deal_lifecycle.entrypoints.http.audit import alerts, stream, verify_deal
from dealflow.deal_lifecycle.entrypoints.http.commands import COMMAND_ROUTES
from dealflow.deal_lifecycle.entrypoints.http.context import OPEN_ROUTE, OPENAPI_PATH, REQUEST_ID, StrictRequest, bind_request, echo_request_id, the_caller
from dealflow.deal_lifecycle.entrypoints.http.live import Streams
from dealflow.deal_lifecycle.entrypoints.http.negotiation import NegotiationController, active_policy
from dealflow.deal_lifecycle.entrypoints.http.routes import DealController
from dealflow.deal_lifecycle.entrypoints.http.server import body_deadline
from dealflow.deal_lifecycle.entrypoints.http.ui import UI_ROUTES
from dealflow.deal_lifecycle.entrypoints.refusals import error_body, internal_error_body, invalid_body, status_of
from dealflow.logs import configure_logging

log = structlog.get_logger("dealflow.http")


def _request_id(request: Request[Any, Any, Any]) -> str | None:
    # Set by bind_request once the id was checked; absent when no route matched.
    return request.state.get("request_id")


def _answer(request: Request[Any, Any, Any], body: dict[str, Any], status: int, headers: Any = None) -> Response[dict[str, Any]]:
    """An error answer; it carries the request id too (after_request hooks do not see refusals)."""
    response = Response(body, status_code=status, headers=headers)
    if request_id := _request_id(request):
        response.headers[REQUEST_ID] = request_id
    return response


def _refusal(request: Request[Any, Any, Any], error: DealflowError) -> Response[dict[str, Any]]:
    # RFC 6750: a 401 names the scheme it wants (and, when a token was sent, that it was not good).
    challenge = None
    if isinstance(error, Unauthenticated):
        sent = "Authorization" in request.headers
        challenge = {"WWW-Authenticate": 'Bearer realm="dealflow"' + (', error="invalid_token"' if sent else "")}
    return _answer(request, error_body(error), status_of(error), challenge)


def _invalid(request: Request[Any, Any, Any], error: ValidationException) -> Response[dict[str, Any]]:
    if not isinstance(error.extra, list):
        # The body could not even be decoded (malformed JSON).
        return _answer(request, {"code": "malformed_request", "message": error.detail}, HTTP_400_BAD_REQUEST)
    errors = [{"field": e.get("key", "body"), "rule": e.get("message", "")} for e in error.extra]
    return _answer(request, invalid_body(errors), HTTP_422_UNPROCESSABLE_ENTITY)


_HTTP_CODES = {
    400: "malformed_request",
    404: "not_found",
    405: "method_not_allowed",
    408: "request_timeout",
    413: "request_too_large",
    415: "unsupported_media_type",
}


def _http(request: Request[Any, Any, Any], error: HTTPException) -> Response[dict[str, Any]]:
    if error.status_code >= 500:
        return _internal(request, error)
    code = _HTTP_CODES.get(error.status_code, "http_error")
    return _answer(request, {"code": code, "message": error.detail}, error.status_code, error.headers)


def _internal(request: Request[Any, Any, Any], error: Exception) -> Response[dict[str, Any]]:
    request_id = _request_id(request)
    # One JSON log line with the request id and the traceback.
    log.error("internal_error", request_id=request_id, exc_info=error)
    return _answer(request, internal_error_body(request_id), 500)


Companion = Callable[[DealService], AbstractAsyncContextManager[None]]
BEARER = "BearerToken"


@get("/health/live", tags=["health"], summary="The process is up (for orchestrators); open to all", sync_to_thread=False, opt=OPEN_ROUTE, security=[{}])
def live() -> dict[str, str]:
    return {"status": "live"}


def create_app(
    settings: Settings,
    deals: DealService | Callable[[], DealService],
    verifier: Verifier,
    companions: Sequence[Companion] = (),
    alert_log: AlertLog | None = None,
) -> Litestar:
    """The HTTP API on `deals` (a service the caller keeps and closes, or a factory whose service the
    app opens at start-up and closes at shutdown), its callers' tokens verified by `verifier`; each
    companion runs beside it (NATS messaging). The composition root (bootstrap.service_app) decides which.
    `GET /alerts` reads the notifier's store at `alert_log` (unset: where the notifier's settings say)."""
    configure_logging()

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        service = deals if isinstance(deals, DealService) else deals()
        app.state.deals = service
        app.state.verifier = verifier
        app.state.streams = streams = Streams(service, max_streams=settings.max_streams)
        async with AsyncExitStack() as running:
            if not isinstance(deals, DealService):
                running.callback(service.close)
            for companion in companions:
                await running.enter_async_context(companion(service))
            try:
                yield
            finally:
                await streams.close()

    def provide_deals(request: Request[Any, Any, Any]) -> DealService:
        return request.app.state.deals

    return Litestar(
        route_handlers=[DealController, *COMMAND_ROUTES, NegotiationController, active_policy, verify_deal, stream, alerts, live, *UI_ROUTES],
        state=State({"alert_log": alert_log if alert_log is not None else AlertLog.from_env()}),
        dependencies={"deals": Provide(provide_deals, sync_to_thread=False), "caller": Provide(the_caller, sync_to_thread=False)},
        lifespan=[lifespan],
        before_request=bind_request,
        after_request=echo_request_id,
        exception_handlers={
            DealflowError: _refusal,
            ValidationException: _invalid,
            HTTPException: _http,
            Exception: _internal,
        },
        request_class=StrictRequest,
        middleware=[body_deadline(settings.body_timeout)],
        request_max_body_size=settings.max_request_bytes,
        openapi_config=OpenAPIConfig(
            title="dealflow",
            version="0.1.0",
            path=OPENAPI_PATH,
            components=Components(
                security_schemes={
                    BEARER: SecurityScheme(
                        type="http",
                        scheme="bearer",
                        bearer_format="JWT",
                        description="A JWT signed by a key of DEALFLOW_AUTH_JWKS (or the development key: `dealflow token`); "
                        "`sub` is the actor, `roles` the roles (emitter, ops, auditor, approver, admin)",
                    )
                }
            ),
            security=[{BEARER: []}],
        ),
        logging_config=None,
    )
