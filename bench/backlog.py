"""Stored events, built fast: real domain events from one Deal, cloned onto other deals and versions.

Recording a concession through the aggregate costs a few hundred microseconds (the lifecycle
check and the balance rule), and more as a deal grows; a 100k-event backlog built that way
takes longer than the thing it is there to measure. So one template deal records real
events through the domain, and each benchmark deal gets copies with its own id and
consecutive versions, saved many per DealService.save (one transaction per deal).
"""

from __future__ import annotations

import dataclasses
from typing import Any
from uuid import UUID, uuid4

from .common import POLICY_FILE


def template_events(concessions: int) -> list[Any]:
    """A DealOpened and `concessions` ConcessionRecorded events, recorded through the aggregate."""
    from dealflow.deal_lifecycle.adapters.policy_file import load_policy  # noqa: PLC0415
    from dealflow.deal_lifecycle.domain.deal import Deal  # noqa: PLC0415
    from dealflow.deal_lifecycle.domain.model import Attribution, Side  # noqa: PLC0415

    policy = load_policy(POLICY_FILE)
    by = Attribution(actor="bench", correlation_id="bench-backlog")
    deal = Deal.open(title="Bench backlog deal", client_name="Acme Ltd", owner="ann", by=by)
    for k in range(concessions):
        # The client's concessions only: the balance rule never raises a condition.
        deal.record_concession(side=Side.CLIENT, what=f"gift {k}", policy=policy, by=by)
    return list(deal.collect_events())


def deal_events(template: list[Any], total: int, deal_id: UUID | None = None) -> list[Any]:
    """`total` events of one new deal (version 1..total), copied from the template."""
    deal_id = deal_id or uuid4()
    opened, concessions = template[0], template[1:]
    events = [dataclasses.replace(opened, originator_id=deal_id)]
    for version in range(2, total + 1):
        source = concessions[(version - 2) % len(concessions)]
        events.append(dataclasses.replace(source, originator_id=deal_id, originator_version=version))
    return events


def save_backlog(service: Any, template: list[Any], deals: int, events_per_deal: int) -> list[UUID]:
    """Store deals x events_per_deal events, one transaction per deal."""
    ids = []
    for _ in range(deals):
        events = deal_events(template, events_per_deal)
        service.save(*events)
        ids.append(events[0].originator_id)
    return ids
