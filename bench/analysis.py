"""The words around the numbers: why a target is missed and what would fix it, what we noticed,
and how the figures were taken. Each explanation quotes this run's own measurements and profiles."""

from __future__ import annotations

from typing import Any


def _g(data: Any, *path: Any) -> Any:
    for key in path:
        if not isinstance(data, dict) or key not in data:
            return None
        data = data[key]
    return data


def _share(profile: dict[str, Any] | None, needle: str, field: str = "project_cumulative") -> float | None:
    """Cumulative seconds of the first profiled function whose name contains `needle`."""
    for row in (profile or {}).get(field, []) + (profile or {}).get("top_own_time", []):
        if needle in row["function"]:
            return row["cumtime_s"]
    return None


def _lib(profile: dict[str, Any] | None, where: str) -> float | None:
    for row in (profile or {}).get("by_library", []):
        if row["where"] == where:
            return row["share"]
    return None


STORES = {"sqlite": "SQLite", "postgres": "PostgreSQL"}


def _n(x: Any) -> str:
    """A number for prose: 1864, 31.7, 9.05."""
    if x is None:
        return "–"
    if isinstance(x, (int, float)):
        x = float(x)
        return f"{x:,.0f}" if abs(x) >= 100 else f"{x:.1f}" if abs(x) >= 10 else f"{x:.2f}"
    return str(x)


def _pct(x: float | None) -> str:
    return "–" if x is None else f"{100 * x:.0f} %"


def explain(target: dict[str, Any], results: dict[str, Any]) -> str:
    status = target["status"]
    head = f"### {target['target']}: {status}\n\n"
    if status != "missed":
        return head + _met(target, results) + "\n"
    fn = {"b/a": _write_b, "c/a": _write_c, "e2a": _e2a, "relay": _relay, "replay": _replay, "listing": _listing}[target["key"]]
    return head + fn(results) + "\n"


def _met(target: dict[str, Any], results: dict[str, Any]) -> str:
    if target["status"].startswith("not"):
        return "Not judged in this run.\n"
    return "Met; no profile needed.\n"


def _ops(results: dict[str, Any], impl: str, clients: str, field: str = "ops_per_s") -> Any:
    return _g(results, "scenarios", "write_path", "stores", "sqlite", impl, clients, field)


def _top(profile: dict[str, Any] | None, count: int = 4) -> str:
    """The project's functions that took the most time (cumulative), as prose."""
    rows = [r for r in (profile or {}).get("project_cumulative", []) if "services/" in r["function"]]
    picked = [r for r in rows if not any(w in r["function"] for w in ("handle (", "_execute (", "_run_once (", "handler ("))][:count]
    return ", ".join(f"`{r['function'].split(' (')[0]}` {_n(r['cumtime_s'])} s" for r in picked) or "–"


def _libraries(profile: dict[str, Any] | None, count: int = 4) -> str:
    rows = (profile or {}).get("by_library", [])[:count]
    return ", ".join(f"{r['where']} {_pct(r['share'])}" for r in rows) or "–"


def _write_b(results: dict[str, Any]) -> str:
    prof = _g(results, "profiles", "write_in_process") or {}
    a, b = prof.get("raw_a") or {}, prof.get("service_b") or {}
    a1, b1 = _ops(results, "a_raw", "1", "p50_ms"), _ops(results, "b_service", "1", "p50_ms")
    return (
        f"One command costs the raw floor {_n(a1)} ms and DealService {_n(b1)} ms (p50, one client, unprofiled). "
        f"In the single-thread profile ({prof.get('ops', '–')} commands; {_n(a.get('per_op_ms', '–'))} vs {_n(b.get('per_op_ms', '–'))} ms per "
        f"command with the profiler on), the service's largest items are {_top(b)}; by where the time is spent: "
        f"{_libraries(b)}. A DealService command does what the floor does (load, one event, save) and more: it loads a "
        "deal whose state is larger (every concession is kept, and decoded on every load), checks the idempotency "
        "receipt, writes the read-model row and the hash chains (the stream's and the store-wide one) in the same "
        "transaction, and logs one JSON line. With 64 threads b/a is "
        f"{_n(_g(results, 'scenarios', 'write_path', 'stores', 'sqlite', 'ratios', '64', 'b/a'))}: SQLite takes one writer at a "
        "time and the GIL one thread at a time, so the threads convoy behind the one committing.\n\n"
        "**What would fix it:** commit concurrent commands together (one transaction and one fsync for every "
        "command that is ready); keep only what decisions need in the deal's state, so loading it stops growing with "
        "its history; and cache loaded aggregates (with fast-forward) so a hot deal is not re-read for every command.\n"
    )


def _write_c(results: dict[str, Any]) -> str:
    prof = _g(results, "profiles", "write_http") or {}
    d1 = _g(results, "scenarios", "write_path", "ceiling_d", "1", "p50_ms")
    c1, b1 = _ops(results, "c_http", "1", "p50_ms"), _ops(results, "b_service", "1", "p50_ms")
    cpu64 = _g(results, "scenarios", "write_path", "stores", "sqlite", "c_http", "64", "cpu_percent") or {}
    return (
        f"At one client a command over HTTP takes {_n(c1)} ms (p50) against {_n(b1)} ms in-process: the HTTP path adds "
        f"{_n((c1 or 0) - (b1 or 0))} ms, where the whole round trip to the trivial Litestar endpoint (the load generator's "
        f"own httpx cost included) is {_n(d1)} ms. In the serve process's profile the largest items are {_top(prof)}; by "
        f"where the time is spent: {_libraries(prof)}. Each command is authenticated (an ES256/EdDSA signature checked), "
        "its sync handler hops to an anyio worker thread and back, and the load generator, the server and (for "
        "PostgreSQL) the database take turns on two cores. At 64 clients the serve "
        f"process uses {_n(cpu64.get('server_process', '–'))} % of a core and the load generator {_n(cpu64.get('bench_process', '–'))} %: "
        "one Python process with one GIL is the limit, and it shares the two cores with the load generator. "
        "(On PostgreSQL each command is several round trips to the server, and over HTTP three processes, the load "
        "generator, serve and postgres, take turns on two cores.)\n\n"
        "**What would fix it:** group commit and lean deal state (above); more than one worker process "
        "(the store already refuses conflicting writes and the relay elects one leader); and a load generator that is "
        "not itself the limit (wrk), to see the server's own ceiling.\n"
    )


def _e2a(results: dict[str, Any]) -> str:
    e = _g(results, "scenarios", "event_to_alert", "stores", "sqlite") or {}
    low = e.get("lowered") or {}
    frozen = e.get("gc_frozen") or {}
    frozen_low = e.get("gc_frozen_lowered") or {}
    kept = low if low else e
    prof = _g(results, "profiles", "event_to_alert") or {}
    cpu = e.get("cpu_percent") or {}
    p99 = lambda x: _g(x, "response_to_alert", "p99_ms")  # noqa: E731
    text = ""
    if low:
        text += (
            f"**At {e.get('offered_per_s'):g} commands/s the pipeline does not keep up** ({'; '.join(e.get('not_kept_up_because') or [])}): "
            f"{_n(e.get('achieved_per_s'))} commands/s were accepted, alert latency had a median of {_n(e.get('alert_p50_first_fifth_ms'))} ms "
            f"in the first fifth of the run and {_n(e.get('alert_p50_last_fifth_ms'))} ms in the last, and the response→alert p99 is {_n(p99(e))} ms. "
            f"CPU (one core = 100 %): serve {_n(cpu.get('serve'))}, notifier {_n(cpu.get('notifier'))}, nats-server "
            f"{_n(cpu.get('nats_server'))}, load generator and receiver {_n(cpu.get('bench_process'))}. The deal service is one "
            "Python process (uvicorn, the handlers in worker threads and the relay on one GIL); the notifier handles one "
            "event at a time, each a chain of awaits and thread hops; and both share two cores with nats-server and the "
            "load generator, so the notifier's per-event latency, not its CPU, caps its rate. "
            f"At {_n(low.get('offered_per_s'))} commands/s the pipeline keeps up: p50 {_n(_g(low, 'response_to_alert', 'p50_ms'))} ms, "
            f"p99 {_n(p99(low))} ms, still over the target.\n\n"
        )
    text += (
        f"Split by the timestamps at {_n(kept.get('offered_per_s'))} commands/s: relay lag p50 {_n(_g(kept, 'relay_lag_event_to_jetstream', 'p50_ms'))} / "
        f"p99 {_n(_g(kept, 'relay_lag_event_to_jetstream', 'p99_ms'))} ms, notifier leg p50 {_n(_g(kept, 'notifier_leg_jetstream_to_webhook', 'p50_ms'))} / "
        f"p99 {_n(_g(kept, 'notifier_leg_jetstream_to_webhook', 'p99_ms'))} ms, HTTP response p99 {_n(_g(kept, 'http_response', 'p99_ms'))} ms; "
        f"the floor does the same hops with p99 {_n(_g(results, 'scenarios', 'event_to_alert', 'floor', 'ack_to_webhook', 'p99_ms'))} ms. "
        "The medians are a few milliseconds; the p99 is pauses and queueing: four busy processes take turns on two "
        "cores, the relay publishes from the event loop that also serves requests, and the notifier's batch of up to "
        "10 events is handled one after the other, so the last waits for the nine before it.\n\n"
        "**Garbage collection** is one source of the pauses. Both processes start through `dealflow.cli`, which imports "
        "both services, Litestar, uvicorn and rich: about 90,000 long-lived container objects that every full (generation 2) "
        "collection walks, 43 ms for one collection measured after start-up. Measured in isolation while building this "
        "benchmark, the notifier alone, fed from JetStream at 200 events/s, had a p99 of 36 ms as is, 2.4 ms with the "
        "collector disabled and 5 ms with `gc.freeze()` after start-up. In this run, with `gc.freeze()` after start-up in "
        "both processes (bench/variant.py; nothing else changed):\n\n"
    )
    rows = []
    for base, f in ((e, frozen), (low, frozen_low)):
        if f and base:
            rows.append(
                f"- at {_n(f.get('offered_per_s'))} commands/s: p50 {_n(_g(base, 'response_to_alert', 'p50_ms'))} → "
                f"{_n(_g(f, 'response_to_alert', 'p50_ms'))} ms, p99 {_n(p99(base))} → {_n(p99(f))} ms, "
                + ("kept up" if f.get("machine_kept_up") else "still not kept up")
                + (" (as is: kept up)" if base.get("machine_kept_up") else " (as is: not kept up)")
            )
    text += "\n".join(rows) + "\n\n"
    serve_prof = _g(prof, "profile", "serve") or {}
    commits = next((r["calls"] for r in serve_prof.get("top_own_time", []) if "'commit' of 'sqlite3.Connection'" in r["function"]), None)
    commands = prof.get("commands")
    if commits and commands:
        text += (
            f"In the serve process's profile the SQLite calls are the largest items ({_pct(_lib(serve_prof, 'builtin sqlite3.Cursor.execute'))} "
            f"in `execute`, {_pct(_lib(serve_prof, 'builtin sqlite3.Connection.commit'))} in `commit`; a C call that releases the GIL "
            f"also counts the wait to get it back): {commits:,} commits for {commands:,} commands. The extra "
            f"{max(0, commits - commands):,} are mostly the relay saving its position after every batch it publishes (under "
            "a steady trickle a batch is a few events), and they queue with the commands for SQLite's single writer.\n\n"
        )
    helps_low = bool(low and frozen_low and p99(low) and p99(frozen_low) and p99(frozen_low) < 0.7 * p99(low))
    text += (
        "Freezing pays most where the notifier is short of time (near saturation the collector's work is capacity "
        "lost); "
        + ("it also cut the tail at the lower rate. " if helps_low else
           "at the lower rate the tail is dominated by the processes' scheduling on two shared cores, and the two runs "
           "differ by no more than run-to-run noise. ")
        + 
        f"Profiles of both processes at {_n(prof.get('offered_per_s', '–'))} commands/s are below.\n\n"
        "**What would fix it:** in the notifier, deliver a batch's events concurrently across deals (in order within "
        "a deal) and make one store write per alert; `gc.freeze()` once start-up is done in `serve` and `notifier`, and a "
        "notifier that imports only what it uses; run the relay apart from the HTTP workers (`dealflow relay` exists) "
        "or give the service more than one worker process. "
        "A p99 of 25 ms at 300 commands/s also needs more than two cores for four busy processes.\n"
    )
    return text


def notifier_text(results: dict[str, Any]) -> str:
    r = _g(results, "scenarios", "notifier")
    if not r:
        return ""
    prof = _g(results, "profiles", "notifier") or {}
    lines = []
    for kind, x in r["stores"].items():
        lines.append(f"{STORES.get(kind, kind)}: one notifier {_n(_g(x, 'one', 'alerts_per_s'))} alerts/s, {_n(x.get('one/raw_fetch_post_ack'))} of the minimal "
                     f"consumer; two notifiers {_n(_g(x, 'two', 'alerts_per_s'))} alerts/s ({_n(x.get('two/one'))} x one)")
    http = _lib(prof, "httpx") or 0
    http += (_lib(prof, "httpcore") or 0) + (_lib(prof, "h11") or 0) + (_lib(prof, "anyio") or 0)
    return (
        "### The notifier (no target)\n\n"
        + "; ".join(lines) + ". "
        "The notifier handles the events of a fetched batch strictly one after another, and each alert is several "
        "round trips: `is_final`, the POST, an attempt row and an outcome row (three store calls, each a hop to a "
        "worker thread), then the ack. In its profile (below) the webhook client stack (httpx, httpcore, h11, anyio) is "
        f"{_pct(http)} of the busy time, the SQLite store calls {_pct(_lib(prof, 'builtin sqlite3.Cursor.execute'))}, JSON-schema "
        f"validation {_pct(_lib(prof, 'jsonschema'))}; it runs on asyncio's default event loop, not uvloop. Two notifier "
        "processes share the durable consumer correctly (no duplicates) but do not double the rate here: each spends "
        "much of its time waiting on those round trips, and the two processes, nats-server, the receiver (and "
        "PostgreSQL) share two cores; the ratio varied between about 0.9 and 1.4 across runs.\n\n"
        "**What would help:** deliver a batch's alerts concurrently (in order per deal), record the outcome in one "
        "write (the attempt row can go in the same transaction), uvloop, and validate with a compiled validator "
        "(e.g. fastjsonschema) or only at the edge.\n\n"
    )


def _relay(results: dict[str, Any]) -> str:
    prof = _g(results, "profiles", "relay", "profile") or {}
    return (
        "The relay reads each batch from the store in a worker thread, decodes every stored event into a domain "
        "event (`mapper.to_domain_event`: JSON + transcodings + reconstructing the dataclass), renders it back to "
        "JSON in the envelope (`event_view`), and only then pipelines the publishes; the raw baseline publishes "
        f"ready-made bytes. nats-py's share of the profile is {_pct(_lib(prof, 'nats'))}.\n\n"
        "**What would fix it:** build the envelope from the stored bytes (the stored state is already JSON) instead "
        "of decoding to a domain event and re-encoding; overlap reading the next batch with waiting for the "
        "acknowledgements of the current one.\n"
    )


def _replay(results: dict[str, Any]) -> str:
    r = _g(results, "scenarios", "replay", "stores", "sqlite") or {}
    prof = _g(results, "profiles", "replay") or {}
    decode = _share(prof, "decode (services/deal_lifecycle/application/transcodings.py")
    json_share = _lib(prof, "stdlib: decoder")
    return (
        f"Loading the 10,000-event deal from its snapshot takes {_n(_g(r, 'with_snapshots', 'latest', 'p50_ms'))} ms although no event "
        f"is replayed: the snapshot is {r.get('snapshot_bytes', 0) / 1e6:.1f} MB, because the Deal keeps every concession "
        "(and promise, expectation, condition...) in its state, so the snapshot grows with the history it is meant to "
        f"shortcut. The profile of {prof.get('loads', '–')} loads: JSON decoding of the snapshot is {_pct(json_share)} of the time, "
        f"and the transcoder rebuilds each of the 9,999 `Concession` dataclasses (`DataclassAsDict.decode` "
        f"{_n(decode or '–')} s cumulative, with `Concession.__post_init__` and the `Side` enum lookups). The trivial aggregate's "
        f"snapshot loads in {_n(_g(r, 'raw_floor', 'latest_with_snapshot', 'p50_ms'))} ms: the library is not the problem, "
        "the size of the state is. Replaying without snapshots is also super-linear in the deal's length: "
        "`_concession_recorded` copies the whole list on every event (`[*self.concessions, new]`).\n\n"
        "**What would fix it:** keep only what decisions need in the aggregate (counts of concessions given and "
        "received by stage, the open conditions, the undecided promises and expectations) and leave the full "
        "lists to the read side (events or a projection); append instead of copying; a faster codec for snapshots "
        "(orjson/msgspec) helps by a constant factor only.\n"
    )


def _listing(results: dict[str, Any]) -> str:
    return (
        "The page query is an index range scan on (stage, opened_at, deal_id); see the plans above. A slow result "
        "here would come from the planner choosing another index (PostgreSQL, without statistics) or from "
        "converting rows, not from the size of the table.\n"
    )


FINDINGS = """\
- **Garbage-collection pauses in the service processes.** `dealflow notifier` and `dealflow serve` start through
  `dealflow.cli`, which imports both services, Litestar, uvicorn, rich and more: about 90,000 long-lived objects
  that the cyclic collector walks on every full collection (43 ms measured). In isolation they are the notifier's
  p99 (36 ms at 200 events/s, 5 ms with `gc.freeze()` after start-up); in the full pipeline they cost capacity near
  saturation (scenario 2a's `gc.freeze()` what-if).
- **Aggregate state and snapshots grow with the history.** The Deal keeps every concession, promise,
  expectation and condition; `ConcessionRecorded.apply` copies the list on each event (quadratic replay) and
  `concession_counts()` scans it on each concession (quadratic recording); snapshots of long deals are megabytes, which is
  why a 10,000-event deal does not load in 10 ms even from a snapshot at its head.
- **The relay saves its position after every batch, however small** (`EventRelay._publish` → `_advance`, one
  write transaction on the event store each time). Under a steady trickle of commands that is hundreds of extra
  writes competing with the commands for SQLite's single writer (scenario 2a's serve profile).
- **PostgreSQL does not use the (stage, opened_at, deal_id) index for a stage listing** in these runs: it walks
  the (opened_at, deal_id) index and filters by stage (see the plans in scenario 4). With stages spread evenly over
  time that is cheap; for a stage that is rare among recent or old deals it would read many rows per page.
"""

METHOD = """\
- Throughputs count operations that *completed* inside a fixed window after a warm-up; latencies are those of the
  same operations. Percentiles are exact (linear interpolation between ranks).
- In-process scenarios log through structlog exactly as the service configures it, to /dev/null, so the
  cost of rendering the log line stays in the figures. Server processes log to files.
- HTTP load: one httpx `AsyncClient` with one connection per simulated client, on uvloop (httpcore's shared pool
  costs O(connections x waiting requests) per request and made the load generator the bottleneck at 64). The
  load generator shares the machine's two cores with the server(s): CPU % columns show who was busy.
- Event to alert: commands are offered open-loop (command i is sent at start + i/rate whatever happened to
  earlier ones; up to 48 connections in flight); "kept up" means at least 95 % of the offered rate was accepted,
  the sender was never more than 100 ms late (p99), every alert arrived, and alert latency did not grow over the
  run. A rate that is not kept up is measured again at 60 % of it.
- Backlogs (relay, replay, notifier) are real domain events recorded through a template Deal and copied onto
  other deals and versions (backlog.py): recording 100,000 concessions through the aggregate would take minutes
  (see the quadratic costs above) and is not what is measured. The replay deal's snapshots are taken at the
  versions that are read (N/2, N-100 and N), which are the snapshots the every-100 rule leaves there.
- The read model is bulk-loaded with the service's own column formats; PostgreSQL gets `ANALYZE` after the load
  (what autovacuum would do); SQLite gets nothing, as in production.
- Profiles are cProfile of every thread (a profiler is installed in each new thread), merged, with the process's
  start-up left out; they inflate Python-heavy code more than C code, so read them as shares, not absolute times.
  Time a thread spends blocked in a lock, a queue, epoll or sleep is reported apart as waiting.
- The machine is a shared VM: figures move by 10-30 % between runs (c at one client on SQLite measured between
  330 and 470 commands/s across runs while this benchmark was built). Ratios within one run are steadier.
- PostgreSQL runs use a fresh schema per sub-benchmark (`bench_<name>_<random>`), dropped at the end.
"""
