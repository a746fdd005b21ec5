"""Reading Right Terms: a deal's relationship health, and the active policy (its commands are in the command table)."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from litestar import Controller, get
from litestar.di import NamedDependency
from litestar.params import FromPath

from dealflow.deal_lifecycle.application.service import DealService
from dealflow.deal_lifecycle.application.views import HealthView, health_view, policy_view
from dealflow.deal_lifecycle.entrypoints.http.context import ERROR_RESPONSES


class NegotiationController(Controller):
    path = "/deals/{deal_id:uuid}"
    tags = ["negotiation"]

    @get("/health", sync_to_thread=True, summary="Concession balance, open conditions, impasses and a verdict", responses=ERROR_RESPONSES)
    def health(self, deals: NamedDependency[DealService], deal_id: FromPath[UUID]) -> HealthView:
        return health_view(deals.get_deal(deal_id))


@get("/policy", tags=["negotiation"], summary="The active Right Terms policy and its version", sync_to_thread=False, responses=ERROR_RESPONSES)
def active_policy(deals: NamedDependency[DealService]) -> dict[str, Any]:
    return policy_view(deals.policy)
