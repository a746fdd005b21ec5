"""What every request carries besides its body: who, which conversation, retry key, expected version.

The header and body rules themselves are in `edge` (shared with NATS); this module applies
them to an HTTP request before Litestar reads anything else.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, NotRequired, TypedDict
from uuid import uuid4

import structlog
from litestar import Request, Response
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import HeaderParameter

from dealflow.deal_lifecycle.application.access import READS, AccessRole, Caller, authorize
from dealflow.deal_lifecycle.application.command_table import BY_NAME
from dealflow.deal_lifecycle.application.commands import CommandContext
from dealflow.deal_lifecycle.entrypoints import edge
from dealflow.deal_lifecycle.entrypoints.edge import REQUEST_ID, parse_version  # noqa: F401 - parse_version: kept importable from here

# Served by Litestar itself, open to all: the OpenAPI document and its viewers.
OPENAPI_PATH = "/schema"

JSON = "application/json"


class FieldError(TypedDict):
    field: str
    rule: str


class ErrorBody(TypedDict):
    """Every error answer: a stable code, a message; the field and rule for invalid input."""

    code: str
    message: str
    errors: NotRequired[list[FieldError]]
    request_id: NotRequired[str]
    allowed_roles: NotRequired[list[str]]


def _error(words: str) -> ResponseSpec:
    return ResponseSpec(data_container=ErrorBody, description=words, generate_examples=False)


# The error answers every route may give, for the OpenAPI document.
ERROR_RESPONSES = {
    401: _error("unauthenticated: no bearer token, or one that does not verify (expired, forged, not for us)"),
    403: _error("forbidden: the token's roles may not do this; allowed_roles names those that may"),
    400: _error("invalid_header (a header over its limit, repeated, not UTF-8 or with control characters), "
                "malformed_request (not strict JSON), unexpected_body (a body on a command that takes none)"),
    408: _error("request_timeout: the body did not arrive in time"),
    415: _error("unsupported_media_type: commands are sent as application/json"),
    422: _error("invalid_command: errors name each field and the rule it broke"),
    500: _error("internal_error: a fault in the service, logged under request_id"),
}


def _headers(request: Request[Any, Any, Any]) -> Callable[[str], list[bytes]]:
    # ASGI headers are bytes that Starlette-style servers hand over as latin-1 text: back to
    # bytes, so that `edge` can insist on UTF-8 (and see every repeat of a header).
    return lambda name: [value.encode("latin-1") for value in request.headers.getall(name, [])]


class StrictRequest(Request[Any, Any, Any]):
    """A request whose JSON body is decoded by the edge's strict rules (UTF-8, no duplicate keys, bounded nesting)."""

    async def json(self) -> Any:
        return edge.decode_json(await self.body() or b"null")


def command_route(name: str) -> dict[str, Any]:
    """The `opt` of a command's route: who may call it is the command table's row."""
    return {"command": name}


def read_route(name: str) -> dict[str, Any]:
    """The `opt` of a read route: who may call it is access.READS[name]."""
    return {"read": name}


OPEN_ROUTE: dict[str, Any] = {"open": True}


def allowed_roles(request: Request[Any, Any, Any]) -> tuple[str, frozenset[AccessRole] | None]:
    """What the route is called (for messages) and the roles that may call it; None: open to anyone.
    A route that declares nothing is refused to everyone: access is never granted by omission."""
    opt = request.route_handler.opt
    if "command" in opt:
        return opt["command"], BY_NAME[opt["command"]].roles
    if "read" in opt:
        return opt["read"], READS[opt["read"]]
    if opt.get("open") or request.url.path == OPENAPI_PATH or request.url.path.startswith(OPENAPI_PATH + "/"):
        return request.url.path, None
    return request.url.path, frozenset()


async def bind_request(request: Request[Any, Any, Any]) -> None:
    """Before anything else is read: give every log line of the request its id, know the caller and
    judge its roles, then check the headers and the body's form."""
    structlog.contextvars.clear_contextvars()
    headers = _headers(request)
    try:
        request_id = edge.request_id(headers(REQUEST_ID))
    except edge.InvalidHeader:
        # Never echo or log a refused request id: answer under a new one.
        request.state.request_id = uuid4().hex
        structlog.contextvars.bind_contextvars(request_id=request.state.request_id, method=request.method, path=request.url.path)
        raise
    request.state.request_id = request_id
    structlog.contextvars.bind_contextvars(request_id=request_id, method=request.method, path=request.url.path)
    edge.total_header_size([(name, value) for name, value in request.scope["headers"]])
    what, allowed = allowed_roles(request)
    if allowed is not None:
        caller = await edge.authenticate(headers, request.app.state.verifier)
        request.state.caller = caller
        structlog.contextvars.bind_contextvars(caller=caller.sub)
        authorize(allowed, caller.roles, what)
    edge.check_headers(headers)
    if request.method == "POST":
        await _check_body(request)


def the_caller(request: Request[Any, Any, Any]) -> Caller:
    """The verified caller of a route that is not open (bind_request put it there)."""
    return request.state.caller


async def _check_body(request: Request[Any, Any, Any]) -> None:
    """Commands are JSON: anything else is refused, so a web page cannot send one from a browser (CSRF)."""
    content_type = request.headers.get("Content-Type")
    body = await request.body()
    if content_type is None:
        # curl -X POST with no body is fine; a browser always sends Origin on a cross-site POST.
        if body.strip() or "Origin" in request.headers:
            raise edge.UnsupportedMediaType(f"commands must be sent with Content-Type: {JSON}")
    else:
        media, _, params = content_type.partition(";")
        charset = params.strip().lower().removeprefix("charset=").strip('"') if "charset" in params.lower() else "utf-8"
        if media.strip().lower() != JSON or charset not in ("utf-8", "utf8"):
            raise edge.UnsupportedMediaType(f"commands must be sent with Content-Type: {JSON} (UTF-8), not {content_type[:100]!r}")
    takes_body = "data" in request.route_handler.parsed_fn_signature.parameters
    if not takes_body and body.strip() and edge.decode_json(body) != {}:
        raise edge.UnexpectedBody("this command takes no body: send none, or {}")


async def echo_request_id(response: Response) -> Response:
    request_id = structlog.contextvars.get_contextvars().get("request_id")
    if request_id:
        response.headers[REQUEST_ID] = request_id
    return response


def command_context(
    request: Request,
    on_behalf_of: Annotated[str | None, HeaderParameter(name="X-On-Behalf-Of", description="The person a system acts for, recorded on the events as on_behalf_of beside the token's sub; at most 200 characters", max_length=200)] = None,
    correlation_id: Annotated[str | None, HeaderParameter(name="X-Correlation-ID", description="Ties the events of one conversation together; defaults to the request id; at most 200 characters", max_length=200)] = None,
    idempotency_key: Annotated[str | None, HeaderParameter(name="Idempotency-Key", description="Retry with the same key and payload to get the first result again, with nothing recorded twice; at most 255 characters", max_length=255)] = None,
    if_match: Annotated[str | None, HeaderParameter(name="If-Match", description="The deal version the command expects (as in the ETag); 412 if the deal has moved on", max_length=40)] = None,
) -> CommandContext:
    # The parameters document the headers in the OpenAPI document; the values are read by the
    # edge's rules (the same as over NATS), which bind_request has already applied.
    del on_behalf_of, correlation_id, idempotency_key, if_match
    return edge.command_context(_headers(request), request.state.request_id, the_caller(request))


def etag(version: int) -> str:
    return f'"{version}"'
