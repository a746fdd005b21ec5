"""`python -m bench [--quick] [--only NAME[,NAME...]] [--output-dir bench]`

Runs the scenarios, measures (never asserts) speed, and writes RESULTS.md and results.json.
Exits non-zero only if a scenario (or a profile of a missed target) crashed.
"""

from __future__ import annotations

import argparse
import json
import shutil
import signal
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from . import event_to_alert, group_commit, notifier, read_model, relay, replay, write_path, wrk_http
from .common import Context, drop_leftover_schemas, machine_info, pg_reachable, quiet_service_logging, stop_all_children
from .report import write_markdown
from .targets import evaluate

SCENARIOS: dict[str, Callable[[Context], dict[str, Any]]] = {
    "write_path": write_path.run,
    "event_to_alert": event_to_alert.run,
    "relay": relay.run,
    "replay": replay.run,
    "read_model": read_model.run,
    "notifier": notifier.run,
    "group_commit": group_commit.run,
    "wrk_http": wrk_http.run,
}

# What to profile when a target is missed (full run), or always with tiny sizes (quick run).
PROFILES: dict[str, Callable[[Context], dict[str, Any]]] = {
    "write_in_process": lambda ctx: write_path.profile_in_process(ctx, ctx.size(100, 2000)),
    "write_http": lambda ctx: write_path.profile_http(ctx, ctx.size(0.5, 3.0)),
    "event_to_alert": lambda ctx: event_to_alert.profile(ctx, ctx.extra.get("e2a_sustained_rate", ctx.size(50.0, 300.0)), ctx.size(1.0, 8.0)),
    "relay": lambda ctx: relay.profile(ctx, ctx.size(1000, 20_000)),
    "replay": lambda ctx: replay.profile(ctx, ctx.size(1000, 10_000), ctx.size(3, 20)),
    "read_model": lambda ctx: read_model.profile(ctx, ctx.size(10_000, 1_000_000), ctx.size(10, 100)),
    "notifier": lambda ctx: notifier.profile(ctx, *ctx.size((1, 100), (5, 200))),
    "group_commit": lambda ctx: group_commit.profile(ctx, ctx.size(0.3, 3.0)),
    "wrk_http": lambda ctx: wrk_http.profile(ctx, ctx.size(1.0, 5.0)),
}


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="tiny sizes, every scenario, about a minute and a half: a smoke test")
    parser.add_argument("--only", default=None, help=f"comma-separated scenarios: {', '.join(SCENARIOS)}")
    parser.add_argument("--output-dir", default="bench", type=Path, help="where RESULTS.md and results.json go (default: bench)")
    parser.add_argument("--no-profiles", action="store_true", help="skip profiling missed targets")
    args = parser.parse_args(argv)
    if args.only:
        unknown = [n for n in args.only.split(",") if n not in SCENARIOS]
        if unknown:
            parser.error(f"unknown scenario(s) {', '.join(unknown)}; choose from {', '.join(SCENARIOS)}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse(sys.argv[1:] if argv is None else argv)
    selected = args.only.split(",") if args.only else list(SCENARIOS)
    started = time.perf_counter()
    workdir = Path(tempfile.mkdtemp(prefix="dealflow-bench-"))
    pg_ok, pg_note = pg_reachable()
    ctx = Context(quick=args.quick, workdir=workdir, output_dir=args.output_dir, pg_ok=pg_ok, pg_note=pg_note)
    if not pg_ok:
        ctx.notes.append(pg_note)

    def interrupted(signum: int, _: object) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, interrupted)
    quiet_service_logging()
    results: dict[str, Any] = {
        "mode": "quick" if args.quick else "full",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine_info(),
        "postgres": pg_note,
        "scenarios": {},
        "timings_s": {},
        "errors": {},
        "profiles": {},
    }
    try:
        for name in selected:
            log(f"scenario {name} ...")
            t0 = time.perf_counter()
            try:
                results["scenarios"][name] = SCENARIOS[name](ctx)
            except Exception:  # noqa: BLE001 - recorded; the run goes on and exits non-zero
                results["errors"][name] = traceback.format_exc()
                log(f"scenario {name} CRASHED:\n{results['errors'][name]}")
            finally:
                stop_all_children()
                results["timings_s"][name] = round(time.perf_counter() - t0, 1)
                log(f"scenario {name} done in {results['timings_s'][name]} s")
        results["targets"] = evaluate(results, quick=args.quick)
        if not args.no_profiles:
            # Quick: every profile of the selected scenarios, tiny, so CI exercises them. Full: only for missed targets.
            judged = [
                t for t in results["targets"]
                if t["scenario"] in selected and t["status"] != "not measured" and (args.quick or t["status"] == "missed")
            ]
            wanted = {p for t in judged for p in t["profiles"]}
            if args.quick:
                # The profiled serve and notifier processes are exercised by write_http and notifier already;
                # the full pipeline again would cost the quick run ~7 s.
                wanted.discard("event_to_alert")
            if "notifier" in selected:
                wanted.add("notifier")  # no target, but its scaling is worth explaining
            for name in [p for p in PROFILES if p in wanted]:
                log(f"profile {name} ...")
                t0 = time.perf_counter()
                try:
                    results["profiles"][name] = PROFILES[name](ctx)
                except Exception:  # noqa: BLE001
                    results["errors"][f"profile {name}"] = traceback.format_exc()
                    log(f"profile {name} CRASHED:\n{results['errors'][f'profile {name}']}")
                finally:
                    stop_all_children()
                    results["timings_s"][f"profile {name}"] = round(time.perf_counter() - t0, 1)
        results["notes"] = ctx.notes
        results["total_s"] = round(time.perf_counter() - started, 1)
        args.output_dir.mkdir(parents=True, exist_ok=True)
        (args.output_dir / "results.json").write_text(json.dumps(results, indent=2, default=str) + "\n")
        write_markdown(results, args.output_dir / "RESULTS.md")
        log(f"wrote {args.output_dir / 'RESULTS.md'} and results.json in {results['total_s']} s")
    finally:
        stop_all_children()
        drop_leftover_schemas()
        shutil.rmtree(workdir, ignore_errors=True)
    if results["errors"]:
        log(f"FAILED: {', '.join(results['errors'])}")
        return 1
    return 0


def log(message: str) -> None:
    print(f"[bench {datetime.now().strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


if __name__ == "__main__":
    sys.exit(main())
