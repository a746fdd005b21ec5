"""Header values that copy body fields are bounded, so an old event with a huge value cannot stall the relay."""

from __future__ import annotations

import hashlib
import json

from dealflow.deal_lifecycle.adapters.bus import ACTOR, CORRELATION_ID, HEADER_COPY_MAX, envelope
from dealflow.deal_lifecycle.domain.deal import Deal
from dealflow.deal_lifecycle.domain.model import Attribution


def opened(actor: str, correlation_id: str) -> object:
    deal = Deal.open(title="Acme payroll", client_name="Acme Ltd", owner="ann", by=Attribution(actor, correlation_id))
    [event] = deal.collect_events()
    return event


def test_long_header_copies_are_cut_with_a_digest_of_the_whole_value_and_the_body_keeps_it() -> None:
    # Stored before the edge bounded these values: 70 KB of headers would be over JetStream's 64 KB.
    correlation_id, actor = "h" * 70_000, "é" * 40_000
    message = envelope(opened(actor, correlation_id), 7)
    for header, full in ((CORRELATION_ID, correlation_id), (ACTOR, actor)):
        value = message.headers[header]
        assert len(value) == HEADER_COPY_MAX
        assert value.endswith("…sha256:" + hashlib.sha256(full.encode()).hexdigest())
        assert full.startswith(value.split("…sha256:")[0])
    body = json.loads(message.body)
    assert (body["correlation_id"], body["actor"]) == (correlation_id, actor)
    assert sum(len(k) + len(v.encode()) for k, v in message.headers.items()) < 4096


def test_values_within_the_bound_are_copied_as_they_are() -> None:
    message = envelope(opened("a" * HEADER_COPY_MAX, "crm-7"), 1)
    assert message.headers[ACTOR] == "a" * HEADER_COPY_MAX and message.headers[CORRELATION_ID] == "crm-7"
