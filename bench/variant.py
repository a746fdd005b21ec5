"""Run a `dealflow` command with a what-if applied in-process (the service's code is untouched).

    python -m bench.variant --gc-freeze -- notifier
    python -m bench.variant --gc-freeze -- serve --port 8001

--gc-freeze    import everything the process will use, collect, then gc.freeze(): start-up objects
               leave the cyclic garbage collector's generations, so full collections stop
               walking ~100k long-lived objects (tens of milliseconds each).
"""

from __future__ import annotations

import argparse
import gc
import sys


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.variant")
    parser.add_argument("--gc-freeze", action="store_true")
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args()
    command = [a for a in args.command if a != "--"]
    from dealflow.cli import app

    if args.gc_freeze:
        import dealflow.deal_lifecycle.entrypoints.http.app  # noqa: F401 - what uvicorn's factory would import later
        import dealflow.notifier.channels  # noqa: F401
        import dealflow.notifier.consumer  # noqa: F401

        gc.collect()
        gc.freeze()
    app(command, prog_name="dealflow")


if __name__ == "__main__":
    sys.exit(main())
