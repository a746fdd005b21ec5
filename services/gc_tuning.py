"""The garbage collector set up for a long-running service process (`dealflow serve`, `dealflow notifier`).

CPython's cyclic collector runs a young collection every 700 net allocations and, now and then, a
full one that walks every object the process holds: after start-up that is the imported modules,
the app, the policy and the schemas, tens of thousands of objects that live as long as the process.
Those walks are pauses on the event loop, so every request or alert behind one waits
(bench/RESULTS.md measures command-to-alert latency).

Once a process has started, what it built is frozen out of the collector (`gc.freeze()`: never
scanned again, never freed, as it never would be anyway), and young collections run less often, so
a command's few thousand short-lived objects are mostly freed by reference counting before a
collection ever looks at them. Cycles are still collected: only less often.
"""

from __future__ import annotations

import gc

# Net allocations between young collections (CPython's default: 700).
YOUNG_THRESHOLD = 20_000


def settle_after_start_up() -> None:
    """Call once, when the process has started and before it serves."""
    gc.collect()
    gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(YOUNG_THRESHOLD, middle, old)
