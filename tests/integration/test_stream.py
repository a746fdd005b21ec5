"""GET /stream at scale: one follower of the log per process, a cap on streams, headers at once,
and a Last-Event-ID that cannot be resumed refused up front. A real store; a real `dealflow serve`."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx
import pytest

from dealflow.deal_lifecycle.application import commands as c
from dealflow.deal_lifecycle.application.service import DealService
from dealflow.deal_lifecycle.entrypoints.http import live
from dealflow.deal_lifecycle.entrypoints.http.live import Streams, TooManyStreams
from tests.processes import clean_environment, serving
from tests.support import POLICY_FILE, bearer, ctx, open_deal, token


class CountingRecorder:
    """The real recorder, counting how often the log is read."""

    def __init__(self, service: DealService) -> None:
        self.calls = 0
        self._select = service.recorder.select_notifications

    def select_notifications(self, *args: Any, **kwargs: Any) -> Any:
        self.calls += 1
        return self._select(*args, **kwargs)


async def take(stream: AsyncIterator[Any], count: int) -> list[Any]:
    taken: list[Any] = []
    async for item in stream:
        if item is not None:
            taken.append(item)
        if len(taken) == count:
            break
    return taken


def test_idle_streams_share_one_reader_of_the_log(service: DealService, monkeypatch: pytest.MonkeyPatch) -> None:
    reads = CountingRecorder(service)
    monkeypatch.setattr(service.recorder, "select_notifications", reads.select_notifications)
    clients, polls = 50, 10

    async def scenario() -> list[list[Any]]:
        streams = Streams(service, max_streams=clients, poll_seconds=0.05)
        followers = [streams.follow(streams.reserve(), after=None, limits=True) for _ in range(clients)]
        readers = [asyncio.create_task(take(f, 1)) for f in followers]
        while len(streams._subscribers) < clients:  # noqa: SLF001 - waiting for every stream to be connected
            await asyncio.sleep(0.01)
        before = reads.calls
        await asyncio.sleep(0.05 * polls)  # idle: only the follower's shared poll reads the log
        idle_reads = reads.calls - before
        assert idle_reads < clients, f"{idle_reads} reads of the log for {clients} idle streams"
        await asyncio.to_thread(open_deal, service)
        received = await asyncio.wait_for(asyncio.gather(*readers), 30)
        await streams.close()
        return received

    received = asyncio.run(scenario())
    assert {item[1]["type"] for items in received for item in items} == {"DealOpened"}
    assert len({item[0] for items in received for item in items}) == 1, "every stream got the same event"


def test_a_stream_too_slow_to_keep_up_catches_up_from_the_log_missing_nothing(
    service: DealService, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(live, "QUEUE_SIZE", 3)

    async def scenario() -> tuple[list[Any], list[Any]]:
        streams = Streams(service, poll_seconds=0.05)
        slow = streams.follow(streams.reserve(), after=None, limits=True)
        first = await asyncio.wait_for(_first_after_connect(streams, slow), 30)
        # Twenty more events while the slow stream reads nothing: its queue overflows.
        deal_id = first[1]["deal_id"]
        for n in range(20):
            await asyncio.to_thread(service.handle, "record_concession", _uuid(deal_id), c.RecordConcession(by="client", what=f"c{n}"), ctx())
        rest = await asyncio.wait_for(take(slow, 20 + 0), 30)
        await streams.close()
        return [first], rest

    first, rest = asyncio.run(scenario())
    versions = [item[1]["version"] for item in first + rest]
    assert versions == list(range(1, 22)), "every event once, in order"
    positions = [item[0] for item in first + rest]
    assert positions == sorted(set(positions))


async def _first_after_connect(streams: Streams, stream: AsyncIterator[Any]) -> Any:
    reader = asyncio.ensure_future(stream.__anext__())
    while not streams._subscribers:  # noqa: SLF001
        await asyncio.sleep(0.01)
    await asyncio.to_thread(open_deal, streams.deals)
    return await reader


def _uuid(value: str) -> Any:
    from uuid import UUID  # noqa: PLC0415

    return UUID(value)


def test_a_stream_resuming_from_the_past_gets_history_then_live_events_once(service: DealService) -> None:
    first = open_deal(service)
    service.handle("sign_letter_of_intent", first, None, ctx())

    async def scenario() -> list[Any]:
        streams = Streams(service, poll_seconds=0.05)
        stream = streams.follow(streams.reserve(), after=0, limits=True)
        history = await asyncio.wait_for(take(stream, 2), 30)
        await asyncio.to_thread(service.handle, "walk_away", first, c.WalkAway(reason="no fit"), ctx())
        live_events = await asyncio.wait_for(take(stream, 1), 30)
        await streams.close()
        return history + live_events

    events = asyncio.run(scenario())
    assert [e[1]["type"] for e in events] == ["DealOpened", "LetterOfIntentSigned", "WalkedAway"]


def test_a_stream_still_joining_when_shutdown_begins_ends_at_once(service: DealService) -> None:
    # The race that kept `dealflow up` from stopping: the client has its first line, the stream is
    # still joining the follower (reading the log's last position) when close() runs.
    async def scenario() -> None:
        streams = Streams(service, poll_seconds=0.05, keepalive_seconds=60)
        reading, release = asyncio.Event(), asyncio.Event()
        last_position = streams.last_position

        async def held_last_position() -> int:
            reading.set()
            await release.wait()
            return await last_position()

        streams.last_position = held_last_position  # type: ignore[method-assign]
        stream = streams.follow(streams.reserve(), after=None, limits=True)
        first = asyncio.create_task(anext(stream, "ended"))
        await asyncio.wait_for(reading.wait(), 10)
        await streams.close()
        release.set()
        assert await asyncio.wait_for(first, 5) == "ended"

    asyncio.run(scenario())


def test_the_cap_counts_streams_until_they_end(service: DealService) -> None:
    async def scenario() -> None:
        streams = Streams(service, max_streams=2)
        one, two = streams.reserve(), streams.reserve()
        with pytest.raises(TooManyStreams):
            streams.reserve()
        # A stream that was never started (its client left before the first byte) gives its place back.
        streams.follow(one, after=None, limits=True)
        assert streams.open_streams == 1
        started = streams.follow(two, after=None, limits=True)
        reader = asyncio.create_task(take(started, 1))
        while not streams._subscribers:  # noqa: SLF001
            await asyncio.sleep(0.01)
        await streams.close()
        assert await asyncio.wait_for(reader, 10) == []
        assert streams.open_streams == 0

    asyncio.run(scenario())


# -- over HTTP, from a real `dealflow serve` ------------------------------------------------------

MAX_STREAMS = 2


@pytest.fixture
def base_url(tmp_path: Path) -> Iterator[str]:
    env = clean_environment(
        DEALFLOW_SQLITE_PATH=str(tmp_path / "deals.sqlite3"), DEALFLOW_POLICY=str(POLICY_FILE), DEALFLOW_MAX_STREAMS=str(MAX_STREAMS)
    )
    with serving(env, tmp_path / "serve.log") as url:
        yield url


def test_a_stream_opens_at_once_and_beyond_the_cap_the_answer_is_503(base_url: str) -> None:
    # Read timeout well under the 15 s keep-alive: before, nothing was sent until an event or a keep-alive.
    with ExitStack() as held:
        readers = []  # kept: dropping a line iterator closes its connection
        for _ in range(MAX_STREAMS):
            response = held.enter_context(httpx.stream("GET", f"{base_url}/stream", headers=bearer(), timeout=httpx.Timeout(5, read=5)))
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("text/event-stream")
            readers.append(response.iter_lines())
            assert next(readers[-1]).startswith(":"), "a comment first, before any event"
        refused = httpx.get(f"{base_url}/stream", headers=bearer(), timeout=5)
        assert refused.status_code == 503
        assert refused.json()["code"] == "too_many_streams" and "message" in refused.json()
    # Disconnected: the places are free again.
    deadline = time.monotonic() + 20
    while True:
        with httpx.stream("GET", f"{base_url}/stream", headers=bearer(), timeout=5) as again:
            if again.status_code == 200:
                break
        assert time.monotonic() < deadline, "a closed stream's place was never given back"
        time.sleep(0.2)


@pytest.mark.parametrize("last_event_id", ["1" + "0" * 23, "9223372036854775808", "5", "\u00b2", "-1", "1e3"])
def test_a_last_event_id_that_cannot_be_resumed_is_refused_up_front(base_url: str, last_event_id: str) -> None:
    httpx.post(f"{base_url}/deals", headers=bearer(), json={"title": "Acme", "client_name": "Acme Ltd", "owner": "ann"}).raise_for_status()
    refused = httpx.get(f"{base_url}/stream", headers={**bearer(), "Last-Event-ID": last_event_id.encode()}, timeout=10)
    assert refused.status_code == 400, refused.text
    assert refused.json()["code"] == "invalid_header"
    assert refused.json()["errors"] == [{"field": "Last-Event-ID", "rule": "must be the id of an event this stream sent"}]


def test_a_last_event_id_of_an_event_sent_resumes_after_it(base_url: str) -> None:
    httpx.post(f"{base_url}/deals", headers=bearer(), json={"title": "Acme", "client_name": "Acme Ltd", "owner": "ann"}).raise_for_status()
    httpx.post(f"{base_url}/deals", headers=bearer(), json={"title": "Beta", "client_name": "Beta Ltd", "owner": "ann"}).raise_for_status()
    with httpx.stream("GET", f"{base_url}/stream", headers={**bearer(), "Last-Event-ID": "1"}, timeout=10) as response:
        assert response.status_code == 200
        data = next(line for line in response.iter_lines() if line.startswith("data: "))
    assert json.loads(data.removeprefix("data: "))["data"]["title"] == "Beta"


def _stream_from_start(url: str, headers: dict[str, str], count: int) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    with httpx.stream("GET", f"{url}/stream", headers={**headers, "Last-Event-ID": "0"}, timeout=10) as response:
        assert response.status_code == 200
        for line in response.iter_lines():
            if line.startswith("data: "):
                events.append(json.loads(line.removeprefix("data: ")))
                if len(events) == count:
                    return events
    return events


def test_the_stream_is_for_ops_auditors_and_admins_and_shows_limits_to_admins_only(base_url: str) -> None:
    deal = httpx.post(f"{base_url}/deals", headers=bearer(), json={"title": "Acme", "client_name": "Acme Ltd", "owner": "ann"}).json()
    for value in (90, 58):  # past the limit of 60 (raised), then within it (resolved: "within the limit of 60")
        httpx.post(f"{base_url}/deals/{deal['id']}/terms", headers=bearer(), json={"term": "payment_terms_days", "value": value, "by": "client"})
    assert httpx.get(f"{base_url}/stream", headers=bearer("emitter"), timeout=5).status_code == 403
    # DealOpened, TermProposed, WalkAwayConditionRaised, TermProposed, WalkAwayConditionResolved
    for role, shown in (("ops", False), ("auditor", False), ("admin", True)):
        events = {e["type"]: e for e in _stream_from_start(base_url, bearer(role), 5)}
        raised, resolved = events["WalkAwayConditionRaised"]["data"], events["WalkAwayConditionResolved"]["data"]
        assert ("limit" in raised["evidence"], "of 60" in resolved["resolution"]) == (shown, shown), role
        assert raised["evidence"]["value"] == 90 and "within the limit" in resolved["resolution"]


def test_a_stream_ends_when_the_token_that_opened_it_expires(base_url: str) -> None:
    # Valid for another 2 s (the 30 s leeway is for clocks at the start, not for keeping a stream open).
    short = {"Authorization": f"Bearer {token('ops', ttl=2)}"}
    started = time.monotonic()
    with httpx.stream("GET", f"{base_url}/stream", headers=short, timeout=20) as response:
        assert response.status_code == 200
        lines = list(response.iter_lines())
    assert time.monotonic() - started < 10
    assert ": token expired: reconnect with a fresh token and Last-Event-ID" in lines
