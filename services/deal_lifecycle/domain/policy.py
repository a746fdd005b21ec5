"""Right Clients / Right Terms: the firm's negotiating parameters, and the rules that judge by them.

A Policy is plain data, loaded and validated at start-up (see `policy_file.py`); its
`version` is the hash of the file it came from, recorded on every decision it made.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from enum import StrEnum
from typing import Any

from .errors import InvalidCommand


class Worse(StrEnum):
    """Which direction of a term's value is worse for the firm."""

    HIGHER = "higher"
    LOWER = "lower"


@dataclass(frozen=True)
class Term:
    name: str
    public: float
    limit: float
    worse: Worse
    description: str = ""
    unit: str = ""
    # The values the term can take at all (e.g. no negative payment days): outside them a
    # proposal is a mistake, not a negotiating position. None: unbounded on that side.
    min: float | None = None
    max: float | None = None

    def check_range(self, value: float) -> None:
        """Refuse a value the term cannot take (before anything is judged or recorded)."""
        low = -float("inf") if self.min is None else self.min
        high = float("inf") if self.max is None else self.max
        if not low <= value <= high:
            raise InvalidCommand("value", f"{self.name} must be {self._range()}")

    def _range(self) -> str:
        unit = f" {self.unit}" if self.unit and self.unit != "%" else self.unit
        if self.min is not None and self.max is not None:
            return f"between {self.min:g} and {self.max:g}{unit}"
        if self.min is not None:
            return f"at least {self.min:g}{unit}"
        return f"at most {self.max:g}{unit}"

    def worse_than(self, value: float, reference: float) -> bool:
        return value > reference if self.worse is Worse.HIGHER else value < reference

    def beyond_limit(self, value: float) -> bool:
        """Past the private limit: a walk-away condition."""
        return self.worse_than(value, self.limit)

    def concedes(self, value: float) -> bool:
        """Between the public position and the limit (or past it): the firm gave something."""
        return self.worse_than(value, self.public)

    def wins(self, value: float) -> bool:
        """Better for the firm than its own public position: the client gave something."""
        return self.worse_than(self.public, value)


@dataclass(frozen=True)
class RightClient:
    """Criteria that disqualify a prospect."""

    min_annual_value: float | None = None
    excluded_industries: frozenset[str] = frozenset()

    def failures(self, *, annual_value: float | None, industry: str | None) -> dict[str, dict[str, Any]]:
        """The criteria these facts fail, each with its evidence; a fact not given is not judged."""
        failed: dict[str, dict[str, Any]] = {}
        if annual_value is not None and self.min_annual_value is not None and annual_value < self.min_annual_value:
            failed["min_annual_value"] = {"required": self.min_annual_value, "actual": annual_value}
        if industry is not None and industry.casefold() in self.excluded_industries:
            failed["excluded_industries"] = {"industry": industry}
        return failed

    def judged(self, *, annual_value: float | None, industry: str | None) -> set[str]:
        """The criteria these facts speak to (pass or fail)."""
        criteria = set()
        if annual_value is not None and self.min_annual_value is not None:
            criteria.add("min_annual_value")
        if industry is not None and self.excluded_industries:
            criteria.add("excluded_industries")
        return criteria


@dataclass(frozen=True)
class ConcessionBalance:
    """'Let them win some, but you must win something.'"""

    # The firm may give at most this many concessions more than it has received.
    max_imbalance: int = 2
    # Once the firm has given this many, it must have received at least one (0 turns the rule off).
    must_win_something_after: int = 3

    def verdict(self, given: int, received: int) -> str | None:
        """Why the balance is a walk-away condition, or None when it is not."""
        if given - received > self.max_imbalance:
            return f"the firm gave {given} concessions and received {received}: more than {self.max_imbalance} beyond"
        if self.must_win_something_after and given >= self.must_win_something_after and received == 0:
            return f"the firm gave {given} concessions and has won nothing"
        return None


@dataclass(frozen=True)
class Deadlines:
    """'Timing is everything': how long each step may take before the deal is drifting. None: no such deadline."""

    # From the letter of intent to the transition meeting.
    transition_meeting_within: timedelta | None = None
    # From the (first) transition meeting to signing.
    contract_within: timedelta | None = None
    # No fact recorded on an open deal for this long.
    stalled_after: timedelta | None = None
    # How long before an agreed expectation falls due its owner side is reminded (after signing).
    expectation_reminder: timedelta | None = None


@dataclass(frozen=True)
class Policy:
    version: str
    terms: dict[str, Term]
    non_negotiables: dict[str, str]
    nice_to_haves: dict[str, str] = field(default_factory=dict)
    right_client: RightClient = field(default_factory=RightClient)
    concessions: ConcessionBalance = field(default_factory=ConcessionBalance)
    label: str = ""
    deadlines: Deadlines = field(default_factory=Deadlines)

    def term(self, name: str) -> Term:
        try:
            return self.terms[name]
        except KeyError:
            known = ", ".join(sorted(self.terms))
            raise InvalidCommand("term", f"{name!r} is not a term of the policy (known: {known})") from None

    def non_negotiable(self, name: str) -> str:
        """Its description; an unknown name is refused."""
        try:
            return self.non_negotiables[name]
        except KeyError:
            known = ", ".join(sorted(self.non_negotiables))
            raise InvalidCommand("name", f"{name!r} is not a non-negotiable of the policy (known: {known})") from None
