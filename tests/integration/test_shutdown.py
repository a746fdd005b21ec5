"""Stopping and restarting on real processes: Ctrl-C stops `dealflow up` promptly, even with a live
stream open, without a stream of NATS errors; `dealflow watch` rides out a restart on a new NATS port;
the service rides out a NATS restart with one warning."""

from __future__ import annotations

import os
import queue
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from dealflow.deal_lifecycle.adapters.embedded_nats import EmbeddedNats, free_port
from tests.nats_support import wait_for_count
from tests.processes import DEALFLOW, clean_environment, serving, wait_until_answering
from tests.support import bearer

# The bound: Ctrl-C on `dealflow up` stops everything in under 3 s.
STOP_SECONDS = 3.0


@contextmanager
def up(env: dict[str, str], log: Path, nats_port: int) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    """`dealflow up` in a session of its own, as a terminal runs it: Ctrl-C reaches its whole process group."""
    port = free_port()
    with log.open("a") as out:
        process = subprocess.Popen(  # noqa: S603
            [*DEALFLOW, "up", "--port", str(port), "--nats-port", str(nats_port)],
            env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )
    try:
        url = f"http://127.0.0.1:{port}"
        wait_until_answering(url, process, log)
        yield process, url
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def ctrl_c(process: subprocess.Popen[bytes]) -> float:
    """Ctrl-C as a terminal sends it (SIGINT to the process group); the seconds until `up` has exited."""
    started = time.monotonic()
    os.killpg(process.pid, signal.SIGINT)
    process.wait(timeout=30)
    return time.monotonic() - started


def open_deal(url: str, title: str) -> str:
    answer = httpx.post(f"{url}/deals", json={"title": title, "client_name": "Acme Ltd", "owner": "ann"}, headers=bearer(sub="ann@firm"))
    assert answer.status_code == 201, answer.text
    return str(answer.json()["id"])


def test_ctrl_c_stops_up_promptly_with_a_live_stream_open_and_logs_no_nats_errors(tmp_path: Path) -> None:
    env = clean_environment(DEALFLOW_SQLITE_PATH=str(tmp_path / "var" / "deals.sqlite3"))
    log = tmp_path / "up.log"
    with up(env, log, free_port()) as (process, url):
        open_deal(url, "Acme payroll")
        with httpx.Client(timeout=httpx.Timeout(5, read=None), headers=bearer("ops")) as client, client.stream("GET", f"{url}/stream") as stream:
            lines = stream.iter_lines()
            assert next(lines) == ": connected"  # the stream is open and served
            seconds = ctrl_c(process)
            # The stream ended with the service: the client sees its end rather than hanging.
            assert list(lines) is not None
    text = log.read_text()
    assert seconds < STOP_SECONDS, f"took {seconds:.1f} s:\n{text[-3000:]}"
    assert process.returncode == 0, text[-3000:]
    assert text.count("nats error") <= 1, text[-3000:]
    # Each part closes its own connection before NATS stops: that is no disconnection to warn about.
    assert "nats disconnected" not in text, text[-3000:]
    assert "Traceback" not in text, text[-3000:]


def test_ctrl_c_stops_up_promptly_without_a_stream(tmp_path: Path) -> None:
    env = clean_environment(DEALFLOW_SQLITE_PATH=str(tmp_path / "var" / "deals.sqlite3"))
    log = tmp_path / "up.log"
    with up(env, log, free_port()) as (process, url):
        open_deal(url, "Acme payroll")
        seconds = ctrl_c(process)
    text = log.read_text()
    assert seconds < STOP_SECONDS, f"took {seconds:.1f} s:\n{text[-3000:]}"
    assert text.count("nats error") <= 1, text[-3000:]
    # Each part closes its own connection before NATS stops: that is no disconnection to warn about.
    assert "nats disconnected" not in text, text[-3000:]
    assert "Traceback" not in text, text[-3000:]


def test_sigterm_to_up_alone_stops_everything_promptly_and_says_so(tmp_path: Path) -> None:
    # As a service manager stops it: the signal reaches `up` only, which stops its parts.
    env = clean_environment(DEALFLOW_SQLITE_PATH=str(tmp_path / "var" / "deals.sqlite3"))
    log = tmp_path / "up.log"
    with up(env, log, free_port()) as (process, url):
        open_deal(url, "Acme payroll")
        started = time.monotonic()
        process.terminate()
        process.wait(timeout=30)
        seconds = time.monotonic() - started
    text = log.read_text()
    assert seconds < STOP_SECONDS, f"took {seconds:.1f} s:\n{text[-3000:]}"
    assert "dealflow: stopping the notifier and the deal service, then the embedded NATS" in text
    assert "dealflow: stopped in " in text
    assert "Traceback" not in text, text[-3000:]


def test_watch_survives_a_restart_of_up_on_a_new_nats_port(tmp_path: Path) -> None:
    env = clean_environment(DEALFLOW_SQLITE_PATH=str(tmp_path / "var" / "deals.sqlite3"))
    log = tmp_path / "up.log"
    first_port, second_port = free_port(), free_port()
    assert first_port != second_port
    watch_err = tmp_path / "watch.err"
    with up(env, log, first_port) as (process, url):
        open_deal(url, "Before the restart")
        with watch_err.open("w") as err:
            watch = subprocess.Popen(  # noqa: S603
                [*DEALFLOW, "watch", "--since", "all", "--type", "DealOpened"],
                env=env, stdout=subprocess.PIPE, stderr=err, text=True,
            )
        shown: queue.Queue[str] = queue.Queue()
        threading.Thread(target=lambda: [shown.put(line) for line in watch.stdout or []], daemon=True).start()
        try:
            assert "DealOpened" in shown.get(timeout=20)
            ctrl_c(process)
            # `up` is stopped and var/nats.url gone; it comes back with its NATS on another port (same store).
            with up(env, log, second_port) as (_, second_url):
                assert (tmp_path / "var" / "nats.url").read_text() == f"nats://127.0.0.1:{second_port}"
                deal = open_deal(second_url, "After the restart")
                later = shown.get(timeout=30)
                while deal[:8] not in later:
                    later = shown.get(timeout=30)
                assert "DealOpened" in later
        finally:
            watch.terminate()
            watch.wait(timeout=10)
    errors = watch_err.read_text()
    assert "Traceback" not in errors, errors
    assert errors.count("lost NATS") == 1, errors


def test_the_service_rides_out_a_nats_restart_with_one_warning_and_publishes_what_it_stored_meanwhile(tmp_path: Path) -> None:
    nats_server = EmbeddedNats(tmp_path / "nats", port=free_port())
    url = nats_server.start()
    env = clean_environment(DEALFLOW_SQLITE_PATH=str(tmp_path / "deals.sqlite3"), NATS_URL=url)
    log = tmp_path / "serve.log"
    try:
        with serving(env, log) as service:
            open_deal(service, "Before the outage")
            assert wait_for_count(url, 1) == 1
            nats_server.stop()
            open_deal(service, "During the outage")  # stored; published once NATS is back
            time.sleep(3)  # several reconnect attempts (every 0.5 s) while NATS is away
            nats_server.start()
            assert wait_for_count(url, 2) == 2, log.read_text()[-3000:]
    finally:
        nats_server.stop()
    text = log.read_text()
    assert text.count("nats disconnected") == 1, text[-3000:]
    assert text.count("nats error") <= 1, text[-3000:]
    assert "nats reconnected" in text, text[-3000:]


def test_ctrl_c_reaches_up_alone_and_up_stops_its_parts(tmp_path: Path) -> None:
    # A part still importing when Ctrl-C came would print a KeyboardInterrupt traceback: the parts are in
    # process groups of their own, so the terminal's SIGINT reaches `up`, which stops them in order.
    env = clean_environment(DEALFLOW_SQLITE_PATH=str(tmp_path / "var" / "deals.sqlite3"))
    log = tmp_path / "up.log"
    with up(env, log, free_port()) as (process, _):
        parts = [int(pid) for pid in Path(f"/proc/{process.pid}/task/{process.pid}/children").read_text().split()]
        groups = {pid: int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[2]) for pid in parts}
        assert len(parts) == 3  # nats-server, the deal service, the notifier
        assert os.getpgid(process.pid) not in groups.values(), groups
        assert ctrl_c(process) < STOP_SECONDS
    assert process.returncode == 0
    assert [pid for pid in parts if Path(f"/proc/{pid}").exists() and "Z" not in Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1][:1]] == []


def test_up_on_a_taken_port_says_so_and_starts_nothing(tmp_path: Path) -> None:
    env = clean_environment(DEALFLOW_SQLITE_PATH=str(tmp_path / "var" / "deals.sqlite3"))
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        run = subprocess.run([*DEALFLOW, "up", "--port", str(port)], env=env, capture_output=True, text=True, timeout=60, check=False)  # noqa: S603
    assert run.returncode == 2, run.stderr[-2000:]
    assert f"port {port} on 127.0.0.1 is taken: choose another with --port" in run.stderr
    assert not (tmp_path / "var" / "nats.url").exists()
