"""Checkpoints: the store-wide chain's head, anchored outside the database on JetStream.

The store-wide chain (integrity.py) shows any edit that was not followed by recomputing the
chain; someone with write access to the database can recompute it. So the head, entry number
and hash, is published to a stream the service can only append to: stream `DEALS_CHECKPOINTS`,
subject `deals.checkpoints.<store id>`, created with `deny_delete` and `deny_purge` (no message
can be deleted, and the stream cannot be purged, through the JetStream API). `dealflow verify`
recomputes the chain and compares it with every checkpoint: a chain recomputed after an edit no
longer matches the checkpoints published before it.

The publisher runs beside the relay in every service process with NATS. It publishes the head
once this process has chained `every_events` entries (events, receipts, snapshots) since its last
checkpoint, and every `every_seconds` when the head moved (also by other processes). Every process may publish:
a checkpoint's `Nats-Msg-Id` is the store id and entry number, so JetStream drops repeats.

Each checkpoint carries an HMAC-SHA256 made with a key kept in a file, neither in the database
nor on NATS (`var/checkpoint.key` beside the SQLite file, or DEALFLOW_CHECKPOINT_KEY_FILE; created
on first use, mode 0600; every process of one store needs the same file). Someone who can publish
on NATS but does not hold the key cannot add a checkpoint that verify accepts.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import os
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import nats
import structlog
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext
from nats.js.api import DiscardPolicy, RetentionPolicy, StorageType, StreamConfig
from nats.js.errors import NotFoundError

from dealflow.deal_lifecycle.adapters.bus import DUPLICATE_WINDOW_SECONDS
from dealflow.deal_lifecycle.application.integrity import Head, StoreFinding
from dealflow.deal_lifecycle.config import Settings
from dealflow.nats_connection import Credentials, shown
from dealflow.secret_files import write_once

log = structlog.get_logger("dealflow.checkpoints")

CHECKPOINTS_STREAM = "DEALS_CHECKPOINTS"
CHECKPOINTS_SUBJECTS = "deals.checkpoints.>"


def checkpoint_subject(store_id: str) -> str:
    return f"deals.checkpoints.{store_id}"


@dataclass(frozen=True)
class CheckpointSettings:
    every_events: int = 100
    every_seconds: float = 10.0
    key_file: Path | None = None  # None: checkpoints are not signed

    @classmethod
    def from_env(cls, settings: Settings, environ: Mapping[str, str] = os.environ) -> CheckpointSettings:
        return cls(
            every_events=int(environ.get("DEALFLOW_CHECKPOINT_EVERY_EVENTS", cls.every_events)),
            every_seconds=float(environ.get("DEALFLOW_CHECKPOINT_SECONDS", cls.every_seconds)),
            key_file=key_file(settings, environ),
        )


def key_file(settings: Settings, environ: Mapping[str, str] = os.environ) -> Path:
    return Path(environ.get("DEALFLOW_CHECKPOINT_KEY_FILE") or settings.sqlite_path.parent / "checkpoint.key")


def load_key(path: Path, *, create: bool = False) -> bytes | None:
    """The signing key (64 hex digits in the file); created once, atomically, when asked and missing."""
    if create:
        write_once(path, (secrets.token_hex(32) + "\n").encode())
    try:
        return bytes.fromhex(path.read_text().strip())
    except FileNotFoundError:
        return None


@dataclass(frozen=True)
class Checkpoint:
    store_id: str
    seq: int
    hash: str
    at: str
    mac: str | None = None  # HMAC-SHA256 of the four fields above, when signed

    def signed(self, key: bytes) -> Checkpoint:
        return Checkpoint(self.store_id, self.seq, self.hash, self.at, self._mac(key))

    def signed_by(self, key: bytes) -> bool:
        return self.mac is not None and hmac.compare_digest(self.mac, self._mac(key))

    def _mac(self, key: bytes) -> str:
        message = "\x1f".join((self.store_id, str(self.seq), self.hash, self.at)).encode()
        return hmac.new(key, message, hashlib.sha256).hexdigest()

    def body(self) -> bytes:
        document: dict[str, Any] = {"store_id": self.store_id, "seq": self.seq, "hash": self.hash, "at": self.at}
        if self.mac is not None:
            document["hmac_sha256"] = self.mac
        return json.dumps(document).encode()

    @classmethod
    def parse(cls, data: bytes) -> Checkpoint:
        document = json.loads(data)
        mac = document.get("hmac_sha256")
        return cls(str(document["store_id"]), int(document["seq"]), str(document["hash"]), str(document["at"]), None if mac is None else str(mac))


def checkpoints_stream_config() -> StreamConfig:
    return StreamConfig(
        name=CHECKPOINTS_STREAM,
        subjects=[CHECKPOINTS_SUBJECTS],
        retention=RetentionPolicy.LIMITS,
        storage=StorageType.FILE,
        discard=DiscardPolicy.NEW,  # no limits are set: nothing old is ever dropped to make room
        duplicate_window=DUPLICATE_WINDOW_SECONDS,
        deny_delete=True,
        deny_purge=True,
        allow_rollup_hdrs=False,
    )


async def ensure_checkpoints_stream(js: JetStreamContext) -> None:
    """Create the stream if it is missing; an existing one is left as it is (never loosened)."""
    try:
        await js.stream_info(CHECKPOINTS_STREAM)
    except NotFoundError:
        await js.add_stream(checkpoints_stream_config())


class CheckpointPublisher:
    def __init__(self, recorder: Any, nc: NATS, settings: CheckpointSettings | None = None) -> None:
        self.recorder = recorder
        self.js = nc.jetstream(timeout=5)
        self.settings = settings or CheckpointSettings()
        self.key = None if self.settings.key_file is None else load_key(self.settings.key_file, create=True)
        self.published = 0  # the last entry number this process anchored
        self._appended_then = 0  # the recorder's count of chained entries at the last checkpoint
        self._due = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None

    def wake(self) -> None:
        """Called from the writing thread each time events are stored: due once N more entries were chained."""
        if self._loop is not None and self.recorder.chain.appended - self._appended_then >= self.settings.every_events:
            self._loop.call_soon_threadsafe(self._due.set)

    async def run(self, stop: asyncio.Event) -> None:
        self._loop = asyncio.get_running_loop()
        await ensure_checkpoints_stream(self.js)
        while not stop.is_set():
            self._due.clear()
            self._appended_then = self.recorder.chain.appended
            await self.publish_head()
            waiting = [asyncio.ensure_future(self._due.wait()), asyncio.ensure_future(stop.wait())]
            _, pending = await asyncio.wait(waiting, timeout=self.settings.every_seconds, return_when=asyncio.FIRST_COMPLETED)
            for task in pending:
                task.cancel()
        await self.publish_head()  # the last word on the way out

    async def publish_head(self) -> Checkpoint | None:
        head: Head | None = await asyncio.to_thread(self.recorder.select_chain_head)
        if head is None or head.seq <= self.published:
            return None
        checkpoint = Checkpoint(head.store_id, head.seq, head.hash, datetime.now(UTC).isoformat(timespec="milliseconds"))
        if self.key is not None:
            checkpoint = checkpoint.signed(self.key)
        await self.js.publish(
            checkpoint_subject(head.store_id),
            checkpoint.body(),
            headers={"Nats-Msg-Id": f"{head.store_id}:{head.seq}", "Content-Type": "application/json"},
        )
        self.published = head.seq
        log.info("checkpoint published", store_id=head.store_id, seq=head.seq)
        return checkpoint


class CheckpointsUnreachable(Exception):
    pass


async def read_checkpoints(
    servers: list[str], store_id: str, *, timeout: float = 5.0, credentials: Credentials | None = None
) -> list[Checkpoint]:
    """Every checkpoint published for this store, in publishing order."""
    async def quiet(_: Exception) -> None:
        pass  # the failure is reported once, below, not as a traceback per attempt

    try:
        nc = await asyncio.wait_for(
            nats.connect(
                servers, connect_timeout=timeout, allow_reconnect=False, max_reconnect_attempts=1, error_cb=quiet,
                **(credentials or Credentials()).options(),
            ),
            timeout=timeout * 2,
        )
    except Exception as e:  # noqa: BLE001 - any failure to connect means "not compared"
        raise CheckpointsUnreachable(f"cannot reach NATS at {', '.join(shown(servers))}: {type(e).__name__}: {e}") from None
    try:
        js = nc.jetstream(timeout=timeout)
        subject = checkpoint_subject(store_id)
        try:
            info = await js.stream_info(CHECKPOINTS_STREAM, subjects_filter=subject)
        except NotFoundError:
            return []
        expected = (info.state.subjects or {}).get(subject, 0)
        if expected == 0:
            return []
        subscription = await js.subscribe(subject, stream=CHECKPOINTS_STREAM, ordered_consumer=True)
        checkpoints = []
        for _ in range(expected):
            message = await subscription.next_msg(timeout=timeout)
            try:
                checkpoints.append(Checkpoint.parse(message.data))
            except (ValueError, KeyError, TypeError):
                # Not something the service wrote: kept, and reported as malformed by compare().
                checkpoints.append(Checkpoint(store_id, 0, "", f"message {message.metadata.sequence.stream} (malformed)"))
        await subscription.unsubscribe()
        return checkpoints
    except (TimeoutError, nats.errors.Error) as e:
        raise CheckpointsUnreachable(f"cannot read the checkpoints from NATS: {type(e).__name__}: {e}") from None
    finally:
        await nc.close()


@dataclass(frozen=True)
class Comparison:
    checkpoints: int
    latest: Checkpoint | None  # the one with the highest entry number that matched
    findings: list[StoreFinding]


def compare(checkpoints: Iterable[Checkpoint], hashes: Mapping[int, str], key: bytes | None = None) -> Comparison:
    """Each checkpoint against the recomputed store-wide chain: the hash at its entry must be the one it names.

    With the key, a checkpoint that is not signed by it is reported and not relied on.
    """
    findings, latest, count = [], None, 0
    end = max(hashes, default=0)
    for checkpoint in sorted(checkpoints, key=lambda c: c.seq):
        count += 1
        recomputed = hashes.get(checkpoint.seq)
        if checkpoint.seq < 1:
            findings.append(StoreFinding(0, "malformed", f"the checkpoints stream holds a {checkpoint.at} that is not a checkpoint"))
        elif key is not None and not checkpoint.signed_by(key):
            findings.append(StoreFinding(checkpoint.seq, "unsigned", f"the checkpoint of {checkpoint.at} for entry {checkpoint.seq} is not signed with this store's checkpoint key"))
        elif recomputed is None:
            findings.append(StoreFinding(checkpoint.seq, "truncated", f"the checkpoint of {checkpoint.at} names entry {checkpoint.seq}, but the chain now ends at entry {end}"))
        elif recomputed != checkpoint.hash:
            findings.append(StoreFinding(checkpoint.seq, "rewritten", f"entry {checkpoint.seq} is not what the checkpoint of {checkpoint.at} anchored: the store was changed and its chain recomputed"))
        else:
            latest = checkpoint
    return Comparison(count, latest, findings)
