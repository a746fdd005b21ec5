"""Real processes with a policy of `2s` deadlines: `dealflow up` alerts on a real missed transition meeting
within a few seconds (the scheduler records it, the relay publishes it on NATS, the notifier alerts), and two
`dealflow serve` processes on one store record it once."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from dealflow.deal_lifecycle.adapters.embedded_nats import free_port
from dealflow.deal_lifecycle.config import Settings
from tests.processes import clean_environment, serving, wait_until_answering
from tests.support import POLICY_FILE, bearer

DEALFLOW = [sys.executable, "-m", "dealflow"]
OPEN = {"title": "Acme payroll", "client_name": "Acme Ltd", "owner": "ann"}


def two_second_policy(directory: Path) -> Path:
    sample = POLICY_FILE.read_text()
    policy = re.sub(r"\[deadlines\].*", '[deadlines]\ntransition_meeting_within = "2s"\n', sample, flags=re.S)
    path = directory / "policy.toml"
    path.write_text(policy)
    return path


def run(env: dict[str, str], cwd: Path, *arguments: str) -> str:
    done = subprocess.run([*DEALFLOW, *arguments], cwd=cwd, env=env, capture_output=True, text=True, timeout=30, check=True)
    return done.stdout


def test_up_alerts_on_a_missed_transition_meeting_within_seconds(tmp_path: Path) -> None:
    env = {k: v for k, v in clean_environment().items() if k != "DEALFLOW_AUTH_JWKS"}
    env["DEALFLOW_POLICY"] = str(two_second_policy(tmp_path))
    env["DEALFLOW_SQLITE_PATH"] = str(tmp_path / "var" / "deals.sqlite3")
    env["DEALFLOW_NOTIFIER_DB"] = str(tmp_path / "var" / "notifier.sqlite3")
    port = free_port()
    log = tmp_path / "up.log"
    with log.open("w") as out:
        up = subprocess.Popen(
            [*DEALFLOW, "up", "--port", str(port), "--nats-port", str(free_port())], cwd=tmp_path, env=env, stdout=out, stderr=subprocess.STDOUT
        )
    try:
        wait_until_answering(f"http://127.0.0.1:{port}", up, log)
        auth = {"Authorization": f"Bearer {run(env, tmp_path, 'token', '--role', 'emitter', '--sub', 'crm').strip()}"}
        deal = httpx.post(
            f"http://127.0.0.1:{port}/deals", json={"title": "Acme payroll", "client_name": "Acme Ltd", "owner": "ann"}, headers=auth
        ).json()
        assert httpx.post(f"http://127.0.0.1:{port}/deals/{deal['id']}/letter-of-intent", headers=auth).status_code == 200
        signed = time.monotonic()

        alert = None
        while alert is None:
            assert time.monotonic() - signed < 20, f"no alert on the missed meeting:\n{log.read_text()[-3000:]}"
            listed = [json.loads(line) for line in run(env, tmp_path, "alerts", "--deal", deal["id"], "--json").splitlines()]
            alert = next((a for a in listed if a.get("event_type") == "DeadlineMissed" and a.get("channel") == "log"), None)
            time.sleep(0.3)
        assert alert["status"] == "delivered"
        shown = run(env, tmp_path, "alerts", "--show", alert["alert_id"])
        assert "Acme payroll" in shown
        assert "transition_meeting_within" in shown or "transition meeting" in shown
        assert "late" in shown

        # Once: the deal records the deadline one time, however long the service keeps running.
        time.sleep(1.5)
        history = httpx.get(f"http://127.0.0.1:{port}/deals/{deal['id']}/events", headers=auth).json()["events"]
        assert [e["type"] for e in history].count("DeadlineMissed") == 1
        assert httpx.get(f"http://127.0.0.1:{port}/deals", params={"overdue": "true"}, headers=auth).json()["items"][0]["id"] == deal["id"]
    finally:
        up.send_signal(signal.SIGTERM)
        up.wait(timeout=30)


def test_two_service_processes_on_one_store_record_a_missed_deadline_once(settings: Settings, tmp_path: Path) -> None:
    env = clean_environment(DEALFLOW_POLICY=str(two_second_policy(tmp_path)))
    if settings.database_url:
        env["DEALFLOW_DATABASE_URL"] = settings.database_url
    else:
        env["DEALFLOW_SQLITE_PATH"] = str(settings.sqlite_path)
    log = tmp_path / "serve.log"
    with serving(env, log) as first, serving(env, log) as second:
        deals = [httpx.post(f"{first}/deals", json=OPEN, headers=bearer()).json()["id"] for _ in range(3)]
        for n, deal_id in enumerate(deals):
            # Signed through either process: the one not leading sees it only when it looks again.
            via = (first, second)[n % 2]
            assert httpx.post(f"{via}/deals/{deal_id}/letter-of-intent", headers=bearer()).status_code == 200

        def missed(deal_id: str) -> int:
            history = httpx.get(f"{second}/deals/{deal_id}/events", headers=bearer()).json()["events"]
            return [e["type"] for e in history].count("DeadlineMissed")

        started = time.monotonic()
        while not all(missed(d) for d in deals):
            assert time.monotonic() - started < 15, log.read_text()[-3000:]
            time.sleep(0.2)
        time.sleep(2)  # both processes keep running: still once
        assert [missed(d) for d in deals] == [1, 1, 1]
    assert log.read_text().count("scheduler leading") == 1
