"""Routes for Right Terms: terms, concessions, non-negotiables, right-client facts, impasses,
escalations, walk-away conditions, relationship health, and the active policy."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from litestar import Controller, Response, get, post
from litestar.di import NamedDependency, Provide
from litestar.params import FromPath, JSONBody
from litestar.status_codes import HTTP_200_OK, HTTP_201_CREATED

from .. import commands as c
from ..application import DealService
from ..views import CommandDealView, HealthView, health_view, policy_view
from .context import ERROR_RESPONSES, command_context
from .routes import CreatedView, created_response, deal_response


class NegotiationController(Controller):
    path = "/deals/{deal_id:uuid}"
    tags = ["negotiation"]
    dependencies = {"ctx": Provide(command_context, sync_to_thread=False)}  # noqa: RUF012

    @post("/terms", status_code=HTTP_200_OK, sync_to_thread=True, summary="A side puts a term on the table", responses=ERROR_RESPONSES)
    def propose_term(
        self, deals: NamedDependency[DealService], deal_id: FromPath[UUID], data: JSONBody[c.ProposeTerm], ctx: NamedDependency[c.CommandContext]
    ) -> Response[CommandDealView]:
        return deal_response(deals.propose_term(deal_id, data, ctx))

    @post("/terms/{term:str}/agreement", status_code=HTTP_200_OK, sync_to_thread=True, summary="Both sides agree a term", responses=ERROR_RESPONSES)
    def agree_term(
        self,
        deals: NamedDependency[DealService],
        deal_id: FromPath[UUID],
        term: FromPath[str],
        data: JSONBody[c.AgreeTerm],
        ctx: NamedDependency[c.CommandContext],
    ) -> Response[CommandDealView]:
        return deal_response(deals.agree_term(deal_id, term, data, ctx))

    @post("/concessions", status_code=HTTP_201_CREATED, sync_to_thread=True, summary="A side gave something", responses=ERROR_RESPONSES)
    def record_concession(
        self, deals: NamedDependency[DealService], deal_id: FromPath[UUID], data: JSONBody[c.RecordConcession], ctx: NamedDependency[c.CommandContext]
    ) -> Response[CreatedView]:
        return created_response(deals.record_concession(deal_id, data, ctx))

    @post("/non-negotiables/{name:str}/refusal", status_code=HTTP_200_OK, sync_to_thread=True, responses=ERROR_RESPONSES)
    def refuse_non_negotiable(
        self,
        deals: NamedDependency[DealService],
        deal_id: FromPath[UUID],
        name: FromPath[str],
        data: JSONBody[c.RefuseNonNegotiable],
        ctx: NamedDependency[c.CommandContext],
    ) -> Response[CommandDealView]:
        return deal_response(deals.refuse_non_negotiable(deal_id, name, data, ctx))

    @post("/non-negotiables/{name:str}/acceptance", status_code=HTTP_200_OK, sync_to_thread=True, responses=ERROR_RESPONSES)
    def accept_non_negotiable(
        self, deals: NamedDependency[DealService], deal_id: FromPath[UUID], name: FromPath[str], ctx: NamedDependency[c.CommandContext]
    ) -> Response[CommandDealView]:
        return deal_response(deals.accept_non_negotiable(deal_id, name, ctx))

    @post("/client-facts", status_code=HTTP_200_OK, sync_to_thread=True, summary="Facts judged by the right-client criteria", responses=ERROR_RESPONSES)
    def record_client_facts(
        self, deals: NamedDependency[DealService], deal_id: FromPath[UUID], data: JSONBody[c.RecordClientFacts], ctx: NamedDependency[c.CommandContext]
    ) -> Response[CommandDealView]:
        return deal_response(deals.record_client_facts(deal_id, data, ctx))

    @post("/impasses", status_code=HTTP_201_CREATED, sync_to_thread=True, responses=ERROR_RESPONSES)
    def declare_impasse(
        self, deals: NamedDependency[DealService], deal_id: FromPath[UUID], data: JSONBody[c.DeclareImpasse], ctx: NamedDependency[c.CommandContext]
    ) -> Response[CreatedView]:
        return created_response(deals.declare_impasse(deal_id, data, ctx))

    @post("/impasses/{impasse_id:str}/resolution", status_code=HTTP_200_OK, sync_to_thread=True, responses=ERROR_RESPONSES)
    def resolve_impasse(
        self,
        deals: NamedDependency[DealService],
        deal_id: FromPath[UUID],
        impasse_id: FromPath[str],
        data: JSONBody[c.ResolveImpasse],
        ctx: NamedDependency[c.CommandContext],
    ) -> Response[CommandDealView]:
        return deal_response(deals.resolve_impasse(deal_id, impasse_id, data, ctx))

    @post("/escalations", status_code=HTTP_201_CREATED, sync_to_thread=True, summary="Over the counterpart's head, while an impasse is open", responses=ERROR_RESPONSES)
    def escalate(
        self, deals: NamedDependency[DealService], deal_id: FromPath[UUID], data: JSONBody[c.Escalate], ctx: NamedDependency[c.CommandContext]
    ) -> Response[CreatedView]:
        return created_response(deals.escalate(deal_id, data, ctx))

    @post(
        "/conditions/{condition_id:str}/waiver",
        status_code=HTTP_200_OK,
        sync_to_thread=True,
        summary="Waive a walk-away condition (X-Actor-Role: approver)",
        responses=ERROR_RESPONSES,
    )
    def waive_condition(
        self,
        deals: NamedDependency[DealService],
        deal_id: FromPath[UUID],
        condition_id: FromPath[str],
        data: JSONBody[c.WaiveCondition],
        ctx: NamedDependency[c.CommandContext],
    ) -> Response[CommandDealView]:
        return deal_response(deals.waive_condition(deal_id, condition_id, data, ctx))

    @get("/health", sync_to_thread=True, summary="Concession balance, open conditions, impasses and a verdict", responses=ERROR_RESPONSES)
    def health(self, deals: NamedDependency[DealService], deal_id: FromPath[UUID]) -> HealthView:
        return health_view(deals.get_deal(deal_id))


@get("/policy", tags=["negotiation"], summary="The active Right Terms policy and its version", sync_to_thread=False, responses=ERROR_RESPONSES)
def active_policy(deals: NamedDependency[DealService]) -> dict[str, Any]:
    return policy_view(deals.policy)
