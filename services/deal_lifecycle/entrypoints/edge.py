"""The rules at the service's edge, one definition for HTTP and NATS alike.

Whatever a caller sends is bounded and checked here before it reaches a command: every
header the service reads or copies into an event (a header that could not be published
must never be stored), and the JSON body (UTF-8, no duplicate keys, bounded nesting).
Breaking a rule is refused, never truncated or repaired silently.
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Callable, Sequence
from typing import Any
from uuid import uuid4

from dealflow.deal_lifecycle.application.access import Caller, Unauthenticated, Verifier
from dealflow.deal_lifecycle.application.commands import CommandContext
from dealflow.deal_lifecycle.domain.errors import DealflowError, InvalidCommand

REQUEST_ID = "X-Request-ID"
AUTHORIZATION = "Authorization"
ON_BEHALF_OF = "X-On-Behalf-Of"
_BEARER = "bearer "

# The longest value each header may carry, in characters. These are copied into events
# (correlation id, on behalf of) or receipts (idempotency key), so they must stay small.
HEADER_LIMITS: dict[str, int] = {
    REQUEST_ID: 200,
    "X-Correlation-ID": 200,
    "Idempotency-Key": 255,
    ON_BEHALF_OF: 200,
    "If-Match": 40,
    # "Bearer " and a token (identity.MAX_TOKEN_CHARACTERS).
    AUTHORIZATION: 8192 + len(_BEARER),
}
# All headers of one request or message together (HTTP: uvicorn's h11 limit; NATS: checked here).
MAX_HEADER_BYTES = 16 * 1024

# A deal version is a positive 64-bit integer; at most 18 digits keeps it one.
_VERSION = re.compile(r"[0-9]{1,18}")


class InvalidHeader(InvalidCommand):
    """A header breaks its rule (too long, control characters, not UTF-8, repeated)."""

    code = "invalid_header"


class MalformedBody(DealflowError):
    code = "malformed_request"


class UnexpectedBody(DealflowError):
    code = "unexpected_body"


class UnsupportedMediaType(DealflowError):
    code = "unsupported_media_type"


class TooManyStreams(DealflowError):
    """This process already serves as many live streams as it is configured to (DEALFLOW_MAX_STREAMS)."""

    code = "too_many_streams"


def header(name: str, values: Sequence[str | bytes]) -> str | None:
    """The one value of a header, checked against its rule; None when it was not sent."""
    if not values:
        return None
    if len(values) > 1:
        raise InvalidHeader(name, "must be sent once")
    raw = values[0]
    try:
        value = raw.decode("utf-8") if isinstance(raw, bytes) else raw
    except UnicodeDecodeError:
        raise InvalidHeader(name, "must be UTF-8") from None
    # NATS clients decode headers with errors="replace": a U+FFFD is what invalid UTF-8 became.
    if "\ufffd" in value:
        raise InvalidHeader(name, "must be UTF-8")
    limit = HEADER_LIMITS.get(name)
    if limit is not None and len(value) > limit:
        raise InvalidHeader(name, f"must be at most {limit} characters")
    if any(unicodedata.category(ch) in ("Cc", "Cs") for ch in value):
        raise InvalidHeader(name, "must not contain control characters")
    return value


def total_header_size(headers: Sequence[tuple[str | bytes, str | bytes]]) -> None:
    size = sum(len(_bytes(name)) + len(_bytes(value)) for name, value in headers)
    if size > MAX_HEADER_BYTES:
        raise InvalidHeader("headers", f"must be at most {MAX_HEADER_BYTES} bytes together")


def _bytes(text: str | bytes) -> bytes:
    return text if isinstance(text, bytes) else text.encode("utf-8", "replace")


def request_id(values: Sequence[str | bytes]) -> str:
    """The caller's request id, checked, or a new one. It is echoed in a response header: printable ASCII only."""
    value = header(REQUEST_ID, values)
    if value and not (value.isascii() and value.isprintable()):
        raise InvalidHeader(REQUEST_ID, "must be printable ASCII")
    return value or uuid4().hex


async def authenticate(get: Callable[[str], Sequence[str | bytes]], verifier: Verifier) -> Caller:
    """The caller a request's `Authorization: Bearer <token>` names, verified; Unauthenticated otherwise.
    The same for HTTP and NATS. The token itself is never logged, echoed or kept."""
    value = header(AUTHORIZATION, get(AUTHORIZATION))
    if value is None:
        raise Unauthenticated("send Authorization: Bearer <token> (a JWT from your identity provider, or `dealflow token`)")
    if not value.lower().startswith(_BEARER) or not value[len(_BEARER) :].strip():
        raise Unauthenticated("the Authorization header must be 'Bearer <token>'")
    return await verifier.verify(value[len(_BEARER) :].strip())


def command_context(get: Callable[[str], Sequence[str | bytes]], request_id: str, caller: Caller) -> CommandContext:
    """What travels with a command: who (the verified caller), for whom, and its headers (`get` returns every value sent for a name)."""
    on_behalf_of = (header(ON_BEHALF_OF, get(ON_BEHALF_OF)) or "").strip() or None
    if on_behalf_of is not None and any(unicodedata.category(ch) == "Cf" for ch in on_behalf_of):
        raise InvalidHeader(ON_BEHALF_OF, "must not contain invisible (format) characters")
    return CommandContext(
        actor=caller.sub,
        roles=caller.roles,
        on_behalf_of=on_behalf_of,
        correlation_id=header("X-Correlation-ID", get("X-Correlation-ID")) or request_id,
        idempotency_key=header("Idempotency-Key", get("Idempotency-Key")) or None,
        expected_version=parse_version(header("If-Match", get("If-Match"))),
    )


def check_headers(get: Callable[[str], Sequence[str | bytes]]) -> None:
    """Every header's bounds, before anything else is read (so a refusal names the header).
    If-Match is read as a version only by commands (command_context)."""
    for name in HEADER_LIMITS:
        header(name, get(name))


def parse_version(if_match: str | None) -> int | None:
    """The version in an If-Match header: 3, "3" or W/"3" (ASCII digits only: `²` or `٣` are not versions)."""
    if if_match is None:
        return None
    value = if_match.strip().removeprefix("W/").strip('"')
    if not _VERSION.fullmatch(value):
        raise InvalidCommand("If-Match", 'must be a deal version, as given in the ETag (e.g. "3")')
    return int(value)


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result = dict(pairs)
    if len(result) != len(pairs):
        seen: set[str] = set()
        twice = next(k for k, _ in pairs if k in seen or seen.add(k))  # type: ignore[func-returns-value]
        raise MalformedBody(f"the key {twice!r} appears twice in one object")
    return result


def _no_constant(name: str) -> Any:
    raise MalformedBody(f"{name} is not JSON")


def decode_json(data: bytes) -> Any:
    """A JSON body, strictly: UTF-8, no duplicate keys, no NaN/Infinity, bounded nesting."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise MalformedBody(f"the body is not UTF-8 (byte {e.start})") from None
    try:
        value = json.loads(text, object_pairs_hook=_no_duplicates, parse_constant=_no_constant)
    except RecursionError:
        raise MalformedBody("the body is nested too deeply") from None
    except ValueError as e:  # JSONDecodeError, and integers beyond Python's digit limit
        raise MalformedBody(f"the body is not valid JSON: {e}") from None
    try:
        # A lone surrogate (\ud800) decodes but can never be stored or published as UTF-8.
        json.dumps(value, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        raise MalformedBody("the body contains a lone surrogate (\\ud800-\\udfff), which is not text") from None
    except RecursionError:
        raise MalformedBody("the body is nested too deeply") from None
    return value
