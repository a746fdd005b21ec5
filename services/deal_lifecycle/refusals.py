"""How a refusal is answered, the same on every road: a JSON body with a stable code, and a status.

HTTP sends the status as the response status; NATS replies carry it in the
`Nats-Service-Error-Code` header.
"""

from __future__ import annotations

from typing import Any

from .application import IdempotencyKeyReused, VersionMismatch
from .domain.errors import CommandRefused, DealflowError, Forbidden, InvalidCommand, NotFound, SigningRefused

_STATUS: list[tuple[type[DealflowError], int]] = [
    (InvalidCommand, 422),
    (IdempotencyKeyReused, 422),
    (NotFound, 404),
    (Forbidden, 403),
    (VersionMismatch, 412),
    (CommandRefused, 409),
]


def status_of(error: DealflowError) -> int:
    return next((status for kind, status in _STATUS if isinstance(error, kind)), 400)


def error_body(error: DealflowError) -> dict[str, Any]:
    body: dict[str, Any] = {"code": error.code, "message": error.message}
    if isinstance(error, InvalidCommand):
        body["errors"] = [{"field": error.field, "rule": error.rule}]
    if isinstance(error, SigningRefused):
        body["blockers"] = [{"code": b.code, "message": b.message, "subject_id": b.subject_id} for b in error.blockers]
    return body


def invalid_body(errors: list[dict[str, str]]) -> dict[str, Any]:
    """Several field errors found by the payload's schema, before the command reached the service."""
    message = "; ".join(f"{e['field']}: {e['rule']}" for e in errors)
    return {"code": InvalidCommand.code, "message": message, "errors": errors}
