"""What every request carries besides its body: who, which conversation, retry key, expected version."""

from __future__ import annotations

from typing import Annotated
from uuid import uuid4

import structlog
from litestar import Request, Response
from litestar.params import HeaderParameter

from ..commands import CommandContext
from ..domain.errors import InvalidCommand

REQUEST_ID = "X-Request-ID"


async def bind_request(request: Request) -> None:
    """Give every log line of this request the same request id (echoed back in the response)."""
    structlog.contextvars.clear_contextvars()
    request_id = request.headers.get(REQUEST_ID) or uuid4().hex
    request.state.request_id = request_id
    structlog.contextvars.bind_contextvars(request_id=request_id, method=request.method, path=request.url.path)


async def echo_request_id(response: Response) -> Response:
    request_id = structlog.contextvars.get_contextvars().get("request_id")
    if request_id:
        response.headers[REQUEST_ID] = request_id
    return response


def command_context(
    request: Request,
    actor: Annotated[str | None, HeaderParameter(name="X-Actor", description="Who is acting (until authentication exists)", max_length=200)] = None,
    correlation_id: Annotated[str | None, HeaderParameter(name="X-Correlation-ID", description="Ties the events of one conversation together; defaults to the request id", max_length=200)] = None,
    idempotency_key: Annotated[str | None, HeaderParameter(name="Idempotency-Key", description="Retry with the same key and payload to get the first result again, with nothing recorded twice", max_length=255)] = None,
    if_match: Annotated[str | None, HeaderParameter(name="If-Match", description="The deal version the command expects (as in the ETag); 412 if the deal has moved on")] = None,
    actor_role: Annotated[str | None, HeaderParameter(name="X-Actor-Role", description="The actor's role, e.g. approver (until authentication exists)", max_length=50)] = None,
) -> CommandContext:
    return CommandContext(
        actor=(actor or "").strip() or "anonymous",
        correlation_id=correlation_id or request.state.request_id,
        idempotency_key=idempotency_key or None,
        expected_version=parse_version(if_match),
        actor_role=(actor_role or "").strip().lower() or None,
    )


def parse_version(if_match: str | None) -> int | None:
    """The version in an If-Match header: 3, "3" or W/"3"."""
    if if_match is None:
        return None
    value = if_match.strip().removeprefix("W/").strip('"')
    if not value.isdigit():
        raise InvalidCommand("If-Match", 'must be a deal version, as given in the ETag (e.g. "3")')
    return int(value)


def etag(version: int) -> str:
    return f'"{version}"'
