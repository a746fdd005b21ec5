"""`dealflow up` from a clean directory: embedded NATS, the deal service and its relay; `dealflow watch` tails it."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from dealflow.deal_lifecycle.adapters.embedded_nats import free_port
from tests.processes import clean_environment, wait_until_answering

DEALFLOW = [sys.executable, "-m", "dealflow.deal_lifecycle"]
ROOT = Path(__file__).resolve().parents[2]


def token(env: dict[str, str], role: str, sub: str) -> str:
    """As the README says: TOKEN=$(dealflow token --role ROLE --sub NAME), signed with the development key."""
    minted = subprocess.run([*DEALFLOW, "token", "--role", role, "--sub", sub], cwd=ROOT, env=env, capture_output=True, text=True, timeout=30, check=True)
    assert minted.stdout.count("\n") == 1 and minted.stdout.count(".") == 2, "the token alone on stdout"
    return minted.stdout.strip()


def test_up_starts_nats_and_the_service_and_watch_shows_the_events(tmp_path: Path) -> None:
    # Out of the box: no identity provider configured, so the development key signs and is trusted.
    env = {k: v for k, v in clean_environment().items() if k != "DEALFLOW_AUTH_JWKS"}
    env["DEALFLOW_SQLITE_PATH"] = str(tmp_path / "var" / "deals.sqlite3")
    port, nats_port = free_port(), free_port()
    log = tmp_path / "up.log"
    with log.open("w") as out:
        up = subprocess.Popen(
            [*DEALFLOW, "up", "--port", str(port), "--nats-port", str(nats_port)],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_until_answering(f"http://127.0.0.1:{port}", up, log)
        assert (tmp_path / "var" / "nats.url").read_text() == f"nats://127.0.0.1:{nats_port}"
        deal = httpx.post(
            f"http://127.0.0.1:{port}/deals",
            json={"title": "Acme payroll", "client_name": "Acme Ltd", "owner": "ann"},
            headers={"Authorization": f"Bearer {token(env, 'emitter', 'ann@firm')}"},
        ).json()
        httpx.post(f"http://127.0.0.1:{port}/deals/{deal['id']}/letter-of-intent", headers={"Authorization": f"Bearer {token(env, 'emitter', 'bob@firm')}"})
        assert httpx.get(f"http://127.0.0.1:{port}/deals").status_code == 401
        assert "development key" in log.read_text()

        watched = subprocess.run(
            [*DEALFLOW, "watch", "--since", "all", "--json", "--limit", "2", "--deal", deal["id"]],
            cwd=ROOT, env=env, capture_output=True, text=True, timeout=30, check=False,
        )
        assert watched.returncode == 0, watched.stderr
        events = [json.loads(line) for line in watched.stdout.splitlines()]
        assert [(e["type"], e["version"], e["actor"]) for e in events] == [
            ("DealOpened", 1, "ann@firm"),
            ("LetterOfIntentSigned", 2, "bob@firm"),
        ]
        readable = subprocess.run(
            [*DEALFLOW, "watch", "--since", "all", "--limit", "1", "--type", "LetterOfIntentSigned"],
            cwd=ROOT, env=env, capture_output=True, text=True, timeout=30, check=False,
        )
        assert "LetterOfIntentSigned" in readable.stdout
        assert "by bob@firm" in readable.stdout
        assert deal["id"][:8] in readable.stdout

        # `dealflow watch --json | head -1`: once its reader has gone, watch ends (NATS is fine), even with nothing new to show.
        piped = subprocess.Popen([*DEALFLOW, "watch", "--since", "all", "--json"], cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        assert piped.stdout is not None and json.loads(piped.stdout.readline())["type"] == "DealOpened"
        piped.stdout.close()
        assert piped.wait(timeout=15) == 0
        assert piped.stderr is not None and "lost NATS" not in piped.stderr.read().decode()
    finally:
        up.send_signal(signal.SIGTERM)
        up.wait(timeout=20)
    # Stopping `up` stops the NATS it started: nothing listens on its port any more.
    deadline = time.monotonic() + 10
    while listening(nats_port) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not listening(nats_port), log.read_text()[-2000:]

    # With `up` stopped, watch and verify say there is no NATS here, rather than asking localhost:4222.
    waiting = subprocess.Popen([*DEALFLOW, "watch"], cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(3)
    waiting.terminate()
    _, said = waiting.communicate(timeout=10)
    assert "no NATS to watch: `dealflow up` is not running here (no var/nats.url)" in said
    verified = subprocess.run([*DEALFLOW, "verify", "--all"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, check=False)
    assert verified.returncode == 3, verified.stdout + verified.stderr
    assert "checkpoints: not compared: no NATS to read them from" in verified.stdout


def listening(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
    except OSError:
        return False
    return True
