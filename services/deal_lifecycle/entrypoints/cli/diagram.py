"""The lifecycle diagram, generated from the state machine itself so it cannot drift: Mermaid and SVG."""

from __future__ import annotations

from xml.sax.saxutils import escape

from dealflow.deal_lifecycle.domain.lifecycle import CLOSED, RECORDED_BY_THE_SERVICE, TRANSITIONS, DealLifecycle

BOX_W, BOX_H, GAP_X, GAP_Y, MARGIN = 170, 48, 160, 90, 30


def mermaid() -> str:
    """Mermaid stateDiagram of the lifecycle (stage-changing transitions), with a note on what a closed
    stage that does not end the deal still takes (after signing: delivery)."""
    text = format(DealLifecycle(), "mermaid")
    # Drop the styling of the machine's current (initial) stage: the diagram shows the lifecycle, not a deal.
    lines = [line for line in text.splitlines() if "active" not in line]
    for stage in sorted(CLOSED):
        commands = sorted(command for (at, command) in TRANSITIONS if at == stage)
        if not commands:
            continue
        sent = [c.replace("_", " ") for c in commands if c not in RECORDED_BY_THE_SERVICE]
        timed = [c.replace("_", " ").removeprefix("record ") for c in commands if c in RECORDED_BY_THE_SERVICE]
        lines += [f"    note right of {stage}", f"        Then: {', '.join(sent)}"]
        if timed:
            lines.append(f"        As time passes, the service records: {', '.join(timed)}")
        lines.append("    end note")
    return "\n".join(lines).strip() + "\n"


def stage_transitions() -> list[tuple[str, str, str]]:
    """(from, to, command) for every transition that changes the stage."""
    found = []
    for state in DealLifecycle.states_map.values():
        for transition in state.transitions:
            if not transition.internal and transition.target is not None and transition.target.id != state.id:
                found.append((state.id, transition.target.id, str(next(iter(transition.events)))))
    return found


def svg() -> str:
    """An SVG picture: stages in columns by their distance from the start, transitions as labelled arrows."""
    transitions = stage_transitions()
    initial = next(s.id for s in DealLifecycle.states_map.values() if s.initial)
    depth = {initial: 0}
    for _ in DealLifecycle.states_map:  # longest path from the start: the lifecycle has no cycles
        for source, target, _command in transitions:
            if source in depth:
                depth[target] = max(depth.get(target, 0), depth[source] + 1)
    columns: dict[int, list[str]] = {}
    for state in DealLifecycle.states_map:
        columns.setdefault(depth.get(state, 0), []).append(state)
    position = {
        state: (MARGIN + column * (BOX_W + GAP_X), MARGIN + row * (BOX_H + GAP_Y))
        for column, states in columns.items()
        for row, state in enumerate(states)
    }
    width = MARGIN * 2 + len(columns) * (BOX_W + GAP_X) - GAP_X
    height = MARGIN * 2 + max(len(s) for s in columns.values()) * (BOX_H + GAP_Y) - GAP_Y
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" font-size="12">',
        '<defs><marker id="arrow" markerWidth="10" markerHeight="8" refX="9" refY="4" orient="auto">'
        '<path d="M0,0 L10,4 L0,8 z" fill="#333"/></marker></defs>',
        f'<rect width="{width}" height="{height}" fill="white"/>',
    ]
    for source, target, command in transitions:
        (x1, y1), (x2, y2) = position[source], position[target]
        if y1 == y2:  # along the row: side to side, label in the middle
            start, end, along = (x1 + BOX_W, y1 + BOX_H / 2), (x2, y2 + BOX_H / 2), 0.5
        else:  # to another row: bottom to top, label near the start so labels do not collide
            start, end, along = (x1 + BOX_W / 2, y1 + BOX_H), (x2 + BOX_W / 2, y2), 0.25
        parts.append(
            f'<line x1="{start[0]}" y1="{start[1]}" x2="{end[0]}" y2="{end[1]}" stroke="#333" marker-end="url(#arrow)"/>'
        )
        label_x = start[0] + (end[0] - start[0]) * along
        label_y = start[1] + (end[1] - start[1]) * along - 4
        parts.append(f'<text x="{label_x}" y="{label_y}" text-anchor="middle" fill="#555">{escape(command.replace("_", " "))}</text>')
    for state_id, state in DealLifecycle.states_map.items():
        x, y = position[state_id]
        stroke = 3 if state.final or state.initial else 1
        parts.append(f'<rect x="{x}" y="{y}" width="{BOX_W}" height="{BOX_H}" rx="10" fill="#eef4fb" stroke="#246" stroke-width="{stroke}"/>')
        parts.append(f'<text x="{x + BOX_W / 2}" y="{y + BOX_H / 2 + 4}" text-anchor="middle">{escape(state_id)}</text>')
    parts.append("</svg>")
    return "\n".join(parts) + "\n"
