"""The `dealflow` command as a user runs it: a real process, a real port, a real SQLite file."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any
from pathlib import Path

import httpx
import pytest

from dealflow.deal_lifecycle.adapters.embedded_nats import free_port
from tests.processes import clean_environment, serving
from tests.support import bearer, POLICY_FILE

DEALFLOW = [sys.executable, "-m", "dealflow.deal_lifecycle"]


@pytest.fixture
def environment(tmp_path: Path) -> dict[str, str]:
    env = clean_environment()
    env["DEALFLOW_SQLITE_PATH"] = str(tmp_path / "deals.sqlite3")
    env["DEALFLOW_POLICY"] = str(POLICY_FILE)
    return env


@pytest.fixture(params=["serve", "up"])
def server(request: pytest.FixtureRequest, environment: dict[str, str], tmp_path: Path) -> Iterator[tuple[str, Path]]:
    log = tmp_path / "service.log"
    with serving(environment, log, request.param) as url:
        yield url, log


def test_the_service_answers_over_http_and_logs_each_command_as_json(server: tuple[str, Path]) -> None:
    url, log = server
    opened = httpx.post(
        f"{url}/deals",
        json={"title": "Acme payroll", "client_name": "Acme Ltd", "owner": "ann"},
        headers={**bearer(sub="ann@firm"), "X-Request-ID": "req-cli-1"},
    )
    assert opened.status_code == 201, opened.text
    deal_id = opened.json()["id"]
    assert httpx.get(f"{url}/deals/{deal_id}", headers=bearer()).json()["stage"] == "prospect"
    refused = httpx.post(f"{url}/deals/{deal_id}/contract", headers={**bearer(), "X-Request-ID": "req-cli-2"})
    assert refused.status_code == 409

    deadline = time.monotonic() + 5
    while True:
        lines = [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]
        commands = [line for line in lines if line.get("event") == "command"]
        if len(commands) >= 2 or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert [(c["request_id"], c["command"], c["outcome"], c["deal_id"]) for c in commands] == [
        ("req-cli-1", "open_deal", "accepted", deal_id),
        ("req-cli-2", "sign_contract", "refused", deal_id),
    ]


def test_rebuild_read_model_from_the_command_line(environment: dict[str, str]) -> None:
    done = subprocess.run([*DEALFLOW, "rebuild-read-model"], env=environment, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert "0 deals" in done.stdout


def test_serve_refuses_to_start_on_a_malformed_policy_naming_the_file_and_line(
    environment: dict[str, str], tmp_path: Path
) -> None:
    lines = ['label = "broken"', "", "[terms.payment_terms_days]", "public = 45", "limit = ", 'worse = "higher"']
    policy = tmp_path / "policy.toml"
    policy.write_text("\n".join(lines) + "\n")
    environment["DEALFLOW_POLICY"] = str(policy)

    done = subprocess.run(
        [*DEALFLOW, "serve", "--port", str(free_port())],
        env=environment,
        capture_output=True,
        text=True,
        timeout=15,
        check=False,
    )

    assert done.returncode == 2, done.stderr
    assert "policy is malformed" in done.stderr
    assert f"{policy}:{lines.index('limit = ') + 1}:" in done.stderr
    assert not (tmp_path / "deals.sqlite3").exists()


def test_a_relay_that_stopped_says_so_in_relay_status(environment: dict[str, str], tmp_path: Path, nats_server: Any) -> None:
    env = {**environment, "NATS_URL": nats_server.url}
    with serving(env, tmp_path / "serve.log") as url:
        httpx.post(f"{url}/deals", json={"title": "Acme", "client_name": "Acme Ltd", "owner": "ann"}, headers=bearer()).raise_for_status()
        deadline = time.monotonic() + 10
        while json.loads(_relay_status(env).stdout)["lag"] and time.monotonic() < deadline:
            time.sleep(0.1)
    status = json.loads(_relay_status(env).stdout)
    assert (status["relay"]["state"], status["lag"], status["stale"]) == ("stopped", 0, False)


def _relay_status(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*DEALFLOW, "relay", "--status", "--json"], env=env, capture_output=True, text=True, timeout=60, check=False)


@pytest.mark.parametrize("command", ["notifier", "alerts"])
def test_the_notifier_s_commands_load_the_notifier_alone(command: str) -> None:
    run = subprocess.run(  # noqa: S603
        [sys.executable, "-X", "importtime", "-m", "dealflow", command, "--help"], capture_output=True, text=True, timeout=60, check=False
    )
    assert run.returncode == 0, run.stderr[-2000:]
    imported = {line.rsplit("|", 1)[-1].strip() for line in run.stderr.splitlines() if line.startswith("import time:")}
    assert "dealflow.notifier.consumer" in imported or "dealflow.notifier.cli" in imported
    assert sorted(m for m in imported if m.startswith(("dealflow.deal_lifecycle", "litestar", "uvicorn", "eventsourcing"))) == []


def test_the_whole_cli_still_lists_the_notifier_s_commands() -> None:
    run = subprocess.run([sys.executable, "-m", "dealflow", "--help"], capture_output=True, text=True, timeout=60, check=False)  # noqa: S603
    assert run.returncode == 0
    assert all(name in run.stdout for name in ("serve", "notifier", "alerts", "verify"))


def test_the_notifier_alone_without_nats_url_says_so_instead_of_guessing_localhost(tmp_path: Path) -> None:
    env = clean_environment(DEALFLOW_NOTIFIER_DB=str(tmp_path / "alerts.sqlite3"))
    run = subprocess.run([sys.executable, "-m", "dealflow", "notifier"], env=env, capture_output=True, text=True, timeout=60, check=False)  # noqa: S603
    assert run.returncode == 2, run.stderr[-2000:]
    assert "set NATS_URL" in run.stderr and "4222" not in run.stderr


def test_a_notifier_stopped_while_it_waits_for_the_streams_ends_without_a_traceback(tmp_path: Path, nats_server: Any) -> None:
    # A NATS with no deal service yet: the notifier waits for the streams it consumes; Ctrl-C then ends it cleanly.
    env = clean_environment(NATS_URL=nats_server.url, DEALFLOW_NOTIFIER_DB=str(tmp_path / "alerts.sqlite3"))
    log = tmp_path / "notifier.log"
    with log.open("ab") as out:
        notifier = subprocess.Popen([sys.executable, "-m", "dealflow", "notifier"], env=env, stdout=out, stderr=subprocess.STDOUT)  # noqa: S603
    try:
        deadline = time.monotonic() + 30
        while "waiting for a stream the deal service keeps" not in log.read_text():
            assert notifier.poll() is None and time.monotonic() < deadline, log.read_text()[-2000:]
            time.sleep(0.1)
        notifier.send_signal(signal.SIGINT)
        assert notifier.wait(timeout=20) == 0, log.read_text()[-3000:]
    finally:
        if notifier.poll() is None:
            notifier.kill()
    assert "Traceback" not in log.read_text()


@pytest.mark.parametrize(("audience", "warned"), [(None, True), ("dealflow", False)])
def test_serve_warns_when_tokens_for_any_audience_would_be_accepted(
    environment: dict[str, str], tmp_path: Path, audience: str | None, warned: bool
) -> None:
    env = {**environment, **({"DEALFLOW_AUTH_AUDIENCE": audience} if audience else {})}
    log = tmp_path / "serve.log"
    with serving(env, log, "serve"):
        pass
    assert ("DEALFLOW_AUTH_AUDIENCE is not set" in log.read_text()) is warned


def test_no_token_is_minted_in_the_service_s_own_name(tmp_path: Path) -> None:
    env = clean_environment(DEALFLOW_SQLITE_PATH=str(tmp_path / "var" / "deals.sqlite3"))
    env.pop("DEALFLOW_AUTH_JWKS", None)
    run = subprocess.run([sys.executable, "-m", "dealflow", "token", "--role", "admin", "--sub", "dealflow"], env=env, capture_output=True, text=True, timeout=60, check=False)  # noqa: S603
    assert (run.returncode, run.stdout) == (2, "")
    assert "the service's own name" in run.stderr
