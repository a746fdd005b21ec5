"""The HTTP app factory: routes, error answers, OpenAPI at /schema, and the service's lifespan."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import structlog
from litestar import Litestar, Request, Response
from litestar.di import Provide
from litestar.exceptions import HTTPException, ValidationException
from litestar.openapi import OpenAPIConfig
from litestar.status_codes import HTTP_400_BAD_REQUEST, HTTP_422_UNPROCESSABLE_ENTITY

from ..application import DealService
from ..config import Settings
from ..domain.errors import DealflowError
from ..logs import configure_logging
from ..live import Streams
from ..messaging import DealMessaging
from ..policy_file import load_policy
from ..refusals import error_body, internal_error_body, invalid_body, status_of
from .audit import stream, verify_deal
from .commands import COMMAND_ROUTES
from .context import REQUEST_ID, StrictRequest, bind_request, echo_request_id
from .negotiation import NegotiationController, active_policy
from .routes import DealController
from .server import body_deadline


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
    return _answer(request, error_body(error), status_of(error))


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


def create_app(settings: Settings | None = None, service: DealService | None = None) -> Litestar:
    """Wire the service into HTTP. Pass `service` to share one (tests); otherwise it is built from settings."""
    settings = settings or Settings.from_env()
    configure_logging()

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        deals = service or DealService(env=settings.eventsourcing_env(), policy=load_policy(settings.policy_path))
        app.state.deals = deals
        app.state.streams = streams = Streams(deals, max_streams=settings.max_streams)
        messaging = DealMessaging(deals, settings) if settings.nats_servers else None
        if messaging is not None:
            await messaging.start()
        try:
            yield
        finally:
            await streams.close()
            if messaging is not None:
                await messaging.stop()
            if service is None:
                deals.close()

    def provide_deals(request: Request[Any, Any, Any]) -> DealService:
        return request.app.state.deals

    return Litestar(
        route_handlers=[DealController, *COMMAND_ROUTES, NegotiationController, active_policy, verify_deal, stream],
        dependencies={"deals": Provide(provide_deals, sync_to_thread=False)},
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
        openapi_config=OpenAPIConfig(title="dealflow", version="0.1.0", path="/schema"),
        logging_config=None,
    )
