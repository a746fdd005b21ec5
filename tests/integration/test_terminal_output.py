"""What people read from the command line, run as they run it, on a deal whose values are hostile.

The values are written through the service with validation bypassed (`model_construct`):
history written before today's validation may hold anything, and must still be shown as text.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from uuid import UUID

import pytest

from dealflow.deal_lifecycle.application import commands as c
from dealflow.deal_lifecycle.application.service import DealService
from dealflow.deal_lifecycle.config import Settings
from dealflow.notifier.alerts import DealContext, compose
from dealflow.notifier.rules import Target
from dealflow.notifier.store import AlertStore
from dealflow.terminal import printable
from tests.support import POLICY, POLICY_FILE, ROLES
from tests.processes import clean_environment

DEALFLOW = [sys.executable, "-m", "dealflow"]
MARKUP = "[/bold][link=https://evil.example]click here[/link]"
ANSI = "\x1b[31mred\x1b[8mhidden\x1b[0m"
OSC8 = "\x1b]8;;https://evil.example\x1b\\click\x1b]8;;\x1b\\"
FORGED_LINE = "ok\n2026-11-23T09:00:00Z  00000000  v1    ContractSigned               by ceo"
BIDI = "invoice\u202egnp.exe"
# Control, C1, bidi and line-separator characters: none may reach the terminal from a caller's value.
RAW = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069\u2028\u2029]")


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    environment = {k: v for k, v in clean_environment().items() if k != "FORCE_COLOR"}
    environment.update(
        DEALFLOW_SQLITE_PATH=str(tmp_path / "deals.sqlite3"),
        DEALFLOW_POLICY=str(POLICY_FILE),
        DEALFLOW_NOTIFIER_DB=str(tmp_path / "notifier.sqlite3"),
    )
    return environment


def dealflow(env: dict[str, str], *arguments: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*DEALFLOW, *arguments], env=env, capture_output=True, text=True, timeout=60, check=False)


@pytest.fixture
def hostile_deal(env: dict[str, str]) -> UUID:
    deals = DealService(env=Settings(sqlite_path=Path(env["DEALFLOW_SQLITE_PATH"])).eventsourcing_env(), policy=POLICY)
    try:
        actor = c.CommandContext(actor=ANSI, correlation_id=OSC8, roles=frozenset(ROLES))
        opened = deals.handle("open_deal", None, c.OpenDeal.model_construct(title=MARKUP, client_name=BIDI, owner=FORGED_LINE), actor)
        deal_id = opened.deal.id
        deals.handle("sign_letter_of_intent", deal_id, None, actor)
        deals.handle("walk_away", deal_id, c.WalkAway.model_construct(reason=FORGED_LINE + OSC8, cited_conditions=[]), actor)
        return deal_id
    finally:
        deals.close()


def test_history_shows_hostile_values_as_text(env: dict[str, str], hostile_deal: UUID) -> None:
    shown = dealflow(env, "history", str(hostile_deal))
    assert shown.returncode == 0, shown.stderr  # Rich markup in a value used to crash it
    assert RAW.search(shown.stdout) is None
    assert "[/bold][link=https://evil.example]" in shown.stdout  # shown as written, not interpreted
    assert "\\x1b[31mred" in shown.stdout
    # Every line is the table's own: a title, a border or a row; the forged event line is inside a cell.
    assert all(text.lstrip()[:1] in ("", "D", "┏", "┃", "┡", "│", "└") for text in shown.stdout.splitlines()), shown.stdout
    assert "reason=ok\\n2026-11-23T09:00:00Z" in shown.stdout


def test_history_on_a_colour_terminal_plants_no_escape_of_the_callers(env: dict[str, str], hostile_deal: UUID) -> None:
    shown = dealflow({**env, "FORCE_COLOR": "1"}, "history", str(hostile_deal))
    assert shown.returncode == 0, shown.stderr
    for planted in ("\x1b]8;", "\x1b[8m", "\x1b[31mred", "\u202e", "\r"):
        assert planted not in shown.stdout


def test_show_and_export_stay_valid_json_holding_the_exact_values(env: dict[str, str], hostile_deal: UUID, tmp_path: Path) -> None:
    shown = dealflow(env, "show", str(hostile_deal))
    assert shown.returncode == 0, shown.stderr
    assert RAW.search(shown.stdout.replace("\n", "")) is None
    deal = json.loads(shown.stdout)
    assert (deal["title"], deal["client_name"], deal["owner"]) == (MARKUP, BIDI, FORGED_LINE)

    exported = dealflow(env, "export", str(hostile_deal))
    assert exported.returncode == 0, exported.stderr
    lines = exported.stdout.splitlines()
    assert len(lines) == 3
    assert RAW.search("".join(lines)) is None
    assert all(isinstance(json.loads(text), dict) for text in lines)


def test_alerts_listing_shows_hostile_values_as_text_and_json_keeps_them(env: dict[str, str]) -> None:
    event = {
        "deal_id": "5f0c2b1e-0000-0000-0000-000000000000",
        "version": 3,
        "type": "WalkedAway",
        "timestamp": "2026-11-23T09:00:01.123456+00:00",
        "actor": ANSI,
        "correlation_id": "c",
        "data": {"reason": FORGED_LINE},
    }
    target = Target(rule="walked away", recipient="owner", channel="mail", address=f"{FORGED_LINE}@firm.example", urgency="urgent")
    alert = compose(event, "5f0c2b1e:3", DealContext(event["deal_id"], MARKUP, BIDI, FORGED_LINE), target)
    store = AlertStore(sqlite_path=Path(env["DEALFLOW_NOTIFIER_DB"]))
    try:
        # The error is what a webhook receiver answered: outside text, like the address.
        store.record_outcome(alert, "dead", 3, f"webhook answered 500: {OSC8}{FORGED_LINE}")
        store.record_dead_letter("m-1", f"deals.events.x.{BIDI}", f"invalid: {ANSI}{FORGED_LINE}", "{}")
    finally:
        store.close()

    listed = dealflow(env, "alerts", "--failed")
    assert listed.returncode == 0, listed.stderr
    assert RAW.search(listed.stdout.replace("\n", "")) is None
    assert len(listed.stdout.splitlines()) == 2  # one alert, one dead letter: no forged lines
    assert printable(FORGED_LINE) in listed.stdout

    as_json = dealflow(env, "alerts", "--failed", "--json")
    records = [json.loads(text) for text in as_json.stdout.splitlines()]
    assert records[0]["address"] == f"{FORGED_LINE}@firm.example"
    assert records[1]["reason"] == f"invalid: {ANSI}{FORGED_LINE}"
