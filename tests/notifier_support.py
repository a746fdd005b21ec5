"""Real receivers and process helpers for the notifier tests: an HTTP server for webhooks and
Apprise's json://, an SMTP server (aiosmtpd), the notifier as its own process, and readers for
its SQLite store and for JetStream."""

from __future__ import annotations

import asyncio
import email
import email.policy
import hashlib
import hmac
import json
import os
import sqlite3
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

import nats
from aiosmtpd.controller import Controller
from litestar.testing import TestClient
from nats.js.errors import NotFoundError

from dealflow.deal_lifecycle.adapters.embedded_nats import free_port
from dealflow.deal_lifecycle.application.service import DealService
from dealflow.deal_lifecycle.bootstrap import service_app
from dealflow.deal_lifecycle.config import Settings
from tests.processes import clean_environment
from tests.support import POLICY, TEST_KEYS, signed_in

ROOT = Path(__file__).resolve().parents[1]
DEALFLOW = [sys.executable, "-m", "dealflow"]
SECRET = "test-webhook-secret"
T = TypeVar("T")


# -- waiting ----------------------------------------------------------------------------------


def wait_until(
    condition: Callable[[], T], *, timeout: float = 15.0, what: str = "the condition", logs: list[Path] | None = None
) -> T:
    """Poll every 50 ms until `condition()` is truthy; return it, or fail naming what never happened."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            tails = "\n".join(f"--- {log}:\n{log.read_text()[-3000:]}" for log in logs or [] if log.exists())
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}\n{tails}")
        time.sleep(0.05)


# -- an HTTP receiver ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    at: float

    def json(self) -> Any:
        return json.loads(self.body)


class Receiver:
    """Records every POST (path, headers, body); answers 200, or 500 on failing paths, or holds
    the response on blocked paths until the test releases them."""

    def __init__(self) -> None:
        self.requests: list[Received] = []
        self.failing: set[str] = set()
        self._blocked: dict[str, threading.Event] = {}
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                with receiver._lock:
                    receiver.requests.append(Received(self.path, dict(self.headers.items()), body, time.time()))
                    gate = receiver._blocked.get(self.path)
                    status = 500 if self.path in receiver.failing else 200
                if gate is not None:
                    gate.wait(timeout=60)
                try:
                    self.send_response(status)
                    self.send_header("Content-Length", "2")
                    self.end_headers()
                    self.wfile.write(b"ok" if status == 200 else b"no")
                except OSError:
                    pass  # the sender is gone (killed while we held the response)

            def log_message(self, *_: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self._thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def block(self, path: str) -> None:
        with self._lock:
            self._blocked[path] = threading.Event()

    def release(self, path: str) -> None:
        with self._lock:
            gate = self._blocked.get(path)
        if gate is not None:
            gate.set()

    def on(self, path: str) -> list[Received]:
        with self._lock:
            return [r for r in self.requests if r.path == path]

    def keys(self, path: str | None = None) -> Counter[str]:
        """How many times each Idempotency-Key arrived (on one path, or anywhere)."""
        with self._lock:
            return Counter(r.headers["Idempotency-Key"] for r in self.requests if path is None or r.path == path)

    def __enter__(self) -> Receiver:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        with self._lock:
            gates = list(self._blocked.values())
        for gate in gates:
            gate.set()
        self.server.shutdown()
        self.server.server_close()


def signature_is_valid(request: Received, secret: str = SECRET) -> bool:
    """Recompute Dealflow-Signature: HMAC-SHA256(secret, "<Dealflow-Timestamp>.<body>")."""
    timestamp = request.headers["Dealflow-Timestamp"]
    expected = hmac.new(secret.encode(), timestamp.encode() + b"." + request.body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(request.headers["Dealflow-Signature"], f"sha256={expected}")


# -- an SMTP receiver -------------------------------------------------------------------------


@dataclass
class Mail:
    mail_from: str
    rcpt_tos: list[str]
    message: EmailMessage


@dataclass
class SmtpSink:
    """A real SMTP server on a free port (aiosmtpd) that keeps every message it accepts."""

    mails: list[Mail] = field(default_factory=list)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802 - aiosmtpd's name
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        self.mails.append(Mail(envelope.mail_from, list(envelope.rcpt_tos), message))  # type: ignore[arg-type]
        return "250 OK"

    def __enter__(self) -> SmtpSink:
        self.port = free_port()
        self.controller = Controller(self, hostname="127.0.0.1", port=self.port)
        self.controller.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.controller.stop()

    def to(self, address: str) -> list[Mail]:
        return [m for m in list(self.mails) if address in m.rcpt_tos]


# -- the notifier as its own process ----------------------------------------------------------


def clean_env(**extra: str) -> dict[str, str]:
    env = clean_environment()
    env.update(extra)
    return env


def notifier_env(nats_url: str, rules: Path, db: Path, secret: str = SECRET) -> dict[str, str]:
    return clean_env(
        NATS_URL=nats_url, DEALFLOW_ALERT_RULES=str(rules), DEALFLOW_NOTIFIER_DB=str(db), DEALFLOW_WEBHOOK_SECRET=secret
    )


class Notifiers:
    """Starts `dealflow notifier` processes, each logging to its own file; stops what is left."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.processes: list[subprocess.Popen[bytes]] = []
        self.logs: list[Path] = []

    def start(self, env: dict[str, str]) -> subprocess.Popen[bytes]:
        log = self.directory / f"notifier-{len(self.processes) + 1}.log"
        with log.open("wb") as out:
            process = subprocess.Popen([*DEALFLOW, "notifier"], env=env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)
        self.processes.append(process)
        self.logs.append(log)
        return process

    def consuming(self, process: subprocess.Popen[bytes]) -> bool:
        log = self.logs[self.processes.index(process)]
        if process.poll() is not None:
            raise AssertionError(f"the notifier exited with {process.returncode}:\n{log.read_text()[-3000:]}")
        return "notifier consuming" in log.read_text()

    def __enter__(self) -> Notifiers:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        # SIGTERM, a short grace, then SIGKILL: the notifier takes ~30 s to stop on SIGTERM
        # (its nc.drain() waits out nats-py's drain timeout), too long to wait for in every test.
        for process in self.processes:
            if process.poll() is None:
                process.terminate()
        deadline = time.monotonic() + 1
        for process in self.processes:
            try:
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def dealflow(*arguments: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*DEALFLOW, *arguments], env=env, cwd=ROOT, capture_output=True, text=True, timeout=60, check=False)


# -- the notifier's store, read directly ------------------------------------------------------


def query(db: Path, statement: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    if not db.exists():
        return []
    conn = sqlite3.connect(db, timeout=10)
    try:
        return conn.execute(statement, params).fetchall()
    except sqlite3.OperationalError as e:
        if "no such table" in str(e):
            return []
        raise
    finally:
        conn.close()


def statuses(db: Path) -> dict[str, str]:
    return dict(query(db, "SELECT alert_id, status FROM notifier_alerts"))  # type: ignore[arg-type]


# -- JetStream ----------------------------------------------------------------------------------


def stream_messages(url: str, stream: str) -> list[tuple[str, dict[str, str], bytes]]:
    async def read() -> list[tuple[str, dict[str, str], bytes]]:
        nc = await nats.connect(url)
        try:
            js = nc.jetstream()
            try:
                info = await js.stream_info(stream)
            except NotFoundError:
                return []
            out = []
            for seq in range(info.state.first_seq, info.state.last_seq + 1):
                msg = await js.get_msg(stream, seq)
                out.append((msg.subject, dict(msg.headers or {}), msg.data or b""))
            return out
        finally:
            await nc.close()

    return asyncio.run(read())


def publish(url: str, subject: str, body: bytes, headers: dict[str, str] | None = None) -> None:
    async def send() -> None:
        nc = await nats.connect(url)
        try:
            await nc.jetstream().publish(subject, body, headers=headers)
        finally:
            await nc.close()

    asyncio.run(send())


def consumer_idle(url: str, stream: str = "DEALS_EVENTS", durable: str = "notifier") -> bool:
    """Every event in the stream was delivered to the durable consumer and acknowledged."""

    async def ask() -> bool:
        nc = await nats.connect(url)
        try:
            try:
                info = await nc.jetstream().consumer_info(stream, durable)
            except NotFoundError:
                return False
            return info.num_pending == 0 and info.num_ack_pending == 0
        finally:
            await nc.close()

    return asyncio.run(ask())


# -- rules files --------------------------------------------------------------------------------

FAST_DELIVERY = """
[delivery]
attempts = 3
backoff_seconds = 0.1
max_backoff_seconds = 0.5
"""


def write_rules(path: Path, text: str) -> Path:
    path.write_text(text + FAST_DELIVERY)
    return path


@contextmanager
def relayed_client(tmp_path: Path, nats_url: str) -> Iterator[TestClient]:
    """The deal service on SQLite with its relay publishing to the test's nats-server."""
    settings = Settings(sqlite_path=tmp_path / "deals.sqlite3")
    service = DealService(env=settings.eventsourcing_env(), policy=POLICY)
    try:
        with signed_in(TestClient(service_app(replace(settings, nats_url=nats_url), service=service, keys=TEST_KEYS))) as test_client:
            yield test_client
    finally:
        service.close()
