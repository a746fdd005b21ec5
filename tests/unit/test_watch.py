"""How `dealflow watch` reads --since and prints an event."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from nats.js.api import DeliverPolicy

from dealflow.deal_lifecycle.entrypoints.cli.watch import line, start_from

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("since", "expected"),
    [
        (None, (DeliverPolicy.NEW, None)),
        ("all", (DeliverPolicy.ALL, None)),
        ("15m", (DeliverPolicy.BY_START_TIME, NOW - timedelta(minutes=15))),
        ("2h", (DeliverPolicy.BY_START_TIME, NOW - timedelta(hours=2))),
        ("1d", (DeliverPolicy.BY_START_TIME, NOW - timedelta(days=1))),
        ("2026-11-20T08:00:00+00:00", (DeliverPolicy.BY_START_TIME, datetime(2026, 11, 20, 8, tzinfo=UTC))),
        ("2026-11-20T08:00:00", (DeliverPolicy.BY_START_TIME, datetime(2026, 11, 20, 8, tzinfo=UTC))),
    ],
)
def test_since(since: str | None, expected: tuple[DeliverPolicy, datetime | None]) -> None:
    assert start_from(since, NOW) == expected


def test_a_bad_since_is_refused_with_the_accepted_forms() -> None:
    with pytest.raises(ValueError, match="duration such as 15m"):
        start_from("yesterday", NOW)


def test_a_line_says_when_which_deal_what_and_who() -> None:
    event = {
        "deal_id": "5f0c2b1e-0000-0000-0000-000000000000",
        "version": 3,
        "type": "WalkAwayConditionRaised",
        "timestamp": "2026-11-23T09:00:01.123456+00:00",
        "actor": "dealflow",
        "correlation_id": "c",
        "data": {"kind": "term_beyond_limit", "subject": "payment_terms_days", "evidence": {}},
    }
    assert line(event) == (
        "2026-11-23T09:00:01Z  5f0c2b1e  v3    WalkAwayConditionRaised      by dealflow"
        "  kind=term_beyond_limit, subject=payment_terms_days"
    )


def test_a_line_shows_values_as_json_and_whole_numbers_without_a_fraction() -> None:
    event = {
        "deal_id": "5f0c2b1e-0000-0000-0000-000000000000",
        "version": 4,
        "type": "TermAgreed",
        "timestamp": "2026-11-23T09:00:01.123456+00:00",
        "actor": "ann@firm",
        "correlation_id": "c",
        "data": {"term": {"term": "payment_terms_days", "value": 60.0}, "waived": False, "days": 60.0, "rate": 2.5, "note": "as agreed"},
    }
    assert line(event).endswith(
        '  term={"term": "payment_terms_days", "value": 60}, waived=false, days=60, rate=2.5, note=as agreed'
    )
