"""Run a `dealflow` command with a what-if applied in-process (the service's code is untouched).

    python -m bench.variant --gc-freeze -- notifier
    python -m bench.variant --memo-permit --gc-freeze -- serve --port 8001

--gc-freeze    import everything the process will use, collect, then gc.freeze(): start-up objects
               leave the cyclic garbage collector's generations, so full collections stop
               walking ~100k long-lived objects (tens of milliseconds each).
--memo-permit  answer the lifecycle's permit(stage, command) from a cache for commands without a
               validator context, instead of building a python-statemachine StateChart each time.
"""

from __future__ import annotations

import argparse
import gc
import sys
from collections.abc import Callable
from typing import Any


def memoize_permit() -> None:
    from dealflow.deal_lifecycle.domain import deal as deal_module

    original: Callable[..., str] = deal_module.permit
    cache: dict[tuple[str, str], str] = {}

    def permit(stage: str, command: str, **context: Any) -> str:
        if context:
            return original(stage, command, **context)
        key = (str(stage), command)
        if key not in cache:
            cache[key] = original(stage, command)  # a refusal raises and is not cached
        return cache[key]

    deal_module.permit = permit  # type: ignore[assignment]


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.variant")
    parser.add_argument("--gc-freeze", action="store_true")
    parser.add_argument("--memo-permit", action="store_true")
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args()
    command = [a for a in args.command if a != "--"]
    from dealflow.cli import app

    if args.memo_permit:
        memoize_permit()
    if args.gc_freeze:
        import dealflow.deal_lifecycle.entrypoints.http.app  # noqa: F401 - what uvicorn's factory would import later
        import dealflow.notifier.channels  # noqa: F401
        import dealflow.notifier.consumer  # noqa: F401

        gc.collect()
        gc.freeze()
    app(command, prog_name="dealflow")


if __name__ == "__main__":
    sys.exit(main())
