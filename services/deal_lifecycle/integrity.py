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
