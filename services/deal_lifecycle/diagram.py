"""The lifecycle diagram, generated from the state machine itself so it cannot drift."""

from __future__ import annotations

from .domain.lifecycle import DealLifecycle


def mermaid() -> str:
    """Mermaid stateDiagram of the lifecycle (stage-changing transitions only)."""
    text = format(DealLifecycle(), "mermaid")
    # Drop the styling of the machine's current (initial) stage: the diagram shows the lifecycle, not a deal.
    lines = [line for line in text.splitlines() if "active" not in line]
    return "\n".join(lines).strip() + "\n"
