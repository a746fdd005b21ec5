"""How much one deal may hold: bounds a real deal never meets, that keep every event and every view of a deal bounded.

A deal negotiated for months has tens of promises and expectations and perhaps a hundred
concessions; the bounds sit an order of magnitude above that. Their point is not to limit
business but to give the size of a deal (and so of its view, its snapshot and a refused
signing's event) a known upper bound, whatever a careless or hostile client sends.
Text lengths are bounded by the command payloads (commands.py); these are counts, and the
scale of an expectation's priority, which the payloads take from here.
"""

from __future__ import annotations

from .errors import DealLimitReached

# Sales promises and expectations stay in the deal once withdrawn, so every one counts.
MAX_PROMISES = 200
MAX_EXPECTATIONS = 200
# One per concession recorded, and one each time a term is agreed away from the public position.
MAX_CONCESSIONS = 1_000
MAX_IMPASSES = 100
MAX_ESCALATIONS = 100
# Walk-away conditions, open and closed: one per rejected promise, refused non-negotiable, term
# past its limit... raised again after each resolution, so the bound is on all ever raised.
MAX_CONDITIONS = 1_000
# Everyone who attended the transition meeting: a meeting room, not a conference hall.
MAX_PARTICIPANTS = 50
# An escalation names the strategies tried before it: a few, in a few words each.
MAX_STRATEGIES = 20
MAX_STRATEGIES_CHARACTERS = 8_000
# A walk-away cites the conditions that caused it.
MAX_CITED_CONDITIONS = 50

# An expectation's priority, 1 the highest.
MIN_PRIORITY = 1
MAX_PRIORITY = 99
# An expectation is due within this many years: the value creation standard is judged in this
# relationship's lifetime, and every due moment stays a date the store and the schedule can hold.
MAX_YEARS_AHEAD = 50


def room_for(what: str, count: int, limit: int) -> None:
    """Refuse growing `what` to `count` items when a deal may hold at most `limit`."""
    if count > limit:
        raise DealLimitReached(what, limit)
