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


def _memo(results: dict[str, Any]) -> str:
    w = _g(results, "profiles", "write_whatif")
    if not w:
        return ""
    parts = []
    for clients in ("1", "64"):
        a = _ops(results, "a_raw", clients)
        bm, cm = _g(w, "b_memo", clients, "ops_per_s"), _g(w, "c_memo", clients, "ops_per_s")
        if a and bm and cm:
            parts.append(f"{clients} client(s): b/a {bm / a:.2f}, c/a {cm / a:.2f}")
    return ("Measured in this run with `permit()` answered from a cache (the what-if table below): " + "; ".join(parts) + ".\n\n") if parts else ""


def _write_b(results: dict[str, Any]) -> str:
    prof = _g(results, "profiles", "write_in_process") or {}
    a, b = prof.get("raw_a") or {}, prof.get("service_b") or {}
    permit = _share(b, "permit (services/deal_lifecycle/domain/lifecycle.py")
    total = _share(b, "record_concession (services/deal_lifecycle/application.py")
    get = _share(b, "get_deal (services")
    sm = _lib(b, "statemachine")
    a1, b1 = _ops(results, "a_raw", "1", "p50_ms"), _ops(results, "b_service", "1", "p50_ms")
    return (
        f"One command costs the raw floor {a1} ms and DealService {b1} ms (p50, one client, unprofiled). "
        f"In the single-thread profile ({prof.get('ops', '–')} commands; {a.get('per_op_ms', '–')} vs {b.get('per_op_ms', '–')} ms per "
        f"command with the profiler on), `permit()` (domain/lifecycle.py) takes {permit or '–'} s of DealService's "
        f"{total or '–'} s: **it builds a new python-statemachine `DealLifecycle` StateChart for every command** just "
        "to learn whether `record_concession` is allowed at the deal's stage. python-statemachine's own code is "
        f"{_pct(sm)} of the busy time (registering callbacks and listeners, `dir()` on the model, resolving callbacks). "
        f"Loading the deal (`get_deal`: snapshot lookup, events, every value transcoded) takes {get or '–'} s; the rest "
        "(the hash chain's extra SELECT and INSERT, the read-model upsert, tenacity, pydantic, one JSON log line) is "
        "small item by item. With 64 threads the gap stays about the same: SQLite takes one writer at a time and the "
        "GIL one thread at a time, so throughput is the single-threaded cost per command.\n\n"
        + _memo(results)
        + "**What would fix it:** answer `permit()` from a table computed once from the machine's transitions "
        "(`{(stage, event): target}`, built at import), running the StateChart only for commands with validators "
        "(`sign_contract`), or keep one machine per thread and set its state. Then make the domain's per-event work "
        "O(1) (`concession_counts()` sums the whole list on every concession and `_concession_recorded` copies it), "
        "and cache loaded aggregates (`AGGREGATE_CACHE_MAXSIZE` with fast-forward) so a hot deal is not re-read and "
        "re-transcoded for every command.\n"
    )


def _write_c(results: dict[str, Any]) -> str:
    prof = _g(results, "profiles", "write_http") or {}
    d1 = _g(results, "scenarios", "write_path", "ceiling_d", "1", "p50_ms")
    c1, b1 = _ops(results, "c_http", "1", "p50_ms"), _ops(results, "b_service", "1", "p50_ms")
    cpu64 = _g(results, "scenarios", "write_path", "stores", "sqlite", "c_http", "64", "cpu_percent") or {}
    lit = _lib(prof, "litestar")
    sm = _lib(prof, "statemachine")
    view = _share(prof, "deal_view (services")
    return (
        f"At one client a command over HTTP takes {c1} ms (p50) against {b1} ms in-process and {d1} ms for the trivial "
        "Litestar endpoint (which includes the load generator's own httpx cost): the HTTP path adds about what the "
        "ceiling costs, on top of the service's own cost (b/a above). In the serve process's profile "
        f"python-statemachine is {_pct(sm)} of the busy time, Litestar {_pct(lit)}, and rendering the response "
        f"(`deal_view`: the whole deal, every concession, and the signing blockers computed again) {view or '–'} s "
        "cumulative; each sync handler also hops to an anyio worker thread and back. At 64 clients the serve "
        f"process uses {cpu64.get('server_process', '–')} % of a core and the load generator {cpu64.get('bench_process', '–')} %: "
        "one Python process with one GIL is the limit, and it shares the two cores with the load generator. "
        "(On PostgreSQL c is much slower than b at one client: each command is several round trips to the "
        "server, and over HTTP three processes, the load generator, serve and postgres, take turns on two cores.)\n\n"
        + _memo(results)
        + "**What would fix it:** the `permit()` fix first (it is the largest single item on both paths). Then answer a "
        "command with what the client needs (the created id, the new version as the ETag, the stage) rather than the "
        "whole deal view; and run more than one worker process (uvicorn `--workers`; the store already refuses "
        "conflicting writes and the relay elects one leader).\n"
    )


def _e2a(results: dict[str, Any]) -> str:
    e = _g(results, "scenarios", "event_to_alert", "stores", "sqlite") or {}
    low = e.get("lowered") or {}
    frozen = e.get("gc_frozen") or {}
    kept = low if low else e
    prof = _g(results, "profiles", "event_to_alert") or {}
    cpu = e.get("cpu_percent") or {}
    text = ""
    if low:
        text += (
            f"**At {e.get('offered_per_s'):g} commands/s the machine saturates**: {e.get('achieved_per_s')} commands/s were "
            f"achieved, queues grew for the whole run and the response→alert p99 is {_g(e, 'response_to_alert', 'p99_ms')} ms. "
            f"CPU (one core = 100 %): serve {cpu.get('serve')}, notifier {cpu.get('notifier')}, nats-server "
            f"{cpu.get('nats_server')}, load generator and receiver {cpu.get('bench_process')}: the deal service is one "
            "Python process (uvicorn, the handlers in worker threads and the relay on one GIL) and it shares two cores with "
            "everything else, so it cannot take 300 commands/s while relaying them. "
            f"At {low.get('offered_per_s')} commands/s it keeps up, and the latency falls to p50 {_g(low, 'response_to_alert', 'p50_ms')} ms, "
            f"p99 {_g(low, 'response_to_alert', 'p99_ms')} ms: still over the target.\n\n"
        )
    text += (
        f"Split by the timestamps at {kept.get('offered_per_s')} commands/s: relay lag p50 {_g(kept, 'relay_lag_event_to_jetstream', 'p50_ms')} / "
        f"p99 {_g(kept, 'relay_lag_event_to_jetstream', 'p99_ms')} ms, notifier leg p50 {_g(kept, 'notifier_leg_jetstream_to_webhook', 'p50_ms')} / "
        f"p99 {_g(kept, 'notifier_leg_jetstream_to_webhook', 'p99_ms')} ms; the floor does the same hops in "
        f"p99 {_g(results, 'scenarios', 'event_to_alert', 'floor', 'ack_to_webhook', 'p99_ms')} ms. The medians are a few "
        "milliseconds; the tail is pauses. The largest is **Python's cyclic garbage collector**: both processes import "
        "the whole `dealflow` CLI (the notifier too: `services.cli` pulls in the deal service, Litestar, uvicorn, rich), "
        "about 90,000 long-lived container objects, and every full (generation 2) collection walks all of them, tens of "
        "milliseconds during which nothing else runs. While building this benchmark the notifier alone, fed from "
        "JetStream at 200 events/s, had a p99 of 36 ms with the collector as is, 2.4 ms with it disabled and 5 ms "
        "with `gc.freeze()` after start-up; one full collection after start-up took 43 ms.\n\n"
    )
    if frozen:
        text += (
            f"Measured in this run, the same pipeline at {frozen.get('offered_per_s')} commands/s with `gc.freeze()` after "
            "start-up in both processes (bench/variant.py, nothing else changed): response→alert p50 "
            f"{_g(frozen, 'response_to_alert', 'p50_ms')} ms, p99 {_g(frozen, 'response_to_alert', 'p99_ms')} ms "
            f"(relay lag p99 {_g(frozen, 'relay_lag_event_to_jetstream', 'p99_ms')}, notifier leg p99 "
            f"{_g(frozen, 'notifier_leg_jetstream_to_webhook', 'p99_ms')} ms).\n\n"
        )
    text += (
        "The rest of the tail is queueing in processes that share two cores: the relay publishes from the same event "
        "loop that serves requests, and the notifier handles a fetched batch one event at a time (validate against "
        "the JSON schema, `is_final`, POST, an attempt row and an outcome row, ack), so the last event of a batch waits "
        f"for the ones before it. Profiles of both processes at {prof.get('offered_per_s', '–')} commands/s are below.\n\n"
        "**What would fix it:** `gc.freeze()` once start-up is done in `serve` and `notifier` (and a higher "
        "generation-0 threshold), and a notifier that imports only what it uses; deliver a batch's events concurrently "
        "across deals (in order within a deal); run the relay apart from the HTTP workers (`dealflow relay` exists) or "
        "give the service more than one worker process; and the `permit()` fix, which frees CPU on the shared cores.\n"
    )
    return text


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
    decode = _share(prof, "decode (services/deal_lifecycle/storage/transcodings.py")
    json_share = _lib(prof, "stdlib: decoder")
    return (
        f"Loading the 10,000-event deal from its snapshot takes {_g(r, 'with_snapshots', 'latest', 'p50_ms')} ms although no event "
        f"is replayed: the snapshot is {r.get('snapshot_bytes', 0) / 1e6:.1f} MB, because the Deal keeps every concession "
        "(and promise, expectation, condition...) in its state, so the snapshot grows with the history it is meant to "
        f"shortcut. The profile of {prof.get('loads', '–')} loads: JSON decoding of the snapshot is {_pct(json_share)} of the time, "
        f"and the transcoder rebuilds each of the 9,999 `Concession` dataclasses (`DataclassAsDict.decode` "
        f"{decode or '–'} s cumulative, with `Concession.__post_init__` and the `Side` enum lookups). The trivial aggregate's "
        f"snapshot loads in {_g(r, 'raw_floor', 'latest_with_snapshot', 'p50_ms')} ms: the library is not the problem, "
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
  `services.cli`, which imports both services, Litestar, uvicorn, rich and more: about 90,000 long-lived objects
  that the cyclic collector walks on every full collection (43 ms measured). Those pauses are most of the
  event-to-alert p99 (scenario 2a and its `gc.freeze()` what-if). `gc.freeze()` after start-up fixes most of it.
- **The notifier takes 30 s to stop.** On SIGTERM (or Ctrl-C) an idle notifier leaves its fetch loop at once but
  then blocks in `nc.drain()` (services/notifier/cli.py) for nats-py's 30 s drain timeout and ends with
  `DrainTimeoutError`: after a `fetch()` has timed out, the server's late status reply to the lingering pull
  request stays in the subscription's pending queue, and `drain()` waits for that queue to empty. Reproduced
  with nats-py alone (one timed-out `fetch`, then `drain()`: 30.0 s). `dealflow up` gives each child 15 s and then
  SIGKILLs it, so stopping the system always takes 15 s and kills the notifier. Fix: unsubscribe the pull
  subscription before draining, or connect with a short `drain_timeout`, or `close()` instead of `drain()`
  (the notifier acks explicitly, so nothing is lost). The benchmark stops notifiers with SIGTERM and a 0.5 s grace, then SIGKILL.
- **`permit()` builds a python-statemachine StateChart on every command** (domain/lifecycle.py). It is the largest
  single cost of a command (see the write-path profile) for an answer that depends only on (stage, command)
  except for `sign_contract`'s validator.
- **Aggregate state and snapshots grow with the history.** The Deal keeps every concession, promise,
  expectation and condition; `_concession_recorded` copies the list on each event (quadratic replay) and
  `concession_counts()` scans it on each concession (quadratic recording); snapshots of long deals are megabytes, which is
  why a 10,000-event deal does not load in 10 ms even from a snapshot at its head.
- **Every command's HTTP response is the whole deal** (all concessions, promises, expectations, conditions, plus the
  blockers computed for it), so a command's response time and size grow with the deal.
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
  earlier ones; up to 48 connections in flight); "kept up" means at least 95 % of the offered rate was achieved
  and the sender was never more than 100 ms late (p99).
- Backlogs (relay, replay, notifier) are real domain events recorded through a template Deal and copied onto
  other deals and versions (backlog.py): recording 100,000 concessions through the aggregate would take minutes
  (see the quadratic costs above) and is not what is measured. The replay deal's snapshots are taken at the
  versions that are read (N/2, N-100 and N), which are the snapshots the every-100 rule leaves there.
- The read model is bulk-loaded with the service's own column formats; PostgreSQL gets `ANALYZE` after the load
  (what autovacuum would do); SQLite gets nothing, as in production.
- Profiles are cProfile of every thread (a profiler is installed in each new thread), merged; they inflate
  Python-heavy code more than C code, so read them as shares, not absolute times.
- PostgreSQL runs use a fresh schema per sub-benchmark (`bench_<name>_<random>`), dropped at the end.
"""
