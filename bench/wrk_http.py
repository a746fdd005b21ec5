"""Scenario 7, HTTP under wrk: durable commands per second as concurrent connections rise, against
the trivial Litestar POST of the same stack, both driven by wrk (Debian package `wrk`), a load
generator in C, so the ceiling measured is the server's and not the load generator's.

c: `dealflow serve` (SQLite), `POST /deals/{id}/concessions` round robin over 256 pre-opened deals,
each request with an emitter's bearer token; with 1 worker process and with 2 (`--workers 2`).
d: the trivial Litestar app (bench/ceiling_app.py), the same path and body.
Connections 1, 4, 16 and 64; wrk runs one thread (it needs a fraction of a core: its CPU is
measured too), and shares the machine's two cores with the server, as the httpx figures of
scenario 1 do. The server's CPU is given in % of one core and in milliseconds per request.
"""

from __future__ import annotations

import contextlib
import json
import re
import resource
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .common import Context, CpuMeter, auth_headers, ceiling_process, deal_service, fresh_store, ratio, serve_process
from .profiling import by_library, summarise
from .write_path import POOL, open_deals

CONNECTIONS = (1, 4, 16, 64)
WORKERS = (1, 2)

_SCRIPT = """
local deals = {%s}
local headers = {["Content-Type"] = "application/json", ["Authorization"] = %s}
local n = 0
request = function()
  n = n + 1
  local path = "/deals/" .. deals[(n %% #deals) + 1] .. "/concessions"
  return wrk.format("POST", path, headers, '{"by":"client","what":"gift ' .. n .. '"}')
end
"""


def _script(directory: Path, deal_ids: list[str], authorization: str) -> Path:
    path = directory / "concessions.lua"
    path.write_text(_SCRIPT % (", ".join(json.dumps(d) for d in deal_ids), json.dumps(authorization)))
    return path


_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def _ms(text: str) -> float:
    number, unit = re.fullmatch(r"([0-9.]+)(us|ms|s)", text).groups()  # type: ignore[union-attr]
    return round(float(number) * _UNITS[unit], 3)


def parse(output: str) -> dict[str, Any]:
    """Requests/s, latency percentiles and errors from `wrk --latency`."""
    result: dict[str, Any] = {}
    if found := re.search(r"Requests/sec:\s+([0-9.]+)", output):
        result["ops_per_s"] = round(float(found.group(1)), 1)
    if found := re.search(r"(\d+) requests in ", output):
        result["requests"] = int(found.group(1))
    for percentile in ("50", "90", "99"):
        if found := re.search(rf"^\s+{percentile}(?:\.000)?%\s+([0-9.]+(?:us|ms|s))\s*$", output, re.M):
            result[f"p{percentile}_ms"] = _ms(found.group(1))
    errors = 0
    if found := re.search(r"Non-2xx or 3xx responses:\s+(\d+)", output):
        errors += int(found.group(1))
    if found := re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output):
        errors += sum(map(int, found.groups()))
    result["errors"] = errors
    return result


def _children_cpu_seconds() -> float:
    used = resource.getrusage(resource.RUSAGE_CHILDREN)
    return used.ru_utime + used.ru_stime


def wrk(url: str, script: Path, connections: int, duration: float) -> dict[str, Any]:
    seconds = max(1, round(duration))
    command = ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", "-s", str(script), url]
    cpu0 = _children_cpu_seconds()
    done = subprocess.run(command, capture_output=True, text=True, timeout=duration + 60, check=False)  # noqa: S603
    result = parse(done.stdout)
    result["wrk_cpu_percent"] = round(100 * (_children_cpu_seconds() - cpu0) / seconds, 1)
    if done.returncode != 0 or "ops_per_s" not in result:
        result["failed"] = (done.stderr or done.stdout)[-500:]
    return result


def _sweep(base: str, script: Path, pids: dict[str, int], duration: float) -> dict[str, Any]:
    out = {}
    wrk(base, script, 4, min(duration, 1.0))  # warm-up: connections open, caches filled
    for connections in CONNECTIONS:
        with CpuMeter(pids) as cpu:
            result = wrk(base, script, connections, duration)
        result["cpu_percent"] = cpu.percent
        result["server_cpu_ms_per_request"] = cpu.ms_per(result.get("requests", 0)).get("server_process")
        out[str(connections)] = result
    return out


@contextlib.contextmanager
def _served(ctx: Context, name: str, workers: int = 1, profile_to: Path | None = None) -> Iterator[tuple[str, Any, Path]]:
    """`dealflow serve` on a fresh SQLite store with the pool of deals opened; yields its URL, its process and the wrk script."""
    with fresh_store(ctx, "sqlite", name) as store:
        service = deal_service(store)
        ids = [str(d) for d in open_deals(service, POOL)]
        service.close()
        with serve_process(store, ctx.workdir, workers=workers, profile_to=profile_to) as (base, process):
            yield base, process, _script(ctx.workdir, ids, auth_headers()["Authorization"])


def run(ctx: Context) -> dict[str, Any]:
    if shutil.which("wrk") is None:
        return {"skipped": "wrk is not installed (Debian: apt-get install wrk)"}
    duration = ctx.size(1.0, 5.0)
    out: dict[str, Any] = {"window_s": duration, "connections": list(CONNECTIONS), "c": {}, "ratios": {}}
    with ceiling_process(ctx.workdir) as (base, process):
        ceiling_ids = ["00000000-0000-0000-0000-000000000001"]
        out["d"] = _sweep(base, _script(ctx.workdir, ceiling_ids, "none"), {"server_process": process.pid}, duration)
    for workers in WORKERS:
        with _served(ctx, f"wrk-{workers}", workers) as (base, process, script):
            out["c"][str(workers)] = _sweep(base, script, {"server_process": process.pid}, duration)
    for workers, sweep in out["c"].items():
        ops = [sweep[str(c)].get("ops_per_s") for c in CONNECTIONS]
        out["ratios"][workers] = {
            "c/d": {connections: ratio(result.get("ops_per_s"), out["d"][connections].get("ops_per_s")) for connections, result in sweep.items()},
            # Each step of connections against the one before it (4/1, 16/4, 64/16), and each against one connection.
            "step": {f"{now}/{before}": ratio(ops[n + 1], ops[n]) for n, (before, now) in enumerate(zip(CONNECTIONS, CONNECTIONS[1:], strict=False))},
            "vs_one": {f"{now}/1": ratio(ops[n], ops[0]) for n, now in enumerate(CONNECTIONS) if n},
        }
    return out


def profile(ctx: Context, duration: float, connections: int = 64) -> dict[str, Any]:
    """cProfile of every thread of one serve process (SQLite) under wrk at 64 connections."""
    if shutil.which("wrk") is None:
        return {"skipped": "wrk is not installed"}
    prof_file = ctx.workdir / "serve-wrk.prof"
    with _served(ctx, "wrk-prof", profile_to=prof_file) as (base, _process, script):
        result = wrk(base, script, connections, duration)
    return {"load": {"connections": connections, **result}, **summarise(prof_file, top=16), "by_library": by_library(prof_file)}
