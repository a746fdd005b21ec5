"""Tamper evidence: every stored event is chained by a hash to the one before it in its stream.

    hash(n) = SHA-256(hash(n-1) | originator id | version | topic | stored event bytes)

The stored bytes hold the event's content, timestamp and actor; hash(0) is 64 zeros. The
chain is written by the recorder in the same transaction as the event, and `verify`
recomputes it from what is stored: an edited event breaks its own link, a removed one
leaves a gap, and swapped events are found at the version their content belongs to.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

GENESIS = "0" * 64


@dataclass(frozen=True)
class Link:
    version: int
    previous_hash: str
    hash: str


@dataclass(frozen=True)
class StoredRecord:
    """One stored event as the chain sees it."""

    version: int
    topic: str
    state: bytes


@dataclass(frozen=True)
class Finding:
    version: int
    problem: str  # altered | removed | reordered | unchained
    detail: str


def link_hash(previous_hash: str, originator_id: str, version: int, topic: str, state: bytes) -> str:
    digest = hashlib.sha256()
    for part in (previous_hash, originator_id, str(version), topic):
        digest.update(part.encode())
        digest.update(b"\x1f")  # unit separator: no two different inputs hash alike
    digest.update(state)
    return digest.hexdigest()


def chain(originator_id: str, records: Iterable[StoredRecord], previous_hash: str = GENESIS) -> list[Link]:
    links = []
    for record in records:
        current = link_hash(previous_hash, originator_id, record.version, record.topic, record.state)
        links.append(Link(record.version, previous_hash, current))
        previous_hash = current
    return links


def verify(originator_id: str, records: Iterable[StoredRecord], links: Iterable[Link]) -> Finding | None:
    """The first event that was altered, removed or reordered; None when the chain holds."""
    stored = {r.version: r for r in records}
    chained = {link.version: link for link in links}
    previous = GENESIS
    for version in range(1, max([0, *stored, *chained]) + 1):
        record, link = stored.get(version), chained.get(version)
        if record is None:
            return Finding(version, "removed", f"version {version} is no longer stored")
        if link is None:
            return Finding(version, "unchained", f"version {version} has no recorded hash")
        if link.previous_hash != previous:
            return Finding(version, "altered", f"the hash recorded before version {version} was changed")
        if link_hash(previous, originator_id, version, record.topic, record.state) != link.hash:
            moved = _belongs_at(originator_id, record, chained, version)
            if moved is not None:
                return Finding(version, "reordered", f"the event stored at version {version} was recorded as version {moved}")
            return Finding(version, "altered", f"version {version} differs from what was recorded")
        previous = link.hash
    return None


def _belongs_at(originator_id: str, record: StoredRecord, chained: Mapping[int, Link], here: int) -> int | None:
    for version, link in chained.items():
        if version != here and link_hash(link.previous_hash, originator_id, version, record.topic, record.state) == link.hash:
            return version
    return None


def verify_export(lines: Iterable[Mapping[str, Any]]) -> Finding | None:
    """An independent check of an export: recompute every link from the exported bytes alone."""
    entries = list(lines)
    if not entries:
        return None
    originator = entries[0]["originator_id"]
    records = [StoredRecord(e["version"], e["topic"], base64.b64decode(e["stored_b64"])) for e in entries]
    links = [Link(e["version"], e["previous_hash"], e["hash"]) for e in entries]
    return verify(originator, records, links)


# -- the store-wide chain ------------------------------------------------------------------
#
# Beside each stream's chain, one chain runs through the whole store in the order things were
# written: every event (by its stream link, which covers its bytes), every idempotency receipt
# and every snapshot. Its entries are numbered 1, 2, 3...; a row holds the latest number and
# hash (the head). A deleted deal, a truncated tail, an edited receipt or snapshot breaks it.
#
#     entry(n) = SHA-256(entry(n-1) | n | kind | key | content)

EVENT, RECEIPT, SNAPSHOT = "event", "receipt", "snapshot"


@dataclass(frozen=True)
class Entry:
    seq: int
    kind: str  # event | receipt | snapshot
    key: str  # originator id:version, or the idempotency key
    content: str  # an event's stream link hash, or the SHA-256 of the receipt's fields or the snapshot's bytes
    previous_hash: str
    hash: str


@dataclass(frozen=True)
class Head:
    seq: int
    hash: str
    store_id: str
    backfilled_entries: int  # entries chained once on upgrade, as found then (0 on a store chained from its start)
    backfilled_at: str | None


@dataclass(frozen=True)
class StoreFinding:
    seq: int  # the entry concerned (0: the store as a whole)
    problem: str
    detail: str


def entry_hash(previous_hash: str, seq: int, kind: str, key: str, content: str) -> str:
    digest = hashlib.sha256()
    for part in (previous_hash, str(seq), kind, key, content):
        digest.update(part.encode())
        digest.update(b"\x1f")
    return digest.hexdigest()


def stream_key(originator_id: str, version: int) -> str:
    return f"{originator_id}:{version}"


def receipt_content(idempotency_key: str, fingerprint: str, deal_id: str, version: int, created_id: str | None) -> str:
    fields = (idempotency_key, fingerprint, deal_id, str(version), "" if created_id is None else created_id)
    return hashlib.sha256("\x1f".join(fields).encode()).hexdigest()


def snapshot_content(topic: str, state: bytes) -> str:
    return hashlib.sha256(topic.encode() + b"\x1f" + state).hexdigest()


def extend(head_seq: int, head_hash: str, items: Iterable[tuple[str, str, str]]) -> list[Entry]:
    """The entries that follow the head for (kind, key, content) items, in order."""
    entries = []
    for kind, key, content in items:
        head_seq += 1
        current = entry_hash(head_hash, head_seq, kind, key, content)
        entries.append(Entry(head_seq, kind, key, content, head_hash, current))
        head_hash = current
    return entries


@dataclass(frozen=True)
class Stored:
    """What the store holds now, for each kind, by key: what its entry's content must be."""

    events: Mapping[str, str]  # stream key -> the stream link hash recorded for it
    receipts: Mapping[str, str]  # idempotency key -> receipt_content of the stored row
    snapshots: Mapping[str, str]  # stream key -> snapshot_content of the stored row


def verify_store(entries: Iterable[Entry], head: Head | None, stored: Stored) -> tuple[list[StoreFinding], dict[int, str]]:
    """Problems with the store-wide chain, and the recomputed hash at each entry (for checkpoints)."""
    findings: list[StoreFinding] = []
    recomputed: dict[int, str] = {}
    if head is None:
        return [StoreFinding(0, "unchained", "the store has no store-wide chain")], recomputed
    previous, expected_seq = GENESIS, 1
    seen: dict[str, set[str]] = {EVENT: set(), RECEIPT: set(), SNAPSHOT: set()}
    for entry in entries:
        if entry.seq != expected_seq:
            findings.append(StoreFinding(expected_seq, "removed", f"entries {expected_seq} to {entry.seq - 1} of the store-wide chain are gone"))
        current = entry_hash(previous, entry.seq, entry.kind, entry.key, entry.content)
        if entry.previous_hash != previous or current != entry.hash:
            findings.append(StoreFinding(entry.seq, "altered", f"entry {entry.seq} ({entry.kind} {entry.key}) differs from what was chained"))
        recomputed[entry.seq] = current
        previous, expected_seq = current, entry.seq + 1
        findings += _check_entry(entry, stored)
        seen.setdefault(entry.kind, set()).add(entry.key)
    last = expected_seq - 1
    if (last, previous) != (head.seq, head.hash):
        findings.append(StoreFinding(last, "truncated", f"the chain ends at entry {last} but its head names entry {head.seq}"))
    for kind, by_key in ((EVENT, stored.events), (RECEIPT, stored.receipts), (SNAPSHOT, stored.snapshots)):
        for key in sorted(set(by_key) - seen[kind]):
            findings.append(StoreFinding(0, "unchained", f"{kind} {key} is stored but not in the store-wide chain"))
    return findings, recomputed


def _check_entry(entry: Entry, stored: Stored) -> list[StoreFinding]:
    by_key = {EVENT: stored.events, RECEIPT: stored.receipts, SNAPSHOT: stored.snapshots}.get(entry.kind, {})
    found = by_key.get(entry.key)
    if found is None:
        return [StoreFinding(entry.seq, "removed", f"{entry.kind} {entry.key} was chained at entry {entry.seq} and is no longer stored")]
    if found != entry.content:
        return [StoreFinding(entry.seq, "altered", f"{entry.kind} {entry.key} differs from what was chained at entry {entry.seq}")]
    return []
