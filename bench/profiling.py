"""cProfile for every thread (the services run their handlers in worker threads), and summaries."""

from __future__ import annotations

import cProfile
import io
import marshal
import pstats
import sys
import threading
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


class _Snapshot:
    """What pstats.Stats accepts, without disabling a profiler that runs in another thread."""

    def __init__(self, profile: cProfile.Profile) -> None:
        profile.snapshot_stats()
        self.stats = profile.stats  # type: ignore[attr-defined]

    def create_stats(self) -> None:
        return None


class ThreadProfiler:
    """Profiles the calling thread and every thread started after start()."""

    def __init__(self) -> None:
        self.profiles: list[cProfile.Profile] = []
        self._lock = threading.Lock()
        self._main: cProfile.Profile | None = None

    def _install(self, *_: Any) -> None:
        sys.setprofile(None)
        profile = cProfile.Profile()
        with self._lock:
            self.profiles.append(profile)
        profile.enable()

    def start(self) -> ThreadProfiler:
        threading.setprofile(self._install)
        self._main = cProfile.Profile()
        self.profiles.append(self._main)
        self._main.enable()
        return self

    def clear(self) -> None:
        """Forget what was profiled so far (every thread keeps profiling)."""
        with self._lock:
            for profile in self.profiles:
                profile.clear()

    def stop(self, *, disable: bool = True) -> pstats.Stats:
        """The merged stats; disable=False leaves every profiler running (safe from any thread)."""
        if disable:
            threading.setprofile(None)  # type: ignore[arg-type]
            if self._main is not None:
                self._main.disable()
        with self._lock:
            snapshots = [_Snapshot(p) for p in self.profiles]
        stats = pstats.Stats(snapshots[0], stream=io.StringIO())
        for snap in snapshots[1:]:
            stats.add(snap)
        return stats

    def dump(self, path: Path, *, stop: bool = True) -> None:
        stats = self.stop(disable=stop)
        partial = Path(f"{path}.partial")
        with partial.open("wb") as f:
            marshal.dump(stats.stats, f)  # type: ignore[attr-defined]
        partial.rename(path)


# Builtins in which a thread waits rather than works: a worker thread idling on its queue, the
# event loop in epoll, a lock. They are reported apart, not as where the time goes.
_WAITS = (
    "'acquire' of '_thread.lock'", "'get' of '_queue.SimpleQueue'", "time.sleep", "'poll' of 'select.epoll'",
    "'select' of 'select.epoll'", "run_until_complete", "'control' of 'select.kqueue'",
)


def _is_wait(filename: str, name: str) -> bool:
    return filename == "~" and any(w in name for w in _WAITS)


def _where(filename: str, line: int, name: str) -> str:
    path = filename
    for marker in ("site-packages/", str(ROOT) + "/"):
        if marker in path:
            path = path.split(marker, 1)[1]
            break
    if path.startswith("~") or path == "<built-in>":
        return name
    return f"{name} ({path}:{line})"


def summarise(stats: pstats.Stats | Path, *, top: int = 12, project_top: int = 10) -> dict[str, Any]:
    """Top functions by own time, and the project's functions by cumulative time."""
    if isinstance(stats, Path):
        stats = pstats.Stats(str(stats), stream=io.StringIO())
    raw: dict[Any, Any] = stats.stats  # type: ignore[attr-defined]
    waiting = sum(tt for (f, _, n), (_, _, tt, _, _) in raw.items() if _is_wait(f, n))
    total = (sum(tt for (_, _, tt, _, _) in raw.values()) - waiting) or 1e-9
    rows = []
    for (filename, line, name), (cc, nc, tt, ct, _) in raw.items():
        if _is_wait(filename, name):
            continue
        rows.append({"function": _where(filename, line, name), "file": filename, "calls": nc, "tottime_s": tt, "cumtime_s": ct})
    by_own = sorted(rows, key=lambda r: r["tottime_s"], reverse=True)[:top]
    project = [r for r in rows if "/services/" in r["file"] and "site-packages" not in r["file"]]
    by_cum = sorted(project, key=lambda r: r["cumtime_s"], reverse=True)[:project_top]
    clean = lambda r: {  # noqa: E731
        "function": r["function"], "calls": r["calls"], "tottime_s": round(r["tottime_s"], 4),
        "cumtime_s": round(r["cumtime_s"], 4), "own_share": round(r["tottime_s"] / total, 3),
    }
    return {"total_profiled_s": round(total, 3), "waiting_s": round(waiting, 3), "top_own_time": [clean(r) for r in by_own], "project_cumulative": [clean(r) for r in by_cum]}


def by_library(stats: pstats.Stats | Path) -> list[dict[str, Any]]:
    """Own time grouped by where the code lives: which library (or the project, or builtins)."""
    if isinstance(stats, Path):
        stats = pstats.Stats(str(stats), stream=io.StringIO())
    raw: dict[Any, Any] = stats.stats  # type: ignore[attr-defined]
    groups: dict[str, float] = {}
    for (filename, _, name), (_, _, tt, _, _) in raw.items():
        if _is_wait(filename, name):
            continue
        if "site-packages/" in filename:
            group = filename.split("site-packages/", 1)[1].split("/", 1)[0].removesuffix(".py")
        elif "/services/" in filename:
            group = "services (dealflow)"
        elif "/bench/" in filename:
            group = "bench (load generator)"
        elif filename == "~":
            group = "builtin " + _builtin_group(name)
        else:
            group = "stdlib: " + Path(filename).stem
        groups[group] = groups.get(group, 0.0) + tt
    total = sum(groups.values()) or 1e-9
    ordered = sorted(groups.items(), key=lambda kv: kv[1], reverse=True)[:14]
    return [{"where": k, "own_s": round(v, 4), "share": round(v / total, 3)} for k, v in ordered]


def _builtin_group(name: str) -> str:
    """`<method 'execute' of 'sqlite3.Cursor' objects>` -> `sqlite3.Cursor.execute`; idle waits stay visible."""
    if name.startswith("<method '") and " of '" in name:
        method = name.split("'")[1]
        owner = name.split(" of '", 1)[1].split("'")[0]
        return f"{owner}.{method}"
    if name.startswith("<built-in method "):
        return name.removeprefix("<built-in method ").rstrip(">").split(" ")[0]
    return name
