"""Reading Right Terms: a deal's relationship health, and the active policy (its commands are in the command table)."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from litestar import Controller, get
from litestar.di import NamedDependency
from litestar.params import FromPath

from dealflow.deal_lifecycle.application.access import Caller
from dealflow.deal_lifecycle.application.service import DealService
from dealflow.deal_lifecycle.application.views import HealthView, health_view, policy_view
from dealflow.deal_lifecycle.entrypoints.http.context import ERROR_RESPONSES, read_route


class NegotiationController(Controller):
    path = "/deals/{deal_id:uuid}"
    tags = ["negotiation"]

    @get("/health", sync_to_thread=True, summary="Concession balance, open conditions, impasses and a verdict", responses=ERROR_RESPONSES, opt=read_route("health"))
    def health(self, deals: NamedDependency[DealService], caller: NamedDependency[Caller], deal_id: FromPath[UUID]) -> HealthView:
        deal = deals.get_deal(deal_id)
        return health_view(deal, concessions=deals.standing_concessions(deal_id, version=deal.version), limits=caller.sees_private_limits)


@get(
    "/policy",
    tags=["negotiation"],
    summary="The active Right Terms policy and its version (private limits for approver and admin only)",
    sync_to_thread=False,
    responses=ERROR_RESPONSES,
    opt=read_route("policy"),
)
def active_policy(deals: NamedDependency[DealService], caller: NamedDependency[Caller]) -> dict[str, Any]:
    return policy_view(deals.policy, limits=caller.sees_private_limits)
