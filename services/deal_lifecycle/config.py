"""Settings, read once from the environment at the composition root."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

from eventsourcing.utils import get_topic

from dealflow.nats_connection import Credentials


@dataclass(frozen=True)
class Settings:
    # SQLite is the embedded default, so a fresh clone runs with nothing else installed.
    sqlite_path: Path = Path("var/dealflow.sqlite3")
    # postgresql://user:password@host:port/dbname?schema=name switches the store to PostgreSQL.
    database_url: str | None = None
    max_request_bytes: int = 64 * 1024
    # Slow clients are cut off: the request head (line and headers) and the body each have a deadline.
    header_timeout: float = 10.0
    body_timeout: float = 30.0
    # The Right Terms policy every decision is judged by; unset: the one shipped with the package
    # (deploy/policy.toml in a checkout), so an installed `dealflow` starts in any directory.
    policy_path: Path | None = None
    # nats://host:port[,nats://host:port...]; unset: `dealflow up` starts an embedded nats-server.
    nats_url: str | None = None
    # How many events the relay publishes before it saves its position.
    relay_batch_size: int = 500
    # How often the relay looks for events when nothing woke it (this process's commands, any other
    # process's over deals.relay.wake or PostgreSQL NOTIFY wake it at once).
    relay_poll_seconds: float = 1.0
    # How many `GET /stream` clients one instance serves at once; beyond, 503 too_many_streams.
    max_streams: int = 100
    # The public keys bearer tokens are verified against: a JWKS file or https:// URL. Unset: the
    # development key under var/ (made on first use), whose tokens `dealflow token` signs.
    auth_jwks: str | None = None
    # Claims a token must carry when set (iss, aud).
    auth_issuer: str | None = None
    auth_audience: str | None = None
    # How this process proves who it is to NATS (NATS_CREDS, NATS_NKEY_SEED, or user:password in NATS_URL).
    nats_credentials: Credentials = Credentials()
    # Group commit: concurrent commands are saved in one transaction; a batch waits at most this long
    # for the saves of commands still under way (0: every command commits alone), and holds at most so many.
    group_commit_ms: float = 2.0
    group_commit_max: int = 64
    # Deals kept loaded between commands (eventsourcing's aggregate cache, fast-forwarded from the
    # store on every use, so another process's writes are seen); 0: every command loads its deal.
    aggregate_cache: int = 1000

    @property
    def nats_servers(self) -> list[str]:
        return [server.strip() for server in (self.nats_url or "").split(",") if server.strip()]

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> Settings:
        return cls(
            sqlite_path=Path(environ.get("DEALFLOW_SQLITE_PATH", cls.sqlite_path)),
            database_url=environ.get("DEALFLOW_DATABASE_URL") or None,
            max_request_bytes=int(environ.get("DEALFLOW_MAX_REQUEST_BYTES", cls.max_request_bytes)),
            header_timeout=float(environ.get("DEALFLOW_HEADER_TIMEOUT", cls.header_timeout)),
            body_timeout=float(environ.get("DEALFLOW_BODY_TIMEOUT", cls.body_timeout)),
            policy_path=Path(environ["DEALFLOW_POLICY"]) if environ.get("DEALFLOW_POLICY") else None,
            nats_url=environ.get("NATS_URL") or None,
            relay_batch_size=int(environ.get("DEALFLOW_RELAY_BATCH", cls.relay_batch_size)),
            relay_poll_seconds=float(environ.get("DEALFLOW_RELAY_POLL_SECONDS", cls.relay_poll_seconds)),
            max_streams=int(environ.get("DEALFLOW_MAX_STREAMS", cls.max_streams)),
            auth_jwks=environ.get("DEALFLOW_AUTH_JWKS") or None,
            auth_issuer=environ.get("DEALFLOW_AUTH_ISSUER") or None,
            auth_audience=environ.get("DEALFLOW_AUTH_AUDIENCE") or None,
            nats_credentials=Credentials.from_env(environ),
            group_commit_ms=float(environ.get("DEALFLOW_GROUP_COMMIT_MS", cls.group_commit_ms)),
            group_commit_max=int(environ.get("DEALFLOW_GROUP_COMMIT_MAX", cls.group_commit_max)),
            aggregate_cache=int(environ.get("DEALFLOW_AGGREGATE_CACHE", cls.aggregate_cache)),
        )

    @property
    def state_dir(self) -> Path:
        """Where a local installation keeps its own files (var/): the SQLite stores, the development key, NATS's data."""
        return self.sqlite_path.parent

    def describe_policy(self) -> str:
        return str(self.policy_path) if self.policy_path else "built-in default"

    def describe_store(self) -> str:
        if self.database_url is None:
            return f"SQLite at {self.sqlite_path}"
        url = urlsplit(self.database_url)
        return f"PostgreSQL at {url.hostname}:{url.port or 5432}{url.path}"  # never the password

    def eventsourcing_env(self) -> dict[str, str]:
        """The eventsourcing library's own settings (PERSISTENCE_MODULE and friends), and the store's group commit."""
        group = {"DEALFLOW_GROUP_COMMIT_MS": str(self.group_commit_ms), "DEALFLOW_GROUP_COMMIT_MAX": str(self.group_commit_max)}
        # Fast-forward: a cached deal is brought up to date with the events stored after it, whoever wrote them.
        cache = {"AGGREGATE_CACHE_MAXSIZE": str(self.aggregate_cache), "AGGREGATE_CACHE_FASTFORWARD": "y"} if self.aggregate_cache > 0 else {}
        return {**group, **cache, **self._store_env()}

    def _store_env(self) -> dict[str, str]:
        if self.database_url is None:
            from dealflow.deal_lifecycle.adapters.storage import sqlite  # noqa: PLC0415

            self.sqlite_path.parent.mkdir(parents=True, exist_ok=True)
            return {
                "PERSISTENCE_MODULE": "eventsourcing.sqlite",
                "SQLITE_DBNAME": str(self.sqlite_path),
                "SQLITE_LOCK_TIMEOUT": "10",
                "APPLICATION_RECORDER_TOPIC": get_topic(sqlite.DealRecorder),
            }
        from dealflow.deal_lifecycle.adapters.storage import postgres  # noqa: PLC0415 - psycopg is loaded only when PostgreSQL is used

        url = urlsplit(self.database_url)
        if url.scheme not in ("postgresql", "postgres"):
            raise ValueError(f"DEALFLOW_DATABASE_URL must be a postgresql:// URL, not {url.scheme}://")
        schema = parse_qs(url.query).get("schema", [""])[0]
        return {
            "PERSISTENCE_MODULE": "eventsourcing.postgres",
            "POSTGRES_DBNAME": url.path.lstrip("/") or "postgres",
            "POSTGRES_HOST": url.hostname or "127.0.0.1",
            "POSTGRES_PORT": str(url.port or 5432),
            "POSTGRES_USER": unquote(url.username or "postgres"),
            "POSTGRES_PASSWORD": unquote(url.password or ""),
            "POSTGRES_SCHEMA": schema,
            "POSTGRES_POOL_SIZE": "5",
            "POSTGRES_MAX_OVERFLOW": "10",
            "POSTGRES_LOCK_TIMEOUT": "5",
            "APPLICATION_RECORDER_TOPIC": get_topic(postgres.DealRecorder),
        }
