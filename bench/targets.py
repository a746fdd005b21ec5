"""The targets of the full run: reported, never enforced.

Each target is a ratio or a figure against a baseline measured in the same run. A target's values
are judged by one test, or by a test per value; a value without a test is reported only (e.g. the
highest rate at which a latency holds), and a target with no judged value has the status "reported".
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

Test = Callable[[Any], bool]

E2A_RATE = 180  # commands/s (issue 15)
E2A_P99_MS = 25.0
STEP = 0.95  # "throughput never falls": each step of connections keeps at least 95 % of the one before
SNAPSHOT_BYTES = 10_000  # "under 10 KB"


def _get(data: dict[str, Any], *path: str) -> Any:
    for key in path:
        if not isinstance(data, dict) or key not in data:
            return None
        data = data[key]
    return data


def evaluate(results: dict[str, Any], *, quick: bool) -> list[dict[str, Any]]:
    s = results["scenarios"]
    targets: list[dict[str, Any]] = []

    def add(key: str, scenario: str, text: str, values: dict[str, Any], ok: Test | dict[str, Test], profiles: list[str]) -> None:
        tests = ok if isinstance(ok, dict) else dict.fromkeys(values, ok)
        judged = [(tests[name], v) for name, v in values.items() if v is not None and name in tests]
        if scenario not in s or _get(s, scenario, "skipped") or not any(v is not None for v in values.values()):
            status = "not measured"
        elif quick:
            status = "not judged (quick run)"
        elif not judged:
            status = "reported"
        else:
            status = "met" if all(test(v) for test, v in judged) else "missed"
        targets.append({"key": key, "scenario": scenario, "target": text, "values": values, "status": status, "profiles": profiles})

    ratios = _get(s, "write_path", "stores", "sqlite", "ratios") or {}
    add("b/a", "write_path", "DealService in-process / raw eventsourcing (b/a) on SQLite: >= 0.9 at one client (issue 15), >= 0.7 at 64",
        {"1 client": _get(ratios, "1", "b/a"), "64 clients": _get(ratios, "64", "b/a")},
        {"1 client": lambda v: v >= 0.9, "64 clients": lambda v: v >= 0.7}, ["write_in_process"])
    add("c/a", "write_path", "dealflow over HTTP / raw eventsourcing (c/a) >= 0.5 on SQLite (httpx load)",
        {f"{c} client(s)": _get(ratios, c, "c/a") for c in ("1", "64")}, lambda v: v >= 0.5, ["write_in_process", "write_http"])

    wrk = _get(s, "wrk_http", "ratios") or {}
    add("wrk-scaling", "wrk_http",
        f"HTTP throughput never falls as connections rise 1 → 64 (wrk, SQLite, 1 worker): each step >= {STEP:g} x the one before",
        dict(_get(wrk, "1", "step") or {"4/1": None}), lambda v: v >= STEP, ["wrk_http"])
    best: dict[str, Any] = {}
    for connections in ("16", "64"):
        by_workers = {w: _get(r, "c/d", connections) for w, r in wrk.items() if _get(r, "c/d", connections) is not None}
        if by_workers:
            workers = max(by_workers, key=lambda w: by_workers[w])
            best[f"{connections} connections ({workers} worker{'s' if workers != '1' else ''})"] = by_workers[workers]
        else:
            best[f"{connections} connections"] = None
    add("wrk-c/d", "wrk_http",
        "HTTP durable commands / trivial Litestar POST (c/d), both under wrk, >= 0.5 at 16 and 64 connections (SQLite; the better of 1 and 2 workers)",
        best, lambda v: v >= 0.5, ["wrk_http"])

    group = _get(s, "group_commit", "stores", "sqlite", "ratios") or {}
    add("group-commit", "group_commit",
        "With group commit (batch up to 64, the default), 64 clients in-process on SQLite: >= 3 x the per-command rate "
        "without it (as before, same run), and >= 1.0 x the raw library's one-save-per-call floor (a)",
        {"÷ without group commit": group.get("default(64)/off"), "÷ raw floor a": group.get("default(64)/a")},
        {"÷ without group commit": lambda v: v >= 3, "÷ raw floor a": lambda v: v >= 1.0}, ["group_commit"])

    e2a = _get(s, "event_to_alert", "stores", "sqlite") or {}
    rate = e2a.get("offered_per_s", E2A_RATE)
    apart = e2a.get("relay_apart") or {}
    e2a_values = {f"p99 ms at {rate:g}/s": _get(e2a, "response_to_alert", "p99_ms")}
    if apart:
        e2a_values[f"p99 ms at {rate:g}/s, relay apart (reported)"] = _get(apart, "response_to_alert", "p99_ms")
    if "ramp" in e2a:
        e2a_values[f"highest offered rate with p99 < {E2A_P99_MS:g} ms (reported)"] = e2a.get("highest_rate_within_limit") or "none of the ramp"
    add("e2a", "event_to_alert", f"command to alert p99 <= {E2A_P99_MS:g} ms at {rate:g} commands/s on SQLite (relay in serve, as deployed)",
        e2a_values, {f"p99 ms at {rate:g}/s": lambda v: v <= E2A_P99_MS}, ["event_to_alert"])

    cost: dict[str, Any] = {}
    for label, run in [(f"{rate:g}/s", e2a), (f"{rate:g}/s relay apart", apart)] + [(f"ramp {x['offered_per_s']:g}/s", x) for x in e2a.get("ramp", [])]:
        if run.get("cpu_ms_per_command"):
            cost[label] = cpu_text(run["cpu_ms_per_command"])
    add("cpu", "event_to_alert", "CPU ms per command of serve, notifier and nats-server at the measured rates (SQLite; reported)",
        cost or {"–": None}, {}, [])

    replay = _get(s, "replay", "stores") or {}
    replay_values: dict[str, Any] = {}
    tests: dict[str, Test] = {}
    for kind, r in replay.items():
        replay_values[f"{kind} p50 ms"] = _get(r, "with_snapshots", "latest", "p50_ms")
        replay_values[f"{kind} snapshot bytes"] = r.get("snapshot_bytes")
        tests[f"{kind} p50 ms"] = lambda v: v <= 5
        tests[f"{kind} snapshot bytes"] = lambda v: v < SNAPSHOT_BYTES
    add("replay", "replay", f"a 10,000-event deal loads from its snapshot in <= 5 ms (p50), and the snapshot is under {SNAPSHOT_BYTES:,} bytes",
        replay_values, tests, ["replay"])
    add("relay", "relay", "relay throughput >= 0.5 x raw async JetStream publish",
        {kind: _get(r, "relay/raw_async") for kind, r in (_get(s, "relay", "stores") or {}).items()}, lambda v: v >= 0.5, ["relay"])
    listing: dict[str, Any] = {}
    for kind, r in (_get(s, "read_model", "stores") or {}).items():
        largest = max(r["sizes"], key=int)
        if int(largest) >= 1_000_000 or quick:
            listing[f"{kind} first page p50 ms"] = _get(r, "sizes", largest, "service_first_page", "p50_ms")
            listing[f"{kind} deep page p50 ms"] = _get(r, "sizes", largest, "service_deep_page", "p50_ms")
    add("listing", "read_model", "a stage listing page (limit 50) in <= 20 ms at 1M deals", listing, lambda v: v <= 20, ["read_model"])
    return targets


def cpu_text(per_command: dict[str, Any]) -> str:
    """`serve 1.23 · notifier 0.80 · nats-server 0.31` (and the relay process when apart)."""
    names = {"serve": "serve", "relay": "relay", "notifier": "notifier", "nats_server": "nats-server"}
    return " · ".join(f"{label} {per_command[key]:.2f}" for key, label in names.items() if per_command.get(key) is not None)
