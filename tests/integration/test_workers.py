"""Serving processes: `dealflow serve --workers N` (real workers sharing one port, one store and one NATS),
`--no-relay`, and what a serving process sets up once it has started."""

from __future__ import annotations

import gc
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from litestar.testing import TestClient

from dealflow import gc_tuning
from dealflow.deal_lifecycle.adapters.embedded_nats import EmbeddedNats
from dealflow.deal_lifecycle.bootstrap import service_app
from dealflow.deal_lifecycle.config import Settings
from tests.nats_support import count, exactly_once_in_deal_order, stream, wait_for_count
from tests.processes import DEALFLOW, clean_environment, start
from tests.support import POLICY_FILE, TEST_KEYS, bearer

OPEN = {"title": "Acme payroll", "client_name": "Acme Ltd", "owner": "ann"}
MEETING = {"participants": [{"name": "Sam", "role": "sales"}]}


def store_env(settings: Settings, **more: str) -> dict[str, str]:
    env = clean_environment(DEALFLOW_POLICY=str(POLICY_FILE), **more)
    if settings.database_url:
        env["DEALFLOW_DATABASE_URL"] = settings.database_url
    else:
        env["DEALFLOW_SQLITE_PATH"] = str(settings.sqlite_path)
    return env


def workers_of(process: subprocess.Popen[bytes]) -> list[int]:
    """The pids of the process's workers: its children from /proc, but multiprocessing's resource tracker."""
    children = Path(f"/proc/{process.pid}/task/{process.pid}/children").read_text().split()
    return [int(pid) for pid in children if b"resource_tracker" not in Path(f"/proc/{pid}/cmdline").read_bytes()]


@pytest.fixture
def two_workers(settings: Settings, nats_server: EmbeddedNats, tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], str, Path]]:
    log = tmp_path / "serve.log"
    process, url = start(store_env(settings, NATS_URL=nats_server.url), log, "serve", "--workers", "2")
    try:
        yield process, url, log
    finally:
        process.terminate()
        process.wait(timeout=20)


def test_two_workers_share_the_port_and_apply_every_parallel_command_once(
    two_workers: tuple[subprocess.Popen[bytes], str, Path], nats_server: EmbeddedNats
) -> None:
    process, url, log = two_workers
    assert len(workers_of(process)) == 2
    actor = bearer(sub="crm")
    deals = [httpx.post(f"{url}/deals", json=OPEN, headers=actor).json()["id"] for _ in range(4)]
    for deal_id in deals:
        assert httpx.post(f"{url}/deals/{deal_id}/letter-of-intent", headers=actor).status_code == 200
        assert httpx.post(f"{url}/deals/{deal_id}/transition-meeting", json=MEETING, headers=actor).status_code == 200
    start = httpx.get(f"{url}/deals/{deals[0]}", headers=bearer()).json()["version"]

    def send(n: int) -> int:
        # A fresh connection each time, so the kernel spreads them over both workers.
        response = httpx.post(f"{url}/deals/{deals[n % 4]}/promises", json={"statement": f"promise {n}"}, headers=actor, timeout=60)
        return response.status_code

    with ThreadPoolExecutor(max_workers=32) as pool:
        statuses = list(pool.map(send, range(200)))
    assert statuses == [201] * 200
    versions = [httpx.get(f"{url}/deals/{d}", headers=bearer()).json()["version"] for d in deals]
    assert versions == [start + 50] * 4  # 50 promises each: no command lost or applied twice
    # One relay leads: each event is published once, in each deal's order.
    total = 4 * versions[0]
    assert wait_for_count(nats_server.url, total) == total
    time.sleep(1.0)  # a second relay publishing too would show by now
    assert count(nats_server.url) == total
    per_deal = exactly_once_in_deal_order(stream(nats_server.url))
    assert sorted(per_deal.values()) == [list(range(1, versions[0] + 1))] * 4
    assert log.read_text().count('"relay leading"') == 1, log.read_text()[-3000:]


def test_sigterm_stops_every_worker_promptly_with_a_live_stream_open(two_workers: tuple[subprocess.Popen[bytes], str, Path]) -> None:
    process, url, _ = two_workers
    workers = workers_of(process)
    with httpx.stream("GET", f"{url}/stream", headers=bearer(), timeout=10) as live:
        assert live.status_code == 200
        began = time.monotonic()
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0
    assert time.monotonic() - began < 8
    assert [pid for pid in workers if Path(f"/proc/{pid}").exists() and _is_running(pid)] == []


def test_a_worker_that_dies_stops_the_service_with_an_error(two_workers: tuple[subprocess.Popen[bytes], str, Path]) -> None:
    process, _, log = two_workers
    os.kill(workers_of(process)[0], signal.SIGKILL)
    assert process.wait(timeout=20) == 1
    assert "a worker stopped; stopping the service" in log.read_text()


def wait_for_log(log: Path, text: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while text not in (log.read_text() if log.exists() else ""):
        assert time.monotonic() < deadline, f"{text} not in {log}"
        time.sleep(0.05)


def _is_running(pid: int) -> bool:
    state = Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1][0]
    return state != "Z"


def test_serve_without_its_relay_leaves_publishing_to_a_relay_apart(settings: Settings, nats_server: EmbeddedNats, tmp_path: Path) -> None:
    # The relay apart would look for new events only once a minute: what it publishes sooner, a wake
    # from the serving process (deals.relay.wake) made it look for.
    env = store_env(settings, NATS_URL=nats_server.url, DEALFLOW_RELAY_POLL_SECONDS="60")
    process, url = start(env, tmp_path / "serve.log", "serve", "--no-relay")
    try:
        deal_id = httpx.post(f"{url}/deals", json=OPEN, headers=bearer(sub="crm")).json()["id"]
        time.sleep(1.5)  # a relay in the serving process would have published it by now
        assert count(nats_server.url) == 0
        with (tmp_path / "relay.log").open("ab") as out:
            relay = subprocess.Popen([*DEALFLOW, "relay"], env=env, stdout=out, stderr=subprocess.STDOUT)  # noqa: S603
        try:
            assert wait_for_count(nats_server.url, 1) == 1  # found at its start
            assert stream(nats_server.url)[0].event["deal_id"] == deal_id
            wait_for_log(tmp_path / "relay.log", '"relay leading"')
            later = httpx.post(f"{url}/deals", json=OPEN, headers=bearer(sub="crm")).json()["id"]
            assert wait_for_count(nats_server.url, 2, timeout=20) == 2, "the relay apart was not woken"
            assert stream(nats_server.url)[1].event["deal_id"] == later
        finally:
            relay.terminate()
            relay.wait(timeout=10)
    finally:
        process.terminate()
        process.wait(timeout=20)


def test_a_serving_app_freezes_what_it_built_at_start_up_out_of_the_garbage_collector(settings: Settings) -> None:
    before = gc.get_threshold()
    try:
        gc.unfreeze()
        with TestClient(service_app(settings, keys=TEST_KEYS, serving=True)) as client:
            assert client.get("/health/live").status_code == 200
            assert gc.get_freeze_count() > 10_000  # the modules, the app, the policy, the schemas
            assert gc.get_threshold()[0] == gc_tuning.YOUNG_THRESHOLD
        gc.unfreeze()
        gc.set_threshold(*before)
        with TestClient(service_app(settings, keys=TEST_KEYS)) as client:  # an app a test builds leaves it be
            assert client.get("/health/live").status_code == 200
            assert (gc.get_freeze_count(), gc.get_threshold()) == (0, before)
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)
