"""The targets of the full run: reported, never enforced."""

from __future__ import annotations

from typing import Any


def _get(data: dict[str, Any], *path: str) -> Any:
    for key in path:
        if not isinstance(data, dict) or key not in data:
            return None
        data = data[key]
    return data


def evaluate(results: dict[str, Any], *, quick: bool) -> list[dict[str, Any]]:
    s = results["scenarios"]
    targets: list[dict[str, Any]] = []

    def add(key: str, scenario: str, text: str, values: dict[str, Any], ok: Any, profiles: list[str]) -> None:
        known = [v for v in values.values() if v is not None]
        if quick:
            status = "not judged (quick run)"
        elif scenario not in s or not known:
            status = "not measured"
        else:
            status = "met" if all(ok(v) for v in known) else "missed"
        targets.append({"key": key, "scenario": scenario, "target": text, "values": values, "status": status, "profiles": profiles})

    ratios = _get(s, "write_path", "stores", "sqlite", "ratios") or {}
    add("b/a", "write_path", "DealService in-process / raw eventsourcing (b/a) >= 0.7 on SQLite",
        {f"{c} client(s)": _get(ratios, c, "b/a") for c in ("1", "64")}, lambda v: v >= 0.7, ["write_in_process"])
    add("c/a", "write_path", "dealflow over HTTP / raw eventsourcing (c/a) >= 0.5 on SQLite",
        {f"{c} client(s)": _get(ratios, c, "c/a") for c in ("1", "64")}, lambda v: v >= 0.5, ["write_in_process", "write_http"])
    e2a = _get(s, "event_to_alert", "stores", "sqlite") or {}
    e2a_values = {f"p99 ms at {e2a.get('offered_per_s', 300):g}/s": _get(e2a, "response_to_alert", "p99_ms")}
    if e2a.get("lowered"):
        e2a_values[f"p99 ms at {e2a['lowered']['offered_per_s']:g}/s (lowered: {e2a.get('offered_per_s', 300):g}/s was not kept up)"] = _get(e2a, "lowered", "response_to_alert", "p99_ms")
    add("e2a", "event_to_alert", f"event-to-alert p99 <= 25 ms at {e2a.get('offered_per_s', 300):g} commands/s on SQLite",
        e2a_values, lambda v: v <= 25, ["event_to_alert"])
    add("relay", "relay", "relay throughput >= 0.5 x raw async JetStream publish",
        {kind: _get(r, "relay/raw_async") for kind, r in (_get(s, "relay", "stores") or {}).items()}, lambda v: v >= 0.5, ["relay"])
    add("replay", "replay", "a 10,000-event deal loads in <= 10 ms with snapshots (p50)",
        {kind: _get(r, "with_snapshots", "latest", "p50_ms") for kind, r in (_get(s, "replay", "stores") or {}).items()}, lambda v: v <= 10, ["replay"])
    listing: dict[str, Any] = {}
    for kind, r in (_get(s, "read_model", "stores") or {}).items():
        largest = max(r["sizes"], key=int)
        if int(largest) >= 1_000_000 or quick:
            listing[f"{kind} first page p50 ms"] = _get(r, "sizes", largest, "service_first_page", "p50_ms")
            listing[f"{kind} deep page p50 ms"] = _get(r, "sizes", largest, "service_deep_page", "p50_ms")
    add("listing", "read_model", "a stage listing page (limit 50) in <= 20 ms at 1M deals", listing, lambda v: v <= 20, ["read_model"])
    return targets
