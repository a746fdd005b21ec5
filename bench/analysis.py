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
    if status == "not measured":
        return ""
    head = f"### {target['target']}: {status}\n\n"
    if target["key"] == "cpu" and status == "reported":
        return head + _cpu(results) + "\n"
    if status != "missed":
        return head + _met(target, results) + "\n"
    fn = {
        "b/a": _write_b, "c/a": _write_c, "wrk-scaling": _wrk_scaling, "wrk-c/d": _wrk_cd, "group-commit": _group_commit,
        "e2a": _e2a, "relay": _relay, "replay": _replay, "listing": _listing,
    }[target["key"]]
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


def _profiled(profile: dict[str, Any] | None, what: str) -> str:
    """A sentence on a profile's largest items, or that it was not taken."""
    if not profile or not profile.get("by_library"):
        return f"({what} was not profiled in this run.) "
    waiting = profile.get("waiting_s")
    busy = profile.get("total_profiled_s")
    wait = f"; {_n(waiting)} s were spent waiting (locks, queues, epoll) against {_n(busy)} s busy" if waiting and busy else ""
    return f"In the profile of {what} the largest items are {_top(profile)}; by where the time is spent: {_libraries(profile)}{wait}. "


def _write_b(results: dict[str, Any]) -> str:
    prof = _g(results, "profiles", "write_in_process") or {}
    a, b = prof.get("raw_a") or {}, prof.get("service_b") or {}
    a1, b1 = _ops(results, "a_raw", "1", "p50_ms"), _ops(results, "b_service", "1", "p50_ms")
    ratios = _g(results, "scenarios", "write_path", "stores", "sqlite", "ratios") or {}
    return (
        f"One command costs the raw floor {_n(a1)} ms and DealService {_n(b1)} ms (p50, one client, unprofiled); "
        f"without group commit and the aggregate cache (b as before) the service reached {_n(_g(ratios, '1', 'b_before/a'))} of the floor "
        f"at one client and {_n(_g(ratios, '64', 'b_before/a'))} at 64, with them {_n(_g(ratios, '1', 'b/a'))} and {_n(_g(ratios, '64', 'b/a'))}. "
        f"In the single-thread profile ({prof.get('ops', '–')} commands; {_n(a.get('per_op_ms', '–'))} vs {_n(b.get('per_op_ms', '–'))} ms per "
        f"command with the profiler on), the service's largest items are {_top(b)}; by where the time is spent: "
        f"{_libraries(b)}. A DealService command does what the floor does (load, one event, save) and more: it checks the "
        "policy and the idempotency receipt, writes the read-model row and the hash chains (the stream's and the store-wide "
        "one) in the same transaction, and logs one JSON line.\n\n"
        "**What would close the gap:** less work per command in the items above (each is Python run once per command "
        "under one GIL); the floor does none of it, so a ratio of 0.9 leaves about a tenth of a command's time for all of it.\n"
    )


def _write_c(results: dict[str, Any]) -> str:
    prof = _g(results, "profiles", "write_http") or {}
    d1 = _g(results, "scenarios", "write_path", "ceiling_d", "1", "p50_ms")
    c1, b1 = _ops(results, "c_http", "1", "p50_ms"), _ops(results, "b_service", "1", "p50_ms")
    cpu64 = _g(results, "scenarios", "write_path", "stores", "sqlite", "c_http", "64", "cpu_percent") or {}
    wrk = _g(results, "scenarios", "wrk_http", "c") or {}
    two = _g(wrk, "2", "64", "ops_per_s")
    text = (
        f"At one client a command over HTTP takes {_n(c1)} ms (p50) against {_n(b1)} ms in-process: the HTTP path adds "
        f"{_n((c1 or 0) - (b1 or 0))} ms, where the whole round trip to the trivial Litestar endpoint (the load generator's "
        f"own httpx cost included) is {_n(d1)} ms. {_profiled(prof, 'the serve process at one client')}"
        "Each command is authenticated (a token's signature checked), its sync handler hops to an anyio worker thread and "
        f"back, and the load generator and the server take turns on two cores. At 64 clients the serve process uses "
        f"{_n(cpu64.get('server_process', '–'))} % of a core and the httpx load generator {_n(cpu64.get('bench_process', '–'))} %.\n\n"
    )
    if two:
        text += (
            f"Under wrk (scenario 7) one worker answers {_n(_g(wrk, '1', '64', 'ops_per_s'))} commands/s at 64 connections and two "
            f"workers {_n(two)}; the targets on wrk's figures say why each falls short.\n"
        )
    return text


def _wrk(results: dict[str, Any]) -> dict[str, Any]:
    return _g(results, "scenarios", "wrk_http") or {}


def _wrk_scaling(results: dict[str, Any]) -> str:
    w = _wrk(results)
    one = _g(w, "c", "1") or {}
    conns = list(one)
    line = ", ".join(f"{_n(_g(one, c, 'ops_per_s'))} at {c}" for c in conns)
    cpu = ", ".join(f"{_n(_g(one, c, 'cpu_percent', 'server_process'))} % at {c}" for c in conns)
    per = ", ".join(f"{_n(_g(one, c, 'server_cpu_ms_per_request'))} ms at {c}" for c in conns)
    first, last = _g(one, conns[0], "server_cpu_ms_per_request") if conns else None, _g(one, conns[-1], "server_cpu_ms_per_request") if conns else None
    prof = _g(results, "profiles", "wrk_http") or {}
    text = (
        f"With one worker, wrk measured {line} connections (commands/s). The serve process used {cpu} connections "
        f"(% of one core), and its CPU per request was {per}. "
    )
    if first and last and last > 1.1 * first:
        text += (
            f"So one Python process is busy all the time and each request costs it {_n(100 * (last / first - 1))} % more CPU at "
            f"{conns[-1]} connections than at {conns[0]}: the extra is work that grows with the number of requests in flight, not "
            "with the number served. "
        )
    text += _profiled(prof, f"serve under wrk at {_g(prof, 'load', 'connections') or '–'} connections")
    text += _sqlite_per_command(results)
    two = _g(w, "c", "2") or {}
    if two:
        two_line = ", ".join(f"{_n(_g(two, c, 'ops_per_s'))} at {c}" for c in two)
        text += (
            f"With two workers throughput went {two_line} connections: "
            "the second process brings a second GIL, and the two share two cores with wrk.\n\n"
        )
    text += (
        "**What would fix it:** bound the commands a worker runs at once to what it can finish (the others wait in the event "
        "loop's queue instead of in worker threads that take turns on the GIL and the store), and less CPU per command.\n"
    )
    return text


def _own(profile: dict[str, Any], needle: str) -> tuple[float, int] | None:
    """Own seconds and calls of the first top function whose name contains `needle`."""
    row = next((r for r in profile.get("top_own_time", []) if needle in r["function"]), None)
    return (row["tottime_s"], row["calls"]) if row else None


def _sqlite_per_command(results: dict[str, Any]) -> str:
    """Time inside SQLite's execute per command at one connection (httpx profile) and at 64 (wrk profile), and batches over HTTP."""
    wrk_prof = _g(results, "profiles", "wrk_http") or {}
    one_prof = _g(results, "profiles", "write_http") or {}
    many, requests = _own(wrk_prof, "'execute' of 'sqlite3.Cursor'"), _g(wrk_prof, "load", "requests")
    if not many or not requests:
        return ""
    text = f"Inside SQLite's `execute` (its own work, SQLite's lock waits and the wait for the GIL back) a command spends {_n(1000 * many[0] / requests)} ms at {_g(wrk_prof, 'load', 'connections')} connections"
    one, ops = _own(one_prof, "'execute' of 'sqlite3.Cursor'"), _g(one_prof, "load", "ops")
    if one and ops:
        text += f", against {_n(1000 * one[0] / ops)} ms at one connection (the profile of the HTTP path)"
    commits = _own(wrk_prof, "'commit' of 'sqlite3.Connection'")
    if commits:
        text += f"; {commits[1]:,} commits for {requests:,} commands: {_n(requests / commits[1])} commands a transaction over HTTP"
    return text + ". "


def _wrk_cd(results: dict[str, Any]) -> str:
    w = _wrk(results)
    d, c1, c2 = w.get("d") or {}, _g(w, "c", "1") or {}, _g(w, "c", "2") or {}
    rows = []
    for conns in ("16", "64"):
        rows.append(
            f"at {conns} connections the trivial POST answers {_n(_g(d, conns, 'ops_per_s'))} requests/s at "
            f"{_n(_g(d, conns, 'server_cpu_ms_per_request'))} ms of server CPU each, a durable command {_n(_g(c1, conns, 'ops_per_s'))}/s "
            f"with one worker ({_n(_g(c1, conns, 'server_cpu_ms_per_request'))} ms of CPU each) and {_n(_g(c2, conns, 'ops_per_s'))}/s with two "
            f"({_n(_g(c2, conns, 'server_cpu_ms_per_request'))} ms)"
        )
    cost_d, cost_c = _g(d, "64", "server_cpu_ms_per_request"), _g(c1, "64", "server_cpu_ms_per_request")
    bound = f" On a server that is CPU-bound, c/d cannot exceed the ratio of their CPU per request, here {_n(cost_d / cost_c)}." if cost_d and cost_c else ""
    said = "; ".join(rows)
    return (
        said[:1].upper() + said[1:] + "." + bound + " Both servers are one Python process per worker on the same stack "
        "(uvicorn, uvloop, httptools, Litestar); what separates them is the command's own work: the token check, the "
        "hop to a worker thread, loading the deal, deciding, the transaction (events, read-model row, receipt, hash chains) "
        "and the answer. " + _profiled(_g(results, "profiles", "wrk_http"), "serve under wrk") + "\n\n"
        "**What would fix it:** a durable command will not cost as little CPU as a trivial POST; the target needs its CPU "
        "per request within about twice the trivial POST's, or more worker processes on more cores than this machine's two "
        "(shared with wrk).\n"
    )


def _group_commit(results: dict[str, Any]) -> str:
    g = _g(results, "scenarios", "group_commit") or {}
    x = _g(g, "stores", "sqlite") or {}
    on = x.get("on") or {}
    clients = g.get("clients", 64)
    sizes = ", ".join(f"{_n(_g(y, 'ops_per_s'))}/s at batch ≤ {size} ({_n(y.get('saves_per_transaction'))} saves a transaction)" for size, y in on.items())
    prof = _g(results, "profiles", "group_commit") or {}
    lone = _g(x, "off_one_client", "ops_per_s")
    best = max((y.get("ops_per_s") or 0 for y in on.values()), default=0)
    fsync, command_ms = g.get("fsync_ms"), _g(x, "off_one_client", "p50_ms")
    cheap_commit = bool(fsync and command_ms and fsync < 0.3 * command_ms)
    text = (
        f"At {clients} clients in-process on SQLite: without group commit {_n(_g(x, 'off', 'ops_per_s'))} commands/s; with it "
        f"{sizes}; the raw floor, one save a call, {_n(_g(x, 'a_raw', 'ops_per_s'))}/s. One client alone, without group commit, "
        f"does {_n(lone)}/s (p50 {_n(command_ms)} ms a command)"
        + (f", and a 4 KiB write with its fsync costs this disk {_n(fsync)} ms. " if fsync else ". ")
    )
    if lone and best and best <= 1.2 * lone:
        text += (
            f"So {clients} clients with commits grouped do little more than one client alone: what is left runs one thread at a "
            "time (a command's Python work holds the GIL)"
            + (", and the commit's fsync was a small part of a command. " if cheap_commit else ". ")
        )
    default = on.get("64") or {}
    largest = on[max(on, key=int)] if on else {}
    plateau = bool(default.get("saves_per_transaction") and largest.get("saves_per_transaction")
                   and largest["saves_per_transaction"] < 1.5 * default["saves_per_transaction"])
    if default.get("saves_per_transaction") and default["saves_per_transaction"] < clients / 2:
        text += (
            f"Batches hold {_n(default['saves_per_transaction'])} saves at the default size although {clients} clients are under way: "
            "the clients reach their save one after another, not together. "
        )
    text += _profiled(prof, f"{clients} clients with group commit on (every thread, the committer's too)")
    if prof.get("by_library"):
        text += (
            "SQLite's `execute`, structlog's write of the log line (to /dev/null, under its lock) and taking an `RLock` are calls "
            "that release the GIL, each counted with the wait to get it back from the other threads. "
        )
    text += (
        "\n\n**What would fix it:** the target assumes a commit is most of a command's cost"
        + ("; on this disk it is not, and the rest is Python work under one GIL. " if cheap_commit else ". ")
        + "Less work per command (see the one-client target), fewer GIL hand-offs per command "
        "(one log write, fewer statements), or more processes, each filling its own batches, raise the rate"
        + ("; a larger batch does not (the batches do not fill).\n" if plateau else ".\n")
    )
    return text


def _e2a(results: dict[str, Any]) -> str:
    e = _g(results, "scenarios", "event_to_alert", "stores", "sqlite") or {}
    apart = e.get("relay_apart") or {}
    prof = _g(results, "profiles", "event_to_alert") or {}
    cpu = e.get("cpu_percent") or {}
    p99 = lambda x: _g(x, "response_to_alert", "p99_ms")  # noqa: E731
    total = sum(v for k, v in cpu.items() if isinstance(v, (int, float)))
    text = ""
    if not e.get("machine_kept_up", True):
        text += (
            f"**At {_n(e.get('offered_per_s'))} commands/s the pipeline does not keep up** ({'; '.join(e.get('not_kept_up_because') or [])}): "
            f"{_n(e.get('achieved_per_s'))} commands/s were accepted, alert latency had a median of {_n(e.get('alert_p50_first_fifth_ms'))} ms "
            f"in the first fifth of the run and {_n(e.get('alert_p50_last_fifth_ms'))} ms in the last. "
        )
    text += (
        f"At {_n(e.get('offered_per_s'))} commands/s the response→alert latency is p50 {_n(_g(e, 'response_to_alert', 'p50_ms'))} ms and p99 "
        f"{_n(p99(e))} ms. Split by the timestamps: relay lag p50 {_n(_g(e, 'relay_lag_event_to_jetstream', 'p50_ms'))} / "
        f"p99 {_n(_g(e, 'relay_lag_event_to_jetstream', 'p99_ms'))} ms, notifier leg p50 {_n(_g(e, 'notifier_leg_jetstream_to_webhook', 'p50_ms'))} / "
        f"p99 {_n(_g(e, 'notifier_leg_jetstream_to_webhook', 'p99_ms'))} ms, HTTP response p99 {_n(_g(e, 'http_response', 'p99_ms'))} ms; "
        f"the floor does the same hops with p99 {_n(_g(results, 'scenarios', 'event_to_alert', 'floor', 'ack_to_webhook', 'p99_ms'))} ms. "
        f"CPU (one core = 100 %): serve {_n(cpu.get('serve'))}, notifier {_n(cpu.get('notifier'))}, nats-server {_n(cpu.get('nats_server'))}, "
        f"load generator and receiver {_n(cpu.get('bench_process'))}: {_n(total)} % of the machine's 200 %.\n\n"
    )
    legs = {"relay": _g(e, "relay_lag_event_to_jetstream", "p50_ms"), "notifier": _g(e, "notifier_leg_jetstream_to_webhook", "p50_ms")}
    median = _g(e, "response_to_alert", "p50_ms")
    if e.get("machine_kept_up") and median is not None and median > 100 and None not in legs.values():
        slow = max(legs, key=lambda k: legs[k])
        text += (
            f"The pipeline kept up with the offered rate, but with a standing queue: the median alert waited {_n(median)} ms, most of "
            f"it in the {slow} leg (p50 {_n(legs[slow])} ms).\n\n"
        )
    ramp = e.get("ramp") or []
    if ramp:
        steps = "; ".join(f"{_n(x['offered_per_s'])}/s: p99 {_n(p99(x))} ms{'' if x['machine_kept_up'] else ' (not kept up)'}" for x in ramp)
        highest = e.get("highest_rate_within_limit")
        text += (
            f"The ramp ({steps}) puts the highest offered rate with p99 under {_n(_g(results, 'scenarios', 'event_to_alert', 'p99_limit_ms'))} ms at "
            f"{_n(highest) + ' commands/s' if highest else 'none of the rates tried'}.\n\n"
        )
    for kind, run in (_g(results, "scenarios", "event_to_alert", "stores") or {}).items():
        text += _relay_apart(kind, run)
    serve_prof = _g(prof, "profile", "serve") or {}
    commits = next((r["calls"] for r in serve_prof.get("top_own_time", []) if "'commit' of 'sqlite3.Connection'" in r["function"]), None)
    commands = prof.get("commands")
    if commits and commands:
        text += (
            f"In the serve process's profile (at {_n(prof.get('offered_per_s'))} commands/s) the SQLite calls are "
            f"{_pct(_lib(serve_prof, 'builtin sqlite3.Cursor.execute'))} in `execute` and {_pct(_lib(serve_prof, 'builtin sqlite3.Connection.commit'))} "
            f"in `commit` (a C call that releases the GIL also counts the wait to get it back): {commits:,} commits for {commands:,} commands"
            + (", the extra ones the relay saving its position (at most every 0.25 s while busy) and the checkpoints. " if commits > commands else ". ")
            + "Profiles of both processes are below.\n\n"
        )
    relay99, notifier99 = _g(e, "relay_lag_event_to_jetstream", "p99_ms"), _g(e, "notifier_leg_jetstream_to_webhook", "p99_ms")
    busy = total >= 150
    text += "**What would fix it:** "
    if busy:
        text += (
            f"the processes use {_n(total)} % of the machine's 200 %, so the tail is queueing for the cores: less CPU per command "
            "in serve and the notifier (see the cost per command) leaves idle time between commands. "
        )
    if relay99 is not None and notifier99 is not None and relay99 >= notifier99:
        text += (
            "The relay leg is the larger part of the tail: the relay publishes from the event loop that also answers HTTP "
            "(the relay apart, measured above, is the alternative), reading each batch from the store and decoding it before "
            "it publishes (see the relay throughput target). "
        )
    elif notifier99 is not None:
        text += (
            "The notifier leg is the larger part of the tail: besides its POST, each alert makes two store calls (`is_final`, "
            "then its outcome, text and delivering try in one transaction), each a hop to a worker thread; a lighter webhook client "
            "than httpx's stack and fewer hops would shorten it. "
        )
    return text + "\n"


def _relay_apart(kind: str, e: dict[str, Any]) -> str:
    """The relay in serve against the relay in its own process, at the same rate on the same store."""
    apart = e.get("relay_apart") or {}
    if not apart:
        return ""
    lag = lambda x, q: _g(x, "relay_lag_event_to_jetstream", q)  # noqa: E731
    p99 = lambda x: _g(x, "response_to_alert", "p99_ms")  # noqa: E731
    better = p99(apart) is not None and p99(e) is not None and p99(apart) < p99(e)
    text = (
        f"On {STORES.get(kind, kind)} with the relay apart (`serve --no-relay` and a `dealflow relay` process) at {_n(apart.get('offered_per_s'))} "
        f"commands/s: response→alert p99 {_n(p99(apart))} ms against {_n(p99(e))} ms with the relay in serve; relay lag p50 "
        f"{_n(lag(apart, 'p50_ms'))} / p99 {_n(lag(apart, 'p99_ms'))} ms against {_n(lag(e, 'p50_ms'))} / {_n(lag(e, 'p99_ms'))} ms; HTTP response p99 "
        f"{_n(_g(apart, 'http_response', 'p99_ms'))} against {_n(_g(e, 'http_response', 'p99_ms'))} ms. In this run the relay apart was "
        f"{'faster' if better else 'slower'} at the tail. "
    )
    if (lag(apart, "p50_ms") or 0) > 10 * max(lag(e, "p50_ms") or 0, 1):
        text += (
            "Its relay lag is that of a relay that finds new events by looking again at an interval rather than being woken: a "
            "relay is woken at once by commands stored in its own process, by PostgreSQL's NOTIFY for another process's, and "
            "otherwise polls (`poll_seconds`, 1 s by default). On SQLite a relay apart only polls, and so does the leading "
            "relay of `serve --workers N` for the commands the other workers store. "
        )
    return text + "\n\n"


def _cpu(results: dict[str, Any]) -> str:
    e = _g(results, "scenarios", "event_to_alert", "stores", "sqlite") or {}
    # The headline window and the ramp's ran in the same processes: one series by offered rate.
    runs = sorted((x for x in [e, *(e.get("ramp") or [])] if x.get("cpu_ms_per_command")), key=lambda x: x["offered_per_s"])
    if len(runs) < 2:
        return "Measured at one rate only in this run; see the CPU table of scenario 2a.\n"
    low, high = runs[0], runs[-1]
    parts = []
    for key, label in (("serve", "serve"), ("notifier", "the notifier"), ("nats_server", "nats-server")):
        a, b = _g(low, "cpu_ms_per_command", key), _g(high, "cpu_ms_per_command", key)
        parts.append(f"{label} {_n(a)} → {_n(b)} ms")
    return (
        f"CPU per command from {_n(low['offered_per_s'])} to {_n(high['offered_per_s'])} commands/s offered: {', '.join(parts)}. "
        "A cost per command that rises with the rate is work that grows with load (contention, smaller batches of more "
        "wake-ups, collections); one that falls is fixed work (timers, polling) shared by more commands.\n"
    )


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
        "The notifier delivers a fetched batch concurrently across deals (each deal's alerts in order), and each alert is "
        "several round trips: `is_final`, the POST, then its outcome, text and delivering try in one transaction (two store "
        "calls, each a hop to a worker thread), then the ack. In its profile (below) the webhook client stack (httpx, "
        "httpcore, h11, anyio) is "
        f"{_pct(http)} of the busy time, the SQLite store calls {_pct(_lib(prof, 'builtin sqlite3.Cursor.execute'))}, JSON-schema "
        f"validation {_pct(_lib(prof, 'jsonschema'))}; it runs on uvloop.\n\n"
        "**What would help:** a lighter webhook client than httpx's stack, and validating with a compiled "
        "validator (e.g. fastjsonschema) or only at the edge.\n\n"
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
    size = r.get("snapshot_bytes")
    loads = f"{prof.get('loads', '–')} loads"
    return (
        f"Loading the {_n(r.get('events'))}-event deal from its snapshot at the head takes {_n(_g(r, 'with_snapshots', 'latest', 'p50_ms'))} ms "
        f"(p50); no event is replayed. The snapshot is {_n(size)} bytes; the trivial aggregate's snapshot loads in "
        f"{_n(_g(r, 'raw_floor', 'latest_with_snapshot', 'p50_ms'))} ms. Reading the deal's stored events alone (no decoding) takes "
        f"{_n(_g(r, 'select_stored_events_only', 'p50_ms'))} ms. {_profiled(prof, loads)}\n\n"
        "**What would fix it:** whatever the profile's largest items are beyond the library's own snapshot load (the floor): "
        "a snapshot that grows with the deal's history (if its size above is large) or decoding work per load.\n"
    )


def _listing(results: dict[str, Any]) -> str:
    return (
        "The page query is an index range scan on (stage, opened_at, deal_id); see the plans above. A slow result "
        "here would come from the planner choosing another index (PostgreSQL, without statistics) or from "
        "converting rows, not from the size of the table.\n"
    )


def findings(results: dict[str, Any]) -> str:
    """What the run's numbers show about the service beyond the targets: each item only when this run measured it."""
    s = results.get("scenarios", {})
    items = []
    one = _g(s, "wrk_http", "c", "1") or {}
    steps = _g(s, "wrk_http", "ratios", "1", "step") or {}
    if one and any(v is not None and v < 1 for v in steps.values()):
        conns = list(one)
        items.append(
            "**Throughput over HTTP falls as connections rise** (one worker, wrk): "
            + ", ".join(f"{_n(_g(one, c, 'ops_per_s'))}/s at {c}" for c in conns)
            + f" connections, while the server's CPU per request goes from {_n(_g(one, conns[0], 'server_cpu_ms_per_request'))} to "
            f"{_n(_g(one, conns[-1], 'server_cpu_ms_per_request'))} ms (scenario 7)."
        )
    for kind, x in (_g(s, "group_commit", "stores") or {}).items():
        gained = _g(x, "ratios", "default(64)/off")
        if gained is not None and gained < 1:
            items.append(
                f"**On {STORES.get(kind, kind)}, group commit is slower than a transaction per command** at 64 clients in-process: "
                f"{_n(_g(x, 'on', '64', 'ops_per_s'))} against {_n(_g(x, 'off', 'ops_per_s'))} commands/s "
                f"({_n(_g(x, 'on', '64', 'saves_per_transaction'))} saves a transaction; scenario 6)."
            )
        lone = _g(x, "ratios", "one client p50 on/off")
        if lone is not None and lone > 1.1:
            items.append(
                f"**Group commit costs a lone command latency** on {STORES.get(kind, kind)}: p50 {_n(_g(x, 'on_one_client', 'p50_ms'))} ms "
                f"against {_n(_g(x, 'off_one_client', 'p50_ms'))} ms without it ({_n(lone)} x): a lone command writes its own save, in its own thread, but through the batch's path (one transaction with a savepoint per save)."
            )
    for kind, e in (_g(s, "event_to_alert", "stores") or {}).items():
        apart, inside = _g(e, "relay_apart", "relay_lag_event_to_jetstream", "p50_ms"), _g(e, "relay_lag_event_to_jetstream", "p50_ms")
        if apart is not None and inside is not None and apart > 10 * max(inside, 1):
            items.append(
                f"**A relay in another process is late on {STORES.get(kind, kind)}**: relay lag p50 {_n(apart)} ms with `serve --no-relay` and "
                f"`dealflow relay`, against {_n(inside)} ms with the relay in serve (scenario 2a): the serving process's wake on "
                "`deals.relay.wake` (and PostgreSQL's NOTIFY) did not keep it up with the commands; the leading relay of "
                "`serve --workers N` is in the same position for the other workers' commands."
            )
    for kind, x in (_g(s, "read_model", "stores") or {}).items():
        sizes = x.get("sizes") or {}
        plan = _g(sizes, max(sizes, key=int), "deep_page_plan") if sizes else None
        if kind == "postgres" and plan and "Filter: (stage" in plan:
            items.append(
                "**PostgreSQL does not use the (stage, opened_at, deal_id) index for a stage listing** in this run: it walks "
                "the (opened_at, deal_id) index and filters by stage (see the plans in scenario 4). With stages spread evenly "
                "over time that is cheap; for a stage that is rare among recent or old deals it would read many rows per page."
            )
    return "\n".join(f"- {item}" for item in items) + "\n"


METHOD = """\
- Throughputs count operations that *completed* inside a fixed window after a warm-up; latencies are those of the
  same operations. Percentiles are exact (linear interpolation between ranks).
- In-process scenarios log through structlog exactly as the service configures it, to /dev/null, so the
  cost of rendering the log line stays in the figures. Server processes log to files.
- HTTP load: one httpx `AsyncClient` with one connection per simulated client, on uvloop (httpcore's shared pool
  costs O(connections x waiting requests) per request and made the load generator the bottleneck at 64). The
  load generator shares the machine's two cores with the server(s): CPU % columns show who was busy.
- wrk (scenario 7): one wrk thread per run, a Lua script that sends the same request body as the httpx load, round
  robin over the deals; wrk's own CPU is measured from its resource usage. A server's CPU per request is its CPU
  seconds (every worker process included) over the requests wrk completed in the window.
- Group commit (scenario 6) runs the service in-process with the aggregate cache off, so the table shows group
  commit alone; "off" is `DEALFLOW_GROUP_COMMIT_MS=0`, the service as it was before; saves per transaction are
  the committer's own counts over the window and its warm-up.
- Event to alert: commands are offered open-loop (command i is sent at start + i/rate whatever happened to
  earlier ones; up to 48 connections in flight); "kept up" means at least 95 % of the offered rate was accepted,
  the sender was never more than 100 ms late (p99), every alert arrived, and alert latency did not grow over the
  run. The ramp's windows run in the same processes one after another, each once the previous one's alerts have
  arrived. CPU per command: each process's CPU seconds from the first command of a window until its last alert
  arrived, over the commands accepted.
- Backlogs (relay, replay, notifier) are real domain events recorded through a template Deal and copied onto
  other deals and versions (backlog.py): recording 100,000 concessions one command at a time would take minutes
  and is not what is measured. The replay deal's snapshots are taken at the
  versions that are read (N/2, N-100 and N), which are the snapshots the every-100 rule leaves there.
- The read model is bulk-loaded with the service's own column formats; PostgreSQL gets `ANALYZE` after the load
  (what autovacuum would do); SQLite gets nothing, as in production.
- Profiles are cProfile of every thread (a profiler is installed in each new thread), merged, with the process's
  start-up left out; they inflate Python-heavy code more than C code, so read them as shares, not absolute times.
  Time a thread spends blocked in a lock, a queue, epoll or sleep is reported apart as waiting.
- The machine is a shared VM: figures move by 10-30 % between runs. Ratios within one run are steadier.
- PostgreSQL runs use a fresh schema per sub-benchmark (`bench_<name>_<random>`), dropped at the end.
"""
