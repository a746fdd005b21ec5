"""The `dealflow` program's entry: the notifier's commands start without loading the deal service.

`dealflow notifier` and `dealflow alerts` import the notifier alone: half the modules of the whole
CLI (cli.py), so the notifier process starts sooner and its garbage collector has half as many
long-lived objects to keep track of (gc_tuning.py). Every other command, and `--help`, is the
whole CLI.
"""

from __future__ import annotations

import sys

NOTIFIER_COMMANDS = ("notifier", "alerts")


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    if args[:1] and args[0] in NOTIFIER_COMMANDS:
        from dealflow.notifier.cli import app  # noqa: PLC0415 - the point: nothing else is imported
    else:
        from dealflow.cli import app  # noqa: PLC0415
    app(args, prog_name="dealflow")
