"""The firm's private limits, kept from those who may not see them ("written in the sand").

A limit's number is in a term's `limit`, in a term_beyond_limit condition's evidence, and in
the words the service resolves such a condition with ("within the limit of 60"). Views for
callers whose role may not see limits (HTTP, SSE) and alerts to recipients who may not, both
leave it out with these functions: one definition for the deal service and the notifier.
"""

from __future__ import annotations

import re
from typing import Any, TypeVar

# How the service words a limit in a condition's resolution (domain/walk_away._term_within_limit).
_LIMIT_IN_WORDS = re.compile(r"(within the limit) of -?[0-9][0-9.]*(?:e[+-]?[0-9]+)?")
Shown = TypeVar("Shown", bound=dict[str, Any])


def without_limit(evidence: Any) -> Any:
    """A term's or a condition's evidence without its `limit`."""
    return {k: v for k, v in evidence.items() if k != "limit"} if isinstance(evidence, dict) else evidence


def limit_unsaid(text: Any) -> Any:
    """A resolution's words without the limit's number."""
    return _LIMIT_IN_WORDS.sub(r"\1", text) if isinstance(text, str) else text


def event_concealed(view: Shown) -> Shown:
    """An event as published (its JSON view) without a limit's number: in a condition's evidence
    (raised, waived) and in a resolution's words."""
    data = dict(view.get("data") or {})
    if "evidence" in data:
        data["evidence"] = without_limit(data["evidence"])
    if "resolution" in data:
        data["resolution"] = limit_unsaid(data["resolution"])
    return {**view, "data": data}  # type: ignore[return-value]
