"""A tiny asyncio HTTP/1.1 receiver for webhook alerts: answers 200 at once and records arrivals.

It runs in the benchmark's own event loop, so the arrival time and the command's response
time come from the same clock.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field
from typing import Any

_OK = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"


@dataclass
class Arrival:
    event_id: str
    alert_id: str
    perf: float  # time.perf_counter() at arrival
    wall: float  # time.time() at arrival


@dataclass
class Receiver:
    arrivals: dict[str, Arrival] = field(default_factory=dict)  # by alert id: first arrival only
    duplicates: int = 0
    total_requests: int = 0
    server: asyncio.AbstractServer | None = None
    port: int = 0
    _waiters: list[tuple[int, asyncio.Future[None]]] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/alerts"

    async def start_on(self, port: int = 0) -> Receiver:
        loop = asyncio.get_running_loop()
        self.server = await loop.create_server(lambda: _Protocol(self), "127.0.0.1", port)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()

    def reset(self) -> None:
        self.arrivals.clear()
        self.duplicates = 0
        self.total_requests = 0

    def record(self, body: bytes, perf: float, wall: float) -> None:
        self.total_requests += 1
        try:
            alert: dict[str, Any] = json.loads(body)
            alert_id, event_id = alert["alert_id"], alert["event_id"]
        except (ValueError, KeyError, TypeError):
            alert_id = event_id = f"unparsed-{self.total_requests}"
        if alert_id in self.arrivals:
            self.duplicates += 1
            return
        self.arrivals[alert_id] = Arrival(event_id, alert_id, perf, wall)
        for count, future in list(self._waiters):
            if len(self.arrivals) >= count and not future.done():
                future.set_result(None)

    async def wait_for(self, count: int, timeout: float) -> bool:
        if len(self.arrivals) >= count:
            return True
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        entry = (count, future)
        self._waiters.append(entry)
        try:
            await asyncio.wait_for(future, timeout)
            return True
        except TimeoutError:
            return False
        finally:
            self._waiters.remove(entry)


class _Protocol(asyncio.Protocol):
    def __init__(self, receiver: Receiver) -> None:
        self.receiver = receiver
        self.buffer = bytearray()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        perf, wall = time.perf_counter(), time.time()
        self.buffer += data
        while True:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            length = 0
            for line in bytes(self.buffer[:end]).split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value.strip())
            if len(self.buffer) < end + 4 + length:
                return
            body = bytes(self.buffer[end + 4 : end + 4 + length])
            del self.buffer[: end + 4 + length]
            self.receiver.record(body, perf, wall)
            assert self.transport is not None
            self.transport.write(_OK)
