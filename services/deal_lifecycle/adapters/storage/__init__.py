"""Where events live: SQLite by default, PostgreSQL when a URL is configured.

Both stores are eventsourcing's own recorders, extended so that the deals read model
and the idempotency receipts are written in the same transaction as the events.
"""

from collections.abc import Callable, Sequence

from eventsourcing.persistence import StoredEvent

from dealflow.deal_lifecycle.application.integrity import GENESIS, link_hash


def links_for(stored_events: Sequence[StoredEvent], previous: Callable[[str, int], str]) -> list[tuple[str, int, str, str]]:
    """The hash-chain rows for events about to be stored; `previous` finds a stream's last stored hash."""
    heads: dict[str, str] = {}
    rows = []
    for event in stored_events:
        originator_id, version = str(event.originator_id), event.originator_version
        if originator_id not in heads:
            heads[originator_id] = GENESIS if version == 1 else previous(originator_id, version - 1)
        current = link_hash(heads[originator_id], originator_id, version, event.topic, event.state)
        rows.append((originator_id, version, heads[originator_id], current))
        heads[originator_id] = current
    return rows
