"""Run a `dealflow` command with every thread profiled.

    python -m bench.profiled OUT.prof serve --port 8001
    python -m bench.profiled OUT.prof notifier

The merged stats are written to OUT.prof when the file OUT.prof.request appears (the
benchmark creates it, waits for OUT.prof, then stops the process), or at exit. When
OUT.prof.reset appears, everything profiled so far (start-up, imports) is discarded.
"""

from __future__ import annotations

import sys
import threading
import time
from pathlib import Path

from bench.profiling import ThreadProfiler


def main() -> None:
    out = Path(sys.argv[1])
    request = Path(f"{out}.request")
    reset = Path(f"{out}.reset")
    profiler = ThreadProfiler()
    written = threading.Event()

    def on_request() -> None:
        while not request.exists():
            if reset.exists():
                reset.unlink()
                profiler.clear()
            time.sleep(0.05)
        profiler.dump(out, stop=False)
        written.set()

    # Started before the profiler, so its polling is not profiled.
    threading.Thread(target=on_request, daemon=True, name="bench-profile-dump").start()
    profiler.start()
    try:
        from dealflow.cli import app

        app(sys.argv[2:], prog_name="dealflow", standalone_mode=False)
    finally:
        if not written.is_set():
            profiler.dump(out)


if __name__ == "__main__":
    main()
