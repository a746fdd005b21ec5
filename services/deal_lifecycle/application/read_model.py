"""The deals read model: one summary row per deal, for listing by stage or owner.

The row is a projection of the deal's events: it is written in the same transaction
as the events that change it (so a listing never lags behind a command), and it can
be rebuilt from the event log at any time (`dealflow rebuild-read-model`).
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime

from dealflow.deal_lifecycle.domain import deadlines
from dealflow.deal_lifecycle.domain.deal import Deal
from dealflow.deal_lifecycle.domain.errors import InvalidCommand


@dataclass(frozen=True)
class DealSummary:
    deal_id: str
    title: str
    client_name: str
    owner: str
    stage: str
    version: int
    opened_at: datetime
    updated_at: datetime
    # A deadline missed and not yet made good, or an expectation overdue and not yet marked.
    # None: the row was written before deadlines existed (the scheduler rewrites such rows).
    overdue: bool | None = False
    # The deal's schedule, free of the policy: for each kind of moment (deadlines.SCHEDULE), the
    # moment it is counted from. The scheduler adds the policy's durations in the query, so a new
    # policy needs no rewrite of any row.
    due_from: Mapping[str, datetime] = field(default_factory=dict)


@dataclass(frozen=True)
class CommandReceipt:
    """Proof that a command with an idempotency key was carried out, and what it produced."""

    idempotency_key: str
    fingerprint: str
    deal_id: str
    version: int
    created_id: str | None


@dataclass(frozen=True)
class Page:
    items: list[DealSummary]
    next_cursor: str | None


def summary_of(deal: Deal) -> DealSummary:
    return DealSummary(
        deal_id=str(deal.id),
        title=deal.title,
        client_name=deal.client_name,
        owner=deal.owner,
        stage=str(deal.stage),
        version=deal.version,
        opened_at=deal.created_on,
        updated_at=deal.modified_on,
        overdue=deadlines.is_overdue(deal),
        due_from=deadlines.due_from(deal),
    )


def encode_cursor(summary: DealSummary) -> str:
    raw = f"{summary.opened_at.isoformat()}|{summary.deal_id}"
    return base64.urlsafe_b64encode(raw.encode()).decode()


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    try:
        opened_at, deal_id = base64.urlsafe_b64decode(cursor.encode()).decode().split("|")
        return datetime.fromisoformat(opened_at), deal_id
    except ValueError:
        raise InvalidCommand("cursor", "must be a next_cursor value returned by a previous page") from None
