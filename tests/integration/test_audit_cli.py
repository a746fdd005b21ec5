"""The auditors' commands and the live stream, as users run them: real processes, a real SQLite file."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from uuid import UUID

import httpx
import pytest

from dealflow.deal_lifecycle.adapters.embedded_nats import free_port
from dealflow.deal_lifecycle.domain.lifecycle import DealLifecycle
from tests.processes import clean_environment, serving, start, stop
from tests.support import bearer, POLICY_FILE

DEALFLOW = [sys.executable, "-m", "dealflow"]


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    environment = clean_environment()
    environment.update(DEALFLOW_SQLITE_PATH=str(tmp_path / "deals.sqlite3"), DEALFLOW_POLICY=str(POLICY_FILE))
    return environment


@pytest.fixture
def base_url(env: dict[str, str], tmp_path: Path) -> Iterator[str]:
    with serving(env, tmp_path / "serve.log") as url:
        yield url


def dealflow(env: dict[str, str], *arguments: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*DEALFLOW, *arguments], env=env, capture_output=True, text=True, timeout=60, check=False)


def make_history(url: str) -> str:
    deal_id = httpx.post(f"{url}/deals", json={"title": "Acme payroll", "client_name": "Acme Ltd", "owner": "ann"}, headers=bearer(sub="ann@firm")).json()["id"]
    httpx.post(f"{url}/deals/{deal_id}/letter-of-intent", headers=bearer(sub="bob@firm"))
    httpx.post(f"{url}/deals/{deal_id}/terms", json={"term": "payment_terms_days", "value": 90, "by": "client"}, headers=bearer(sub="crm"))
    return deal_id


def test_history_show_export_and_verify_from_the_command_line(base_url: str, env: dict[str, str], tmp_path: Path) -> None:
    deal_id = make_history(base_url)
    history = dealflow(env, "history", deal_id)
    assert history.returncode == 0, history.stderr
    for expected in ("DealOpened", "LetterOfIntentSigned", "TermProposed", "WalkAwayConditionRaised", "bob@firm", "term=payment_terms_days"):
        assert expected in history.stdout

    then = dealflow(env, "show", deal_id, "--version", "2")
    assert then.returncode == 0, then.stderr
    shown = json.loads(then.stdout)
    assert (shown["version"], shown["stage"], shown["conditions"]["open"]) == (2, "letter_of_intent", [])
    now = json.loads(dealflow(env, "show", deal_id).stdout)
    assert "open_walk_away_condition" in [b["code"] for b in now["blockers"]]
    events = httpx.get(f"{base_url}/deals/{deal_id}/events", headers=bearer()).json()["events"]
    at = json.loads(dealflow(env, "show", deal_id, "--as-of", events[0]["timestamp"]).stdout)
    assert (at["version"], at["stage"]) == (1, "prospect")

    exported = tmp_path / "deal.jsonl"
    assert dealflow(env, "export", deal_id, "--format", "jsonl", "-o", str(exported)).returncode == 0
    assert len(exported.read_text().splitlines()) == 4
    checked = dealflow(env, "verify", "--export", str(exported))
    assert (checked.returncode, checked.stdout.split(":")[0]) == (0, "1 stream, 4 exported events, intact"), checked.stdout
    lines = [json.loads(line) for line in exported.read_text().splitlines()]
    lines[1]["stored_b64"] = lines[0]["stored_b64"]
    exported.write_text("\n".join(json.dumps(line) for line in lines) + "\n")
    tampered = dealflow(env, "verify", "--export", str(exported))
    assert tampered.returncode == 1 and "at version 2" in tampered.stdout

    assert dealflow(env, "verify", deal_id, "--no-checkpoints").returncode == 0
    everything = dealflow(env, "verify", "--all", "--read-model", "--no-checkpoints")
    assert everything.returncode == 0, everything.stdout + everything.stderr
    assert "intact" in everything.stdout
    assert httpx.get(f"{base_url}/deals/{deal_id}/verify", headers=bearer()).json() == {"deal_id": deal_id, "intact": True, "events": 4, "problem": None}


def test_the_diagram_is_an_image_and_mermaid_naming_every_stage_and_transition(env: dict[str, str], tmp_path: Path) -> None:
    image = tmp_path / "lifecycle.svg"
    done = dealflow(env, "diagram", "--output", str(image))
    assert done.returncode == 0, done.stderr
    texts = [t.text for t in ET.fromstring(image.read_text()).iter("{http://www.w3.org/2000/svg}text")]
    for stage in DealLifecycle.states_map:
        assert stage in texts
        assert f"as {stage}" in done.stdout
    for label in ("sign letter of intent", "hold transition meeting", "sign contract", "walk away"):
        assert label in texts
    for line in ("prospect --> letter_of_intent", "transition_meeting --> contract_signed", "letter_of_intent --> walked_away"):
        assert line in done.stdout


def read_events(url: str, received: list[dict[str, Any]], stop_after: int, headers: dict[str, str] | None = None) -> str:
    """Read the stream until `stop_after` events arrived; returns the last event id (then disconnects)."""
    last_id = ""
    with httpx.stream("GET", f"{url}/stream", headers={**bearer(), **(headers or {})}, timeout=30) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        for line in response.iter_lines():
            if line.startswith("id: "):
                last_id = line.removeprefix("id: ")
            elif line.startswith("data: "):
                received.append(json.loads(line.removeprefix("data: ")))
                if len(received) >= stop_after:
                    return last_id
    return last_id


def test_a_stream_client_that_reconnects_with_last_event_id_receives_every_event_once(base_url: str) -> None:
    first: list[dict[str, Any]] = []
    holder: list[str] = []
    reader = threading.Thread(target=lambda: holder.append(read_events(base_url, first, 2)))
    reader.start()
    time.sleep(0.5)  # connected: the stream starts from now
    deal_id = make_history(base_url)  # DealOpened, LetterOfIntentSigned, TermProposed, WalkAwayConditionRaised
    reader.join(timeout=20)
    assert [e["type"] for e in first] == ["DealOpened", "LetterOfIntentSigned"]
    # Disconnected; more happens meanwhile.
    httpx.post(f"{base_url}/deals/{deal_id}/walk-away", headers=bearer(), json={"reason": "no fit"})
    rest: list[dict[str, Any]] = []
    read_events(base_url, rest, 3, headers={"Last-Event-ID": holder[0]})
    assert [e["type"] for e in rest] == ["TermProposed", "WalkAwayConditionRaised", "WalkedAway"]
    assert [(e["deal_id"], e["version"]) for e in first + rest] == [(deal_id, v) for v in range(1, 6)]


def test_the_stream_filters_by_deal_and_type(base_url: str) -> None:
    received: list[dict[str, Any]] = []
    first = make_history(base_url)
    second = make_history(base_url)
    with httpx.stream("GET", f"{base_url}/stream", params={"deal": second, "type": "WalkAwayConditionRaised"}, headers={**bearer(), "Last-Event-ID": "0"}, timeout=30) as response:
        for line in response.iter_lines():
            if line.startswith("data: "):
                received.append(json.loads(line.removeprefix("data: ")))
                break
    assert [(e["deal_id"], e["type"]) for e in received] == [(second, "WalkAwayConditionRaised")]
    assert first != second


def test_verify_says_when_it_could_not_compare_with_checkpoints(base_url: str, env: dict[str, str]) -> None:
    make_history(base_url)
    nowhere = {**env, "NATS_URL": f"nats://127.0.0.1:{free_port()}"}
    unreachable = dealflow(nowhere, "verify", "--all")
    assert unreachable.returncode == 3, unreachable.stdout + unreachable.stderr
    assert "checkpoints: not compared: cannot reach NATS" in unreachable.stdout
    assert "store-wide chain: 4 entries" in unreachable.stdout and "intact" in unreachable.stdout
    without = dealflow(nowhere, "verify", "--all", "--no-checkpoints")
    assert without.returncode == 0, without.stdout
    assert "checkpoints: not compared (--no-checkpoints)" in without.stdout


def test_verify_compares_the_store_with_the_checkpoints_the_service_published(env: dict[str, str], tmp_path: Path, nats_server: Any) -> None:
    from dealflow.deal_lifecycle.application.service import DealService  # noqa: PLC0415
    from dealflow.deal_lifecycle.config import Settings  # noqa: PLC0415
    from tests.integration.test_checkpoints import checkpoints_of, edit_and_recompute  # noqa: PLC0415
    from tests.support import POLICY  # noqa: PLC0415

    with_nats = {**env, "NATS_URL": nats_server.url, "DEALFLOW_CHECKPOINT_SECONDS": "0.2"}
    process, url = start(with_nats, tmp_path / "serve.log", "serve")
    settings = Settings(sqlite_path=Path(env["DEALFLOW_SQLITE_PATH"]))
    deals = DealService(env=settings.eventsourcing_env(), policy=POLICY)
    try:
        deal_id = make_history(url)
        deadline = time.monotonic() + 20
        while not any(c.seq == 4 for c in checkpoints_of(deals, nats_server.url)):
            assert time.monotonic() < deadline, (tmp_path / "serve.log").read_text()
            time.sleep(0.1)
    finally:
        stop(process)
    try:
        checked = dealflow(with_nats, "verify", "--all")
        assert checked.returncode == 0, checked.stdout + checked.stderr
        assert "anchors entries 1 to 4 of 4" in checked.stdout
        assert f"signatures checked with {tmp_path / 'checkpoint.key'}" in checked.stdout

        edit_and_recompute(deals, settings, UUID(deal_id))
        tampered = dealflow(with_nats, "verify", "--all")
        assert tampered.returncode == 1, tampered.stdout
        assert "checkpoints: rewritten at entry 4" in tampered.stdout
        assert dealflow(with_nats, "verify", "--all", "--no-checkpoints").returncode == 0, "the database alone agrees with itself"
    finally:
        deals.close()


def test_read_only_commands_on_a_missing_store_name_it_and_create_nothing(tmp_path: Path) -> None:
    environment = clean_environment()
    missing = tmp_path / "elsewhere" / "deals.sqlite3"
    alerts_db = tmp_path / "elsewhere" / "notifier.sqlite3"
    # No policy either: reading the record needs none.
    environment.update(DEALFLOW_SQLITE_PATH=str(missing), DEALFLOW_NOTIFIER_DB=str(alerts_db), DEALFLOW_POLICY=str(tmp_path / "no-policy.toml"))
    deal_id = "00000000-0000-4000-8000-000000000001"
    for arguments, path in (
        (("verify", "--all", "--no-checkpoints"), missing),
        (("verify", deal_id, "--no-checkpoints"), missing),
        (("history", deal_id), missing),
        (("show", deal_id), missing),
        (("export", deal_id), missing),
        (("alerts",), alerts_db),
    ):
        result = dealflow(environment, *arguments)
        assert result.returncode == 2, (arguments, result.stdout, result.stderr)
        assert str(path) in result.stderr and "intact" not in result.stdout, (arguments, result.stderr)
    assert not (tmp_path / "elsewhere").exists()


def test_refused_signings_are_their_own_log_in_events_history_export_and_on_the_stream(base_url: str, env: dict[str, str], tmp_path: Path) -> None:
    received: list[dict[str, Any]] = []
    reader = threading.Thread(target=lambda: read_events(base_url, received, 6))
    reader.start()
    time.sleep(0.5)  # connected: the stream starts from now
    deal_id = make_history(base_url)  # versions 1 to 4
    for actor in ("esign", "ann@firm"):
        assert httpx.post(f"{base_url}/deals/{deal_id}/contract", headers=bearer(sub=actor)).status_code == 409
    reader.join(timeout=20)
    # On the stream a refusal reads beside the deal's versions; its place in the log is `attempt`.
    assert [(e["type"], e["version"], e.get("attempt")) for e in received[4:]] == [("SigningRefused", 4, 1), ("SigningRefused", 4, 2)]

    history = httpx.get(f"{base_url}/deals/{deal_id}/events", headers=bearer()).json()
    assert [e["version"] for e in history["events"]] == [1, 2, 3, 4]
    # Numbers read the same in every view: the term's limit (a float in the event) is 60 here as in the deal.
    raised = history["events"][3]["data"]["evidence"]
    assert (raised["value"], raised["limit"]) == (90, 60) and "60.0" not in json.dumps(history)
    assert "60.0" not in httpx.get(f"{base_url}/deals/{deal_id}", headers=bearer()).text
    refused = history["refused_signings"]
    assert [(r["attempt"], r["deal_version"], r["actor"]) for r in refused] == [(1, 4, "esign"), (2, 4, "ann@firm")]
    assert "open_walk_away_condition" in [b["code"] for b in refused[0]["blockers"]] and refused[0]["timestamp"]

    # The auditors' commands read without the policy file.
    no_policy = {**env, "DEALFLOW_POLICY": str(tmp_path / "no-policy.toml")}
    listing = dealflow(no_policy, "history", deal_id)
    assert listing.returncode == 0, listing.stderr
    deal_part, _, attempts_part = listing.stdout.partition("Refused signings")
    assert "SigningRefused" not in deal_part and "esign" in attempts_part and "ann@firm" in attempts_part
    assert "open_walk_away_condition" in attempts_part
    # JSON values, not Python reprs; a term of 90 reads 90.
    assert "value=90," in deal_part and "90.0" not in deal_part
    for python_repr in ("None", "False", "True", "{'"):
        assert python_repr not in listing.stdout, python_repr

    exported = tmp_path / "deal.jsonl"
    assert dealflow(no_policy, "export", deal_id, "-o", str(exported)).returncode == 0
    lines = [json.loads(line) for line in exported.read_text().splitlines()]
    assert [(line["log"], line["type"]) for line in lines[4:]] == [
        ("refused_signings", "SigningAttemptsStarted"), ("refused_signings", "SigningRefused"), ("refused_signings", "SigningRefused")
    ]
    assert [line.get("attempt") for line in lines[5:]] == [1, 2] and {line["log"] for line in lines[:4]} == {"deal"}
    checked = dealflow(no_policy, "verify", "--export", str(exported))
    assert (checked.returncode, checked.stdout.split(":")[0]) == (0, "2 streams, 7 exported events, intact"), checked.stdout
    # Each stream's chain is still checked: the deal's, and the log's.
    for index in (1, 6):
        tampered_lines = [dict(line) for line in lines]
        tampered_lines[index]["stored_b64"] = tampered_lines[index - 1]["stored_b64"]
        tampered = tmp_path / f"tampered-{index}.jsonl"
        tampered.write_text("\n".join(json.dumps(line) for line in tampered_lines) + "\n")
        result = dealflow(no_policy, "verify", "--export", str(tampered))
        assert result.returncode == 1 and tampered_lines[index]["originator_id"] in result.stdout, result.stdout

    everything = dealflow(no_policy, "verify", "--all", "--no-checkpoints")
    assert everything.returncode == 0, everything.stdout + everything.stderr
    assert "2 streams (deals and their logs of refused signings), 7 events, intact" in everything.stdout
    one = dealflow(no_policy, "verify", deal_id, "--no-checkpoints")
    assert "2 streams (the deal's and its refused signings), 7 events, intact" in one.stdout, one.stdout


def test_history_says_beside_the_listing_when_the_deal_chain_is_broken(base_url: str, env: dict[str, str]) -> None:
    import sqlite3

    deal_id = make_history(base_url)
    assert "chain broken" not in dealflow(env, "history", deal_id).stdout
    with sqlite3.connect(env["DEALFLOW_SQLITE_PATH"]) as db:
        table = next(
            name for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
            if "originator_version" in {column[1] for column in db.execute(f"PRAGMA table_info({name})")} and "state" in {column[1] for column in db.execute(f"PRAGMA table_info({name})")} and "snapshot" not in name
        )
        # An actor rewritten after the fact: the stored bytes no longer match their link.
        (state,) = db.execute(f"SELECT state FROM {table} WHERE originator_version = 2").fetchone()
        db.execute(f"UPDATE {table} SET state = ? WHERE originator_version = 2", (bytes(state).replace(b"bob@firm", b"eve@firm"),))
    listing = dealflow(env, "history", deal_id)
    assert listing.returncode == 0, listing.stderr
    assert "eve@firm" in listing.stdout and "chain broken at version 2" in listing.stdout, listing.stdout


@pytest.mark.postgres
def test_read_only_commands_on_an_empty_postgres_schema_say_no_store_and_create_nothing(settings: Any, tmp_path: Path) -> None:
    if settings.database_url is None:
        pytest.skip("the SQLite case is the test above")
    import psycopg  # noqa: PLC0415

    environment = clean_environment()
    environment.update(
        DEALFLOW_DATABASE_URL=settings.database_url,
        DEALFLOW_NOTIFIER_DATABASE_URL=settings.database_url,
        DEALFLOW_POLICY=str(tmp_path / "no-policy.toml"),
    )
    deal_id = "00000000-0000-4000-8000-000000000001"
    for arguments, says in (
        (("verify", "--all", "--no-checkpoints"), "no store: PostgreSQL"),
        (("verify", deal_id, "--no-checkpoints"), "no store: PostgreSQL"),
        (("history", deal_id), "no store: PostgreSQL"),
        (("show", deal_id), "no store: PostgreSQL"),
        (("export", deal_id), "no store: PostgreSQL"),
        (("alerts",), "no alert store: PostgreSQL"),
    ):
        result = dealflow(environment, *arguments)
        assert result.returncode == 2, (arguments, result.stdout, result.stderr)
        assert says in result.stderr and "intact" not in result.stdout, (arguments, result.stderr)
    schema = settings.database_url.rsplit("schema=", 1)[1]
    with psycopg.connect(settings.database_url.split("?")[0]) as conn:
        tables = conn.execute("SELECT count(*) FROM information_schema.tables WHERE table_schema = %s", (schema,)).fetchone()
    assert tables == (0,)


def test_read_only_commands_name_a_database_they_cannot_reach(tmp_path: Path) -> None:
    # A port where nothing listens: the same one line on every read-only command, never a traceback.
    unreachable = f"postgresql://postgres@127.0.0.1:{free_port()}/test"
    environment = clean_environment()
    environment.update(DEALFLOW_DATABASE_URL=unreachable, DEALFLOW_NOTIFIER_DATABASE_URL=unreachable)
    for arguments in (("verify", "--all", "--no-checkpoints"), ("history", "00000000-0000-4000-8000-000000000001"), ("alerts",)):
        result = dealflow(environment, *arguments)
        assert result.returncode == 2, (arguments, result.stdout, result.stderr)
        assert "cannot reach the" in result.stderr and "Traceback" not in result.stderr, (arguments, result.stderr)
