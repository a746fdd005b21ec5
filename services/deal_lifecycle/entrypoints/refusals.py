"""How a refusal is answered, the same on every road: a JSON body with a stable code, and a status.

HTTP sends the status as the response status; NATS replies carry it in the
`Nats-Service-Error-Code` header.
"""

from __future__ import annotations

from typing import Any

from dealflow.deal_lifecycle.application.access import AuthUnavailable, Forbidden, Unauthenticated
from dealflow.deal_lifecycle.application.service import IdempotencyKeyReused, VersionMismatch
from dealflow.deal_lifecycle.domain.errors import CommandRefused, DealflowError, InvalidCommand, NotFound, SigningRefused
from dealflow.deal_lifecycle.entrypoints.edge import InvalidHeader, MalformedBody, TooManyStreams, UnexpectedBody, UnsupportedMediaType

INTERNAL_ERROR = "internal_error"

# First match wins: subclasses before their bases.
_STATUS: list[tuple[type[DealflowError], int]] = [
    (Unauthenticated, 401),
    (Forbidden, 403),
    (AuthUnavailable, 503),
    (InvalidHeader, 400),
    (MalformedBody, 400),
    (UnexpectedBody, 400),
    (UnsupportedMediaType, 415),
    (InvalidCommand, 422),
    (IdempotencyKeyReused, 422),
    (NotFound, 404),
    (VersionMismatch, 412),
    (CommandRefused, 409),
    (TooManyStreams, 503),
]


def status_of(error: DealflowError) -> int:
    return next((status for kind, status in _STATUS if isinstance(error, kind)), 400)


def error_body(error: DealflowError) -> dict[str, Any]:
    body: dict[str, Any] = {"code": error.code, "message": error.message}
    if isinstance(error, InvalidCommand):
        body["errors"] = [{"field": error.field, "rule": error.rule}]
    if isinstance(error, Forbidden):
        body["allowed_roles"] = error.allowed_roles  # the roles that may do it, so the caller knows whom to ask
    if isinstance(error, SigningRefused):
        body["blockers"] = [{"code": b.code, "message": b.message, "subject_id": b.subject_id} for b in error.blockers]
        body["blockers_total"] = error.blockers_total  # `blockers` names at most the first 50
    return body


def invalid_body(errors: list[dict[str, str]]) -> dict[str, Any]:
    """Several field errors found by the payload's schema, before the command reached the service."""
    message = "; ".join(f"{e['field']}: {e['rule']}" for e in errors)
    return {"code": InvalidCommand.code, "message": message, "errors": errors}


def internal_error_body(request_id: str | None) -> dict[str, Any]:
    """What a caller sees of a fault in the service: no detail, but the id to find its log line."""
    body: dict[str, Any] = {"code": INTERNAL_ERROR, "message": "the service failed on this request; its log line has the details (look up request_id)"}
    if request_id:
        body["request_id"] = request_id
    return body
