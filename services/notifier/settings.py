"""The notifier's settings, from the environment."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from dealflow.nats_connection import Credentials


@dataclass(frozen=True)
class NotifierSettings:
    nats_url: str | None = None
    # Unset: the sample rules shipped with the package (deploy/alert-rules.toml in a checkout).
    rules_path: Path | None = None
    sqlite_path: Path = Path("var/notifier.sqlite3")
    database_url: str | None = None
    # How the notifier proves who it is to NATS (NATS_CREDS, NATS_NKEY_SEED, or user:password in NATS_URL).
    nats_credentials: Credentials = Credentials()

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> NotifierSettings:
        return cls(
            nats_url=environ.get("NATS_URL") or None,
            rules_path=Path(environ["DEALFLOW_ALERT_RULES"]) if environ.get("DEALFLOW_ALERT_RULES") else None,
            sqlite_path=Path(environ.get("DEALFLOW_NOTIFIER_DB", cls.sqlite_path)),
            database_url=environ.get("DEALFLOW_NOTIFIER_DATABASE_URL") or None,
            nats_credentials=Credentials.from_env(environ),
        )

    @property
    def nats_servers(self) -> list[str]:
        return [server.strip() for server in (self.nats_url or "").split(",") if server.strip()]

    def describe_store(self) -> str:
        if self.database_url is None:
            return f"SQLite at {self.sqlite_path}"
        url = urlsplit(self.database_url)
        return f"PostgreSQL at {url.hostname}:{url.port or 5432}{url.path}"  # never the password
