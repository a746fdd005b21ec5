"""What auditors ask of the store: is the record intact, what was the deal then, give me everything.

Reads only: verifying a chain, exporting a deal's events with their hashes, and checking
the read model against the log.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from .application import DealService
from .integrity import Finding, StoredRecord, verify
from .read_model import summary_of
from .views import event_view


@dataclass(frozen=True)
class Verdict:
    originator_id: str
    events: int
    finding: Finding | None

    @property
    def intact(self) -> bool:
        return self.finding is None

    def as_dict(self) -> dict[str, Any]:
        problem = None
        if self.finding is not None:
            problem = {"version": self.finding.version, "problem": self.finding.problem, "detail": self.finding.detail}
        return {"deal_id": self.originator_id, "intact": self.intact, "events": self.events, "problem": problem}


class Audit:
    def __init__(self, deals: DealService) -> None:
        self.deals = deals
        self.recorder: Any = deals.recorder

    def verify(self, originator_id: str | UUID) -> Verdict:
        key = str(originator_id)
        stored = self.recorder.select_events(UUID(key))
        records = [StoredRecord(e.originator_version, e.topic, e.state) for e in stored]
        return Verdict(key, len(records), verify(key, records, self.recorder.select_links(key)))

    def verify_all(self, on_progress: Callable[[int, int], None] = lambda done, total: None) -> list[Verdict]:
        """Every stream in the store (deals and their logs of refused signings); only the broken ones returned."""
        streams = self.recorder.select_originator_ids()
        broken = []
        for done, originator_id in enumerate(streams, start=1):
            verdict = self.verify(originator_id)
            if not verdict.intact:
                broken.append(verdict)
            on_progress(done, len(streams))
        return broken

    def streams(self) -> int:
        return len(self.recorder.select_originator_ids())

    def export(self, deal_id: UUID) -> Iterator[dict[str, Any]]:
        """Every event with the exact stored bytes and its link: enough to recheck the chain independently."""
        links = {link.version: link for link in self.recorder.select_links(str(deal_id))}
        for stored in self.recorder.select_events(deal_id):
            link = links.get(stored.originator_version)
            yield {
                **event_view(self.deals.mapper.to_domain_event(stored)),
                "originator_id": str(deal_id),
                "topic": stored.topic,
                "stored_b64": base64.b64encode(stored.state).decode(),
                "previous_hash": link.previous_hash if link else None,
                "hash": link.hash if link else None,
            }

    def read_model_differences(self) -> list[str]:
        """Deals whose listing row is not what their events say (empty when the read model is true)."""
        differences = []
        rows = {s.deal_id: s for s in self._all_summaries()}
        deal_ids = {str(deal_id) for deal_id in self.deals.opened_deal_ids()}
        for deal_id in sorted(deal_ids | set(rows)):
            expected = summary_of(self.deals.get_deal(UUID(deal_id))) if deal_id in deal_ids else None
            if rows.get(deal_id) != expected:
                differences.append(deal_id)
        return differences

    def _all_summaries(self) -> list[Any]:
        summaries, after = [], None
        while True:
            page = self.recorder.select_summaries(stage=None, owner=None, after=after, limit=1000)
            summaries += page
            if len(page) < 1000:
                return summaries
            after = (page[-1].opened_at, page[-1].deal_id)
