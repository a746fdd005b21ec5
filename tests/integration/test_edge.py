"""The edge, over HTTP and NATS alike: bounded headers, strict bodies, no 5xx, every NATS request answered.

Each case here was reproduced on the code before the edge rules: a 500, a silently
accepted value, or (over NATS) no reply at all.
"""

from __future__ import annotations

import asyncio
import json
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import replace
from datetime import date, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import nats.errors
import pytest
from litestar.testing import TestClient

from dealflow.deal_lifecycle.adapters.embedded_nats import EmbeddedNats
from dealflow.deal_lifecycle.application.service import DealService
from dealflow.deal_lifecycle.bootstrap import service_app
from dealflow.deal_lifecycle.config import Settings
from dealflow.deal_lifecycle.entrypoints.edge import HEADER_LIMITS
from tests.nats_support import request, wait_for_responder
from tests.support import TEST_KEYS, bearer, signed_in, POLICY_FILE
from tests.processes import clean_environment

LATER = (date.today() + timedelta(days=60)).isoformat()
DEAL = {"title": "Acme payroll", "client_name": "Acme Ltd", "owner": "ann"}
JSON = {"Content-Type": "application/json"}


@pytest.fixture
def client(service: DealService, settings: Settings, nats_server: EmbeddedNats) -> Iterator[TestClient]:
    with signed_in(TestClient(service_app(replace(settings, nats_url=nats_server.url), service=service, keys=TEST_KEYS), raise_server_exceptions=False)) as test_client:
        wait_for_responder(nats_server.url)
        yield test_client


def stored(service: DealService) -> int:
    return service.recorder.max_notification_id() or 0


def open_deal(client: TestClient) -> str:
    response = client.post("/deals", json=DEAL)
    assert response.status_code == 201, response.text
    return response.json()["id"]


def raw_post(client: TestClient, path: str, headers: list[tuple[bytes, bytes]], body: bytes = b"") -> httpx.Response:
    """A request with its header bytes as sent: the test client re-encodes values and joins repeated headers."""

    async def send() -> httpx.Response:
        transport = httpx.ASGITransport(app=client.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as raw:
            signed = (b"authorization", client.headers["authorization"].encode())
            return await raw.post(path, content=body, headers=[(b"content-type", b"application/json"), signed, *headers])

    return asyncio.run(send())


def body_routes(client: TestClient, deal_id: str) -> list[str]:
    """Every POST route that takes a JSON body, with its path parameters filled in."""
    paths = []
    for route in client.app.routes:
        for handler in getattr(route, "route_handlers", []):
            if "POST" in handler.http_methods and "data" in handler.parsed_fn_signature.parameters:
                paths.append(re.sub(r"\{(\w+):\w+\}", lambda m: deal_id if m[1] == "deal_id" else "x1", route.path))
    assert len(paths) >= 15
    return paths


# -- headers ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "limit"), sorted(HEADER_LIMITS.items()))
def test_an_over_long_header_is_refused_naming_it_and_stores_nothing(
    client: TestClient, service: DealService, nats_server: EmbeddedNats, name: str, limit: int
) -> None:
    before = stored(service)
    response = client.post("/deals", json=DEAL, headers={name: "7" * (limit + 1)})
    assert response.status_code == 400, response.text
    body = response.json()
    assert (body["code"], body["errors"][0]["field"]) == ("invalid_header", name)
    assert str(limit) in body["errors"][0]["rule"]
    assert response.headers["X-Request-ID"] != "7" * (limit + 1)
    headers, reply = request(nats_server.url, "open_deal", DEAL, {name: "7" * (limit + 1)})
    assert (headers["Nats-Service-Error-Code"], reply["code"], reply["errors"][0]["field"]) == ("400", "invalid_header", name)
    assert stored(service) == before


def test_headers_at_their_limit_are_accepted_and_reach_the_event(client: TestClient, service: DealService, nats_server: EmbeddedNats) -> None:
    at_limit = {"X-On-Behalf-Of": "a" * 200, "X-Correlation-ID": "c" * 200, "Idempotency-Key": "k" * 255, "X-Request-ID": "r" * 200}
    response = client.post("/deals", json=DEAL, headers=at_limit)
    assert response.status_code == 201, response.text
    assert response.headers["X-Request-ID"] == "r" * 200
    first = client.get(f"/deals/{response.json()['id']}/events").json()["events"][0]
    assert (first["on_behalf_of"], first["correlation_id"]) == ("a" * 200, "c" * 200)
    headers, reply = request(nats_server.url, "open_deal", DEAL, {**at_limit, "Idempotency-Key": "n" * 255})
    assert "Nats-Service-Error-Code" not in headers, reply


def test_headers_together_are_capped(client: TestClient, service: DealService, nats_server: EmbeddedNats) -> None:
    filler = {f"X-Filler-{n}": "f" * 1000 for n in range(20)}
    response = client.post("/deals", json=DEAL, headers=filler)
    assert (response.status_code, response.json()["errors"][0]["field"]) == (400, "headers")
    headers, reply = request(nats_server.url, "open_deal", DEAL, filler)
    assert (headers["Nats-Service-Error-Code"], reply["errors"][0]["field"]) == ("400", "headers")
    assert stored(service) == 0


@pytest.mark.parametrize("value", [b"ann\x01", b"ann\x7f", b"ann\x1b[31m"])
def test_control_characters_in_a_header_are_refused(client: TestClient, service: DealService, nats_server: EmbeddedNats, value: bytes) -> None:
    before = stored(service)
    response = client.post("/deals", json=DEAL, headers={"X-On-Behalf-Of": value})
    assert (response.status_code, response.json()["code"]) == (400, "invalid_header")
    headers, reply = request(nats_server.url, "open_deal", DEAL, {"X-On-Behalf-Of": value.decode()})
    assert (headers["Nats-Service-Error-Code"], reply["code"]) == ("400", "invalid_header")
    assert stored(service) == before


def test_a_non_utf8_or_repeated_on_behalf_of_is_refused_and_utf8_is_read_as_utf8(client: TestClient, service: DealService, nats_server: EmbeddedNats) -> None:
    before = stored(service)
    body = json.dumps(DEAL).encode()
    not_utf8 = raw_post(client, "/deals", [(b"x-on-behalf-of", b"Zo\xeb")], body)
    assert (not_utf8.status_code, not_utf8.json()["errors"][0]) == (400, {"field": "X-On-Behalf-Of", "rule": "must be UTF-8"})
    twice = raw_post(client, "/deals", [(b"x-on-behalf-of", b"ann"), (b"x-on-behalf-of", b"bob")], body)
    assert (twice.status_code, twice.json()["errors"][0]) == (400, {"field": "X-On-Behalf-Of", "rule": "must be sent once"})
    reply = raw_nats_request(nats_server.url, "open_deal", b"X-On-Behalf-Of: Zo\xeb\r\n", json.dumps(DEAL).encode())
    assert (reply.status, reply.body["errors"][0]) == ("400", {"field": "X-On-Behalf-Of", "rule": "must be UTF-8"})
    assert stored(service) == before
    utf8 = raw_post(client, "/deals", [(b"x-on-behalf-of", "Zoë".encode())], body)
    assert client.get(f"/deals/{utf8.json()['id']}/events").json()["events"][0]["on_behalf_of"] == "Zoë"


def test_if_match_takes_ascii_digits_only_over_http_and_nats(client: TestClient, service: DealService, nats_server: EmbeddedNats) -> None:
    deal_id = open_deal(client)
    before = stored(service)
    for value in ["²", "٣", "２", "1" * 5000]:
        response = raw_post(client, f"/deals/{deal_id}/letter-of-intent", [(b"if-match", value.encode())])
        assert response.status_code in (400, 422), (value[:10], response.text)
        assert response.json()["errors"][0]["field"] == "If-Match"
        headers, reply = request(nats_server.url, "sign_letter_of_intent", {"deal_id": deal_id}, {"If-Match": value})
        assert headers["Nats-Service-Error-Code"] in ("400", "422"), (value[:10], reply)
        assert reply["errors"][0]["field"] == "If-Match"
    assert stored(service) == before


# -- bodies ----------------------------------------------------------------------------------


def test_deep_nesting_and_invalid_utf8_get_400_on_every_body_route(client: TestClient, service: DealService) -> None:
    deal_id = open_deal(client)
    before = stored(service)
    deep = b"[" * 20_000 + b"]" * 20_000
    for path in body_routes(client, deal_id):
        for body, words in [(deep, "nested too deeply"), (b'{"title": "\xff"}', "not UTF-8")]:
            response = client.post(path, content=body, headers=JSON)
            assert response.status_code == 400, (path, response.text)
            assert response.json()["code"] == "malformed_request" and words in response.json()["message"]
    assert stored(service) == before


def test_the_same_bodies_over_nats_get_a_reply(client: TestClient, service: DealService, nats_server: EmbeddedNats) -> None:
    deal_id = open_deal(client)
    before = stored(service)
    for data in [b"[" * 20_000 + b"]" * 20_000, b'{"title": "\xff"}', b'{"title": "a", "title": "b"}', b'{"x": NaN}']:
        headers, reply = request(nats_server.url, "open_deal", data)
        assert (headers["Nats-Service-Error-Code"], reply["code"]) == ("400", "malformed_request"), data[:20]
    for command, payload, field in [
        ("propose_term", {"deal_id": deal_id, "term": "discount", "value": 10**400, "by": "client"}, "value"),
        ("record_client_facts", {"deal_id": deal_id, "annual_value": 10**400}, "annual_value"),
    ]:
        headers, reply = request(nats_server.url, command, payload)
        assert (headers["Nats-Service-Error-Code"], reply["errors"][0]["field"]) == ("422", field)
    assert stored(service) == before


def test_huge_numbers_are_refused_naming_the_field(client: TestClient, service: DealService) -> None:
    deal_id = open_deal(client)
    client.post(f"/deals/{deal_id}/letter-of-intent")
    before = stored(service)
    huge = "1" + "0" * 400
    for path, body, field in [
        (f"/deals/{deal_id}/terms", f'{{"term": "discount", "value": {huge}, "by": "client"}}', "value"),
        (f"/deals/{deal_id}/terms", '{"term": "discount", "value": 1e400, "by": "client"}', "value"),
        (f"/deals/{deal_id}/client-facts", f'{{"annual_value": {huge}}}', "annual_value"),
        (f"/deals/{deal_id}/client-facts", '{"annual_value": ' + "9" * 5000 + "}", "body"),
    ]:
        response = client.post(path, content=body, headers=JSON)
        assert 400 <= response.status_code < 500, response.text
        assert field == "body" or response.json()["errors"][0]["field"] == field
    assert stored(service) == before


def test_duplicate_json_keys_are_refused(client: TestClient, service: DealService) -> None:
    before = stored(service)
    response = client.post("/deals", content=b'{"title": "a", "title": "b", "client_name": "c", "owner": "o"}', headers=JSON)
    assert (response.status_code, response.json()["code"]) == (400, "malformed_request")
    assert "'title' appears twice" in response.json()["message"]
    assert stored(service) == before


@pytest.mark.parametrize(
    ("field", "value", "rule"),
    [
        ("title", "\u200b\u200d", "visible text"),
        ("title", "\u00ad \ufeff", "visible text"),
        ("title", "Acme\x00", "control characters"),
        ("owner", "ann\nbob", "control characters"),
        ("client_name", "\x1b[2J", "control characters"),
    ],
)
def test_names_must_be_visible_text_without_control_characters(
    client: TestClient, service: DealService, nats_server: EmbeddedNats, field: str, value: str, rule: str
) -> None:
    before = stored(service)
    response = client.post("/deals", json={**DEAL, field: value})
    assert response.status_code == 422, response.text
    assert response.json()["errors"][0]["field"] == field and rule in response.json()["errors"][0]["rule"]
    headers, reply = request(nats_server.url, "open_deal", {**DEAL, field: value})
    assert (headers["Nats-Service-Error-Code"], reply["errors"][0]["field"]) == ("422", field)
    assert stored(service) == before


def test_long_text_keeps_newlines_but_not_other_control_characters(client: TestClient) -> None:
    deal_id = open_deal(client)
    client.post(f"/deals/{deal_id}/letter-of-intent")
    refused = client.post(f"/deals/{deal_id}/concessions", json={"by": "client", "what": "go-live\x07"})
    assert (refused.status_code, refused.json()["errors"][0]["field"]) == (422, "what")
    kept = client.post(f"/deals/{deal_id}/concessions", json={"by": "client", "what": "go-live in 30 days\n- training\tincluded"})
    assert kept.status_code == 201, kept.text


@pytest.mark.parametrize("due", [1893456000, "2030-01-01T00:00:00", "2030-01-01T00:00:00Z", 1.5])
def test_due_is_only_a_yyyy_mm_dd_string(client: TestClient, service: DealService, due: Any) -> None:
    deal_id = open_deal(client)
    client.post(f"/deals/{deal_id}/letter-of-intent")
    before = stored(service)
    body = {"side": "client", "statement": "report", "metric": "reports", "target": "12", "due": due, "priority": 1}
    response = client.post(f"/deals/{deal_id}/expectations", json=body)
    assert (response.status_code, response.json()["errors"][0]["field"]) == (422, "due")
    assert stored(service) == before
    assert client.post(f"/deals/{deal_id}/expectations", json={**body, "due": LATER}).status_code == 201


def test_as_of_is_an_iso_time_with_a_zone_and_as_of_version_is_bounded(client: TestClient) -> None:
    deal_id = open_deal(client)
    for query in ["as_of=1700000000", "as_of=2030-01-01", "as_of=2030-01-01T00:00:00", "as_of=0001-01-01T00:00:00%2B01:00"]:
        response = client.get(f"/deals/{deal_id}?{query}")
        assert (response.status_code, response.json()["errors"][0]["field"]) == (422, "as_of"), query
    response = client.get(f"/deals/{deal_id}?as_of_version=9223372036854775808")
    assert (response.status_code, response.json()["errors"][0]["field"]) == (422, "as_of_version")
    assert client.get(f"/deals/{deal_id}?as_of=2999-01-01T00:00:00Z").json()["version"] == 1


def test_a_body_on_a_route_that_takes_none_is_refused_but_empty_or_braces_are_fine(client: TestClient, service: DealService) -> None:
    deal_id = open_deal(client)
    before = stored(service)
    refused = client.post(f"/deals/{deal_id}/letter-of-intent", json={"signed": True})
    assert (refused.status_code, refused.json()["code"]) == (400, "unexpected_body")
    assert stored(service) == before
    assert client.post(f"/deals/{deal_id}/letter-of-intent", json={}).status_code == 200
    assert client.post(f"/deals/{deal_id}/contract").status_code == 409  # no body: judged, not refused for its form


def test_commands_must_be_sent_as_json(client: TestClient, service: DealService) -> None:
    deal_id = open_deal(client)
    before = stored(service)
    as_json = json.dumps(DEAL)
    for headers, content in [
        ({"Content-Type": "text/plain"}, as_json),
        ({"Content-Type": "application/x-www-form-urlencoded"}, "title=a&client_name=b&owner=c"),
        ({"Content-Type": "multipart/form-data; boundary=x"}, "--x--"),
        ({"Content-Type": "application/json; charset=latin-1"}, as_json),
        ({}, as_json),
    ]:
        response = client.post("/deals", content=content, headers=headers)
        assert (response.status_code, response.json()["code"]) == (415, "unsupported_media_type"), headers
    # A browser's cross-site POST without a body still names its origin: refused too.
    response = client.post(f"/deals/{deal_id}/letter-of-intent", headers={"Origin": "https://evil.example"})
    assert response.status_code == 415
    assert stored(service) == before
    assert client.post("/deals", content=as_json, headers={"Content-Type": "application/json; charset=utf-8"}).status_code == 201


# -- faults ----------------------------------------------------------------------------------


def test_a_fault_is_answered_500_in_the_error_shape_and_logged_once_with_the_request_id(
    client: TestClient, service: DealService, nats_server: EmbeddedNats, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    deal_id = open_deal(client)

    def broken(*_: Any, **__: Any) -> Any:
        raise RuntimeError("disk on fire")

    # A fault inside the service (not a refusal): the one way left to get a 500.
    monkeypatch.setattr(service, "handle", broken)
    capsys.readouterr()
    response = client.post(f"/deals/{deal_id}/letter-of-intent", headers={"X-Request-ID": "req-500"})
    assert response.status_code == 500
    assert response.json()["code"] == "internal_error" and response.json()["request_id"] == "req-500"
    headers, reply = request(nats_server.url, "sign_letter_of_intent", {"deal_id": deal_id}, {"X-Request-ID": "nats-500"})
    assert (headers["Nats-Service-Error-Code"], reply["code"], reply["request_id"]) == ("500", "internal_error", "nats-500")
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if '"internal_error"' in line]
    assert [line["request_id"] for line in lines] == ["req-500", "nats-500"]
    assert all("RuntimeError: disk on fire" in line["exception"] for line in lines)


# -- NATS at the protocol level: what nats-py cannot send ------------------------------------


class RawReply:
    def __init__(self, status: str | None, body: dict[str, Any]) -> None:
        self.status, self.body = status, body


def raw_nats_request(url: str, command: str, header_lines: bytes, payload: bytes) -> RawReply:
    """One request written on the wire (HPUB), so headers can carry bytes a client library would not send."""
    address = urlsplit(url)
    with socket.create_connection((address.hostname, address.port), timeout=10) as sock:
        reader = sock.makefile("rb")
        reader.readline()  # INFO
        headers = b"NATS/1.0\r\n" + b"Authorization: %s\r\n" % bearer()["Authorization"].encode() + header_lines + b"\r\n"
        sock.sendall(
            b'CONNECT {"verbose":false,"headers":true,"no_responders":true,"protocol":1}\r\n'
            b"SUB _INBOX.raw 1\r\nPING\r\n"
        )
        assert reader.readline() == b"PONG\r\n"
        total = len(headers) + len(payload)
        sock.sendall(b"HPUB deals.commands.%s _INBOX.raw %d %d\r\n%s%s\r\n" % (command.encode(), len(headers), total, headers, payload))
        while True:
            line = reader.readline()
            if line.startswith(b"PING"):
                sock.sendall(b"PONG\r\n")
                continue
            if line.startswith((b"HMSG", b"MSG")):
                break
        parts = line.split()
        header_size = int(parts[-2]) if line.startswith(b"HMSG") else 0
        data = reader.read(int(parts[-1]) + 2)[:-2]
        status = None
        for header_line in data[:header_size].split(b"\r\n"):
            if header_line.startswith(b"Nats-Service-Error-Code:"):
                status = header_line.split(b":", 1)[1].strip().decode()
        return RawReply(status, json.loads(data[header_size:]))


# -- slow and greedy clients, on the real server (uvicorn) -----------------------------------


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[str, int]]:
    """`dealflow serve` with one-second deadlines for the request head and body."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = clean_environment()
    env.update(
        DEALFLOW_SQLITE_PATH=str(tmp_path / "deals.sqlite3"),
        DEALFLOW_POLICY=str(POLICY_FILE),
        DEALFLOW_HEADER_TIMEOUT="1",
        DEALFLOW_BODY_TIMEOUT="1",
    )
    log = (tmp_path / "serve.log").open("wb")
    process = subprocess.Popen([sys.executable, "-m", "dealflow.deal_lifecycle", "serve", "--port", str(port)], env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        for _ in range(200):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.05)
        yield "127.0.0.1", port
    finally:
        process.terminate()
        process.wait(timeout=15)
        log.close()


def read_all(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection (the socket times out after 20 s)."""
    chunks = []
    while chunk := sock.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)


# The header line of a caller the server trusts, for requests written on the socket.
AUTHORIZATION = b"Authorization: %s\r\n" % bearer()["Authorization"].encode()


def test_a_client_that_never_finishes_its_headers_is_cut_off(server: tuple[str, int]) -> None:
    with socket.create_connection(server, timeout=20) as sock:
        sock.sendall(b"POST /deals HTTP/1.1\r\nHost: dealflow\r\nX-Correlation-ID: a")
        assert read_all(sock) == b""  # closed by the server, not by our timeout (that would raise)


def test_a_body_that_never_arrives_gets_408(server: tuple[str, int]) -> None:
    with socket.create_connection(server, timeout=20) as sock:
        sock.sendall(b"POST /deals HTTP/1.1\r\nHost: dealflow\r\n" + AUTHORIZATION + b"Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"title\"")
        answer = read_all(sock)
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 408"), answer[:200]
    assert json.loads(body)["code"] == "request_timeout"


def test_headers_beyond_the_total_size_are_refused_and_normal_requests_work(server: tuple[str, int]) -> None:
    with socket.create_connection(server, timeout=20) as sock:
        sock.sendall(b"GET /deals HTTP/1.1\r\nHost: dealflow\r\n" + b"X-Filler: " + b"f" * 20_000 + b"\r\n\r\n")
        assert read_all(sock).startswith(b"HTTP/1.1 400")
    body = json.dumps(DEAL).encode()
    with socket.create_connection(server, timeout=20) as sock:
        sock.sendall(b"POST /deals HTTP/1.1\r\nHost: dealflow\r\n" + AUTHORIZATION + b"Connection: close\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
        assert read_all(sock).startswith(b"HTTP/1.1 201")


def test_a_commands_answer_stays_bounded_as_the_deal_grows(client: TestClient, nats_server: EmbeddedNats) -> None:
    deal_id = open_deal(client)
    for n in range(14):
        client.post(f"/deals/{deal_id}/concessions", json={"by": ("client", "provider")[n % 2], "what": f"give {n}"})
    answer = client.post(f"/deals/{deal_id}/concessions", json={"by": "client", "what": "give 14"}).json()["deal"]
    assert (len(answer["concessions"]), answer["counts"]["concessions"], answer["truncated"]) == (10, 15, True)
    assert answer["concessions"][-1]["what"] == "give 14" and answer["full_view"] == f"/deals/{deal_id}"
    _, reply = request(nats_server.url, "record_concession", {"deal_id": deal_id, "by": "provider", "what": "give 15"})
    assert (len(reply["deal"]["concessions"]), reply["deal"]["counts"]["concessions"]) == (10, 16)
    assert len(client.get(f"/deals/{deal_id}").json()["concessions"]) == 16


def test_a_nats_command_is_bounded_like_an_http_body(client: TestClient, service: DealService, nats_server: EmbeddedNats) -> None:
    big = json.dumps({**DEAL, "title": "x" * 70_000}).encode()
    assert client.post("/deals", content=big, headers=JSON).status_code == 413
    headers, reply = request(nats_server.url, "open_deal", big)
    assert (headers["Nats-Service-Error-Code"], reply["code"]) == ("413", "request_too_large")
    assert stored(service) == 0
