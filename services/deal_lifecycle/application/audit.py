"""What auditors ask of the store: is the record intact, what was the deal then, give me everything.

Reads only: verifying the chains (each stream's and the store-wide one), each snapshot against
the events it stands for, exporting a deal's events with their hashes, and checking the read
model against the log.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from eventsourcing.application import project_aggregate
from eventsourcing.domain import OriginatorVersionError, Snapshot

from dealflow.deal_lifecycle.application.integrity import Finding, Head, StoredRecord, StoreFinding, verify, verify_store
from dealflow.deal_lifecycle.application.read_model import summary_of
from dealflow.deal_lifecycle.application.service import DealService, StoreDamaged
from dealflow.deal_lifecycle.application.views import attempt_number, event_view
from dealflow.deal_lifecycle.domain.attempts import SigningAttempts
from dealflow.deal_lifecycle.domain.deal import Deal


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


@dataclass(frozen=True)
class Sweep:
    """What `verify --all` checked: every stream, how many events in all, and the broken streams."""

    streams: int
    events: int
    broken: list[Verdict]


@dataclass(frozen=True)
class StoreVerdict:
    """The store-wide chain: its problems, its head, and the recomputed hash at each entry."""

    findings: list[StoreFinding]
    head: Head | None
    hashes: dict[int, str]

    @property
    def entries(self) -> int:
        return len(self.hashes)


class Audit:
    def __init__(self, deals: DealService) -> None:
        self.deals = deals
        self.recorder: Any = deals.recorder

    def verify(self, originator_id: str | UUID) -> Verdict:
        key = str(originator_id)
        stored = self.recorder.select_events(UUID(key))
        records = [StoredRecord(e.originator_version, e.topic, e.state) for e in stored]
        finding = verify(key, records, self.recorder.select_links(key))
        return Verdict(key, len(records), finding or self._forged_snapshot(UUID(key)))

    def _forged_snapshot(self, deal_id: UUID) -> Finding | None:
        """A snapshot whose state is not what its deal's events replay to (whether or not its entry was rewritten too)."""
        mapper = self.deals.mapper
        snapshots = {s.originator_version: s for s in self.deals.snapshots.recorder.select_stored(deal_id)}  # type: ignore[union-attr]
        if not snapshots:
            return None
        aggregate: Any = None
        # One replay, compared at each snapshot's version on the way (not one replay per snapshot).
        for event in self.deals.events.get(deal_id, lte=max(snapshots)):
            try:
                aggregate = project_aggregate(aggregate, [event])
            except OriginatorVersionError:
                return Finding(event.originator_version, "removed", f"the events before version {event.originator_version} do not replay")
            stored = snapshots.pop(aggregate.version, None)
            if stored is not None:
                # The snapshot restored (and upcast, if written by an older Deal) must be the deal its events replay to.
                taken = getattr(type(aggregate), "Snapshot", Snapshot).take(aggregate)
                restored = mapper.to_domain_event(stored).mutate(None)  # type: ignore[attr-defined]
                replayed = mapper.to_domain_event(mapper.to_stored_event(taken)).mutate(None)  # type: ignore[attr-defined]
                restored_state, replayed_state = _state(restored), _state(replayed)
                if restored_state.pop(Deal.ANCHORS_UNKNOWN, False):
                    # Written before the deal kept its stage anchors: all the rest must still agree.
                    for anchor in Deal.ANCHORS:
                        del restored_state[anchor], replayed_state[anchor]
                if restored_state != replayed_state:
                    return Finding(stored.originator_version, "snapshot forged", f"the snapshot at version {stored.originator_version} differs from its events")
        for version in sorted(snapshots):
            return Finding(version, "snapshot forged", f"the snapshot at version {version} has no events to stand for")
        return None

    def verify_store(self) -> StoreVerdict:
        """The store-wide chain recomputed, every entry checked against what the store holds now."""
        head, entries, stored = self.recorder.select_store_chain()
        findings, hashes = verify_store(entries, head, stored)
        return StoreVerdict(findings, head, hashes)

    def verify_all(self, on_progress: Callable[[int, int], None] = lambda done, total: None) -> list[Verdict]:
        """Every stream in the store (deals and their logs of refused signings); only the broken ones returned."""
        return self.sweep(on_progress).broken

    def sweep(self, on_progress: Callable[[int, int], None] = lambda done, total: None) -> Sweep:
        """Every stream checked, with how many streams and events that was: an empty check must show as one."""
        streams = self.recorder.select_originator_ids()
        broken, events = [], 0
        for done, originator_id in enumerate(streams, start=1):
            verdict = self.verify(originator_id)
            events += verdict.events
            if not verdict.intact:
                broken.append(verdict)
            on_progress(done, len(streams))
        return Sweep(len(streams), events, broken)

    def streams(self) -> int:
        return len(self.recorder.select_originator_ids())

    def export(self, deal_id: UUID) -> Iterator[dict[str, Any]]:
        """Every event with the exact stored bytes and its link: enough to recheck the chain independently.

        The deal's events first (`"log": "deal"`), then its log of refused signings (`"log": "refused_signings"`,
        each with its `attempt`): two streams, each with its own chain, told apart by `originator_id`."""
        yield from self._export_stream(deal_id, "deal")
        yield from self._export_stream(SigningAttempts.create_id(str(deal_id)), "refused_signings")

    def _export_stream(self, originator_id: UUID, log: str) -> Iterator[dict[str, Any]]:
        links = {link.version: link for link in self.recorder.select_links(str(originator_id))}
        for stored in self.recorder.select_events(originator_id):
            link = links.get(stored.originator_version)
            domain_event = self.deals.mapper.to_domain_event(stored)
            extra = {"attempt": attempt_number(domain_event)} if isinstance(domain_event, SigningAttempts.SigningRefused) else {}
            yield {
                **event_view(domain_event, limits=True),
                **extra,
                "log": log,
                "originator_id": str(originator_id),
                "topic": stored.topic,
                "stored_b64": base64.b64encode(stored.state).decode(),
                "previous_hash": link.previous_hash if link else None,
                "hash": link.hash if link else None,
            }

    def read_model_differences(self) -> list[str]:
        """Deals whose listing row is not what their events say (empty when the read model is true)."""
        return [deal_id for deal_id, _ in self.read_model_problems()]

    def read_model_problems(self) -> list[tuple[str, str]]:
        """Each deal whose listing row is not what its events say, and how (a deal that cannot be replayed too)."""
        problems = []
        rows = {s.deal_id: s for s in self._all_summaries()}
        deal_ids = {str(deal_id) for deal_id in self.deals.opened_deal_ids()}
        for deal_id in sorted(deal_ids | set(rows)):
            try:
                expected = summary_of(self.deals.get_deal(UUID(deal_id))) if deal_id in deal_ids else None
            except StoreDamaged as damaged:
                problems.append((deal_id, damaged.message))
                continue
            if rows.get(deal_id) != expected:
                problems.append((deal_id, "its listing row differs from its events"))
        return problems

    def _all_summaries(self) -> list[Any]:
        summaries, after = [], None
        while True:
            page = self.recorder.select_summaries(stage=None, owner=None, after=after, limit=1000)
            summaries += page
            if len(page) < 1000:
                return summaries
            after = (page[-1].opened_at, page[-1].deal_id)


def _state(aggregate: Any) -> dict[str, Any]:
    return {k: v for k, v in vars(aggregate).items() if k != "_pending_events"}
