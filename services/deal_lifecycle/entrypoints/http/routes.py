"""The deals read routes (list, one deal, its history) and the answers every command route shapes."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated, TypedDict
from uuid import UUID

from litestar import Controller, Response, get
from litestar.di import NamedDependency
from litestar.params import FromPath, QueryParameter
from litestar.status_codes import HTTP_200_OK, HTTP_201_CREATED

from dealflow.deal_lifecycle.application.access import Caller
from dealflow.deal_lifecycle.application.service import DealService, Outcome
from dealflow.deal_lifecycle.application.views import CommandDealView, DealSummaryView, DealView, EventView, RefusedSigningView, command_view, deal_view, event_view, refused_signing_view, summary_view
from dealflow.deal_lifecycle.domain.errors import InvalidCommand
from dealflow.deal_lifecycle.domain.model import Stage
from dealflow.deal_lifecycle.domain.policy import Policy
from dealflow.deal_lifecycle.entrypoints.http.context import ERROR_RESPONSES, etag, read_route

# Versions are stored as 64-bit integers.
MAX_VERSION = 2**63 - 1


def _moment(as_of: str | None) -> datetime | None:
    """An ISO 8601 time with a zone; not an epoch number, which Litestar would otherwise accept."""
    if as_of is None:
        return None
    rule = "must be an ISO 8601 time with a zone, e.g. 2026-01-31T12:00:00Z"
    if not re.match(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T", as_of):
        raise InvalidCommand("as_of", rule)
    try:
        moment = datetime.fromisoformat(as_of)
    except ValueError:
        raise InvalidCommand("as_of", rule) from None
    if moment.tzinfo is None:
        raise InvalidCommand("as_of", rule)
    try:
        return moment.astimezone(UTC)
    except OverflowError:  # 0001-01-01T00:00:00+01:00 is before the first representable moment
        raise InvalidCommand("as_of", "is out of range") from None


class CreatedView(TypedDict):
    id: str
    deal: CommandDealView


class DealPage(TypedDict):
    items: list[DealSummaryView]
    next_cursor: str | None


class History(TypedDict):
    deal_id: str
    events: list[EventView]
    # A log of its own, numbered on its own: the deal's versions are not its attempts.
    refused_signings: list[RefusedSigningView]


def deal_response(outcome: Outcome, caller: Caller, policy: Policy, status: int = HTTP_200_OK) -> Response[CommandDealView]:
    # Bounded however large the deal grows; GET /deals/{id} has all of it.
    view = command_view(outcome.deal, limits=caller.sees_private_limits, policy=policy)
    return Response(view, status_code=status, headers={"ETag": etag(outcome.deal.version)})


def created_response(outcome: Outcome, caller: Caller, policy: Policy) -> Response[CreatedView]:
    assert outcome.created_id is not None
    return Response(
        {"id": outcome.created_id, "deal": command_view(outcome.deal, limits=caller.sees_private_limits, policy=policy)},
        status_code=HTTP_201_CREATED,
        headers={"ETag": etag(outcome.deal.version)},
    )


class DealController(Controller):
    path = "/deals"
    tags = ["deals"]

    # Named here: sharing its path with the open_deal route made from the command table, Litestar would name it after its wrapper.
    @get("/", sync_to_thread=True, summary="List deals by stage, owner or overdue (from the read model)", responses=ERROR_RESPONSES, operation_id="DealsListDeals", opt=read_route("list_deals"))
    def list_deals(
        self,
        deals: NamedDependency[DealService],
        stage: Annotated[Stage | None, QueryParameter()] = None,
        owner: Annotated[str | None, QueryParameter(max_length=200)] = None,
        limit: Annotated[int, QueryParameter(ge=1, le=500)] = 50,
        cursor: Annotated[str | None, QueryParameter(description="next_cursor of the previous page")] = None,
        overdue: Annotated[
            bool | None,
            QueryParameter(description="true: only deals with a deadline missed and not made good (or, signed, an expectation overdue); false: only the others"),
        ] = None,
    ) -> DealPage:
        page = deals.list_deals(stage=stage, owner=owner, limit=limit, cursor=cursor, overdue=overdue)
        return {"items": [summary_view(s) for s in page.items], "next_cursor": page.next_cursor}

    @get("/{deal_id:uuid}", sync_to_thread=True, summary="A deal now, or as of a version or a moment", responses=ERROR_RESPONSES, opt=read_route("get_deal"))
    def get_deal(
        self,
        deals: NamedDependency[DealService],
        caller: NamedDependency[Caller],
        deal_id: FromPath[UUID],
        as_of_version: Annotated[int | None, QueryParameter(ge=1, le=MAX_VERSION)] = None,
        as_of: Annotated[
            str | None,
            QueryParameter(description="ISO 8601 time with a zone, e.g. 2026-01-31T12:00:00Z", max_length=64, schema_extra={"format": "date-time"}),
        ] = None,
    ) -> Response[DealView]:
        if as_of_version is not None and as_of is not None:
            raise InvalidCommand("as_of", "give either as_of or as_of_version, not both")
        deal = deals.get_deal(deal_id, version=as_of_version, as_of=_moment(as_of))
        concessions = deals.standing_concessions(deal_id, version=deal.version)
        view = deal_view(deal, concessions=concessions, limits=caller.sees_private_limits, policy=deals.policy)
        return Response(view, headers={"ETag": etag(deal.version)})

    @get("/{deal_id:uuid}/events", sync_to_thread=True, summary="The deal's full history, oldest first", responses=ERROR_RESPONSES, opt=read_route("history"))
    def history(self, deals: NamedDependency[DealService], caller: NamedDependency[Caller], deal_id: FromPath[UUID]) -> History:
        events = [event_view(e, limits=caller.sees_private_limits) for e in deals.history(deal_id)]
        return {"deal_id": str(deal_id), "events": events, "refused_signings": [refused_signing_view(e) for e in deals.refused_signings(deal_id)]}
