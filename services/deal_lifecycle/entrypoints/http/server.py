"""The HTTP server: how it treats slow clients (a deadline for the request head and for the body),
how it stops (live streams first), and its worker processes (`dealflow serve --workers N`).

uvicorn closes idle keep-alive connections, but a client that sends its headers a byte at a
time, or announces a body and never sends it, would hold a connection (and, for the body,
a request) open for ever. Both are cut off here; the limits are in Settings.
"""

from __future__ import annotations

import asyncio
from typing import Any

import h11
import structlog
import uvicorn
from litestar.exceptions import ClientException
from litestar.types import ASGIApp, Message, Receive, Scope, Send
from uvicorn.protocols.http.h11_impl import H11Protocol
from uvicorn.supervisors.multiprocess import Multiprocess, Process

from dealflow.deal_lifecycle.entrypoints.edge import MAX_HEADER_BYTES

log = structlog.get_logger("dealflow.http")


class ServerConfig(uvicorn.Config):
    """uvicorn's config with the server's limits: the h11 protocol with a head deadline, a cap on header
    size. Everything is a plain attribute or a module-level class, so a worker process (`--workers`),
    which gets the config pickled, gets the same limits."""

    def __init__(self, app: Any, *, header_timeout: float, **options: Any) -> None:
        super().__init__(
            app,
            http=DeadlineH11Protocol,
            # h11 stops buffering a head beyond this; bind_request checks a head that arrived whole.
            h11_max_incomplete_event_size=MAX_HEADER_BYTES,
            timeout_keep_alive=5,
            log_config=None,
            access_log=False,
            **options,
        )
        self.header_timeout = header_timeout


class ShutdownFirstServer(uvicorn.Server):
    """uvicorn waits for every open response before the app's shutdown runs, and a live stream never ends
    by itself: so the streams are ended as shutdown begins. Their clients see the stream end (and reconnect
    with Last-Event-ID); commands in flight finish normally, uvicorn still waits for them."""

    async def shutdown(self, sockets: Any = None) -> None:
        streams = getattr(getattr(_served_app(self.config), "state", None), "streams", None)
        if streams is not None:
            await streams.close()
        await super().shutdown(sockets)


def _served_app(config: uvicorn.Config) -> Any:
    """The application itself, under the middleware uvicorn wraps it in (each wrapper keeps it as `.app`)."""
    app = getattr(config, "loaded_app", None)
    while app is not None and not hasattr(app, "state") and hasattr(app, "app"):
        app = app.app
    return app


class Workers(Multiprocess):
    """uvicorn's workers, each a ShutdownFirstServer. A worker that dies stops the others and the
    service (exit 1), as `dealflow up` does with its parts: whatever runs the service restarts it,
    and a failure is never hidden behind a restarted worker."""

    def init_processes(self) -> None:
        for _ in range(self.processes_num):
            worker = _Worker(self.config, self.sockets)
            worker.start()
            self.processes.append(worker)

    def keep_subprocess_alive(self) -> None:
        if self.should_exit.is_set():
            return
        for worker in self.processes:
            if not worker.is_alive(timeout=self.config.timeout_worker_healthcheck):
                log.error("a worker stopped; stopping the service", pid=worker.pid, exit_code=worker.process.exitcode)
                self.failed = True
                self.should_exit.set()
                return

    def handle_hup(self) -> None:
        log.info("SIGHUP ignored: restart the service to reload its settings")

    failed = False


class _Worker(Process):
    @property
    def server(self) -> uvicorn.Server:
        if self._server is None:
            self._server = ShutdownFirstServer(config=self.config)
        return self._server


class DeadlineH11Protocol(H11Protocol):
    """uvicorn's h11 protocol, closing a connection whose request head has not arrived within the
    config's `header_timeout` seconds."""

    _head_deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self.conn.their_state is not h11.IDLE:
            self._disarm()  # the head is in

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing():
            self._arm()  # the next request on this connection gets its own deadline

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _arm(self) -> None:
        self._disarm()
        self._head_deadline = self.loop.call_later(self.config.header_timeout, self._too_slow)  # type: ignore[attr-defined]

    def _disarm(self) -> None:
        if self._head_deadline is not None:
            self._head_deadline.cancel()
            self._head_deadline = None

    def _too_slow(self) -> None:
        self._head_deadline = None
        if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
            waited = self.config.header_timeout  # type: ignore[attr-defined]
            log.info("slow client cut off", client=self.client, waited_seconds=waited, waiting_for="request head")
            self.transport.close()


def body_deadline(seconds: float) -> Any:
    """ASGI middleware: the whole request body must arrive within `seconds` of the first read (408 otherwise)."""

    def middleware(app: ASGIApp) -> ASGIApp:
        async def with_deadline(scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] != "http":
                await app(scope, receive, send)
                return
            loop = asyncio.get_running_loop()
            deadline: float | None = None
            body_done = False

            async def timed_receive() -> Message:
                nonlocal deadline, body_done
                if body_done:
                    return await receive()  # e.g. waiting for a disconnect while streaming
                if deadline is None:
                    deadline = loop.time() + seconds
                try:
                    message = await asyncio.wait_for(receive(), max(deadline - loop.time(), 0))
                except TimeoutError:
                    log.info("slow client cut off", waited_seconds=seconds, waiting_for="request body")
                    raise ClientException(f"the request body did not arrive within {seconds:g} seconds", status_code=408) from None
                body_done = message["type"] != "http.request" or not message.get("more_body", False)
                return message

            await app(scope, timed_receive, send)

        return with_deadline

    return middleware
