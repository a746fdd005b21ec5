"""A chat (Apprise) delivery that fails names its cause, as the webhook and email channels do:
against a real local HTTP server that answers 503, and a port nobody listens on."""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from dealflow.notifier.alerts import Alert
from dealflow.notifier.channels import AppriseChannel, DeliveryFailed
from dealflow.notifier.rules import AppriseSpec

ALERT = Alert(
    id="e/ops/chat", event_id="e", deal_id="d", event_type="ContractSigned", recipient="ops", channel="chat",
    address=None, urgency="normal", title="Contract signed", text="Deal: Acme payroll", event={},
)  # fmt: skip


class Unavailable(BaseHTTPRequestHandler):
    def do_POST(self) -> None:  # noqa: N802 (the http.server API)
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.send_response(503)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def unavailable_chat() -> Iterator[int]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Unavailable)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


def failure(url: str) -> str:
    with pytest.raises(DeliveryFailed) as failed:
        asyncio.run(AppriseChannel(AppriseSpec(type="apprise", url=url)).send(ALERT))
    return str(failed.value)


def test_a_chat_service_answering_503_is_named_in_the_failure(unavailable_chat: int) -> None:
    assert "503" in failure(f"json://127.0.0.1:{unavailable_chat}/hook")


def test_a_chat_service_nobody_listens_on_is_named_in_the_failure() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    cause = failure(f"json://127.0.0.1:{port}/hook")
    assert "Apprise gave no reason" not in cause
    assert "onnect" in cause  # a refused connection, in Apprise's words
