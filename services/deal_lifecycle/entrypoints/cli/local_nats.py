"""Where the CLI finds the NATS of a local `dealflow up`, and how it proves who it is there.

`dealflow up` writes the embedded server's address to var/nats.url and keeps each of its users'
nkey seeds under var/nats/credentials/; `watch` and `verify` use them when NATS_URL is not set.
"""

from __future__ import annotations

from pathlib import Path

from dealflow.deal_lifecycle.adapters.embedded_nats import credentials_file, inbox
from dealflow.deal_lifecycle.config import Settings
from dealflow.nats_connection import Credentials


def nats_url_file(settings: Settings) -> Path:
    """Where `dealflow up` says which NATS it started."""
    return settings.state_dir / "nats.url"


def embedded_nats_dir(settings: Settings) -> Path:
    return settings.state_dir / "nats"


def embedded_nats_url(settings: Settings) -> list[str]:
    """The NATS that `dealflow up` started here; none while it is not running (never a guess at
    localhost:4222, which could be any other NATS)."""
    url_file = nats_url_file(settings)
    if url_file.exists():
        return [url_file.read_text().strip()]
    return []


def nats_credentials(settings: Settings, user: str) -> Credentials:
    """NATS_CREDS or NATS_NKEY_SEED when set (or any NATS_URL); else, for the embedded NATS of `dealflow up`, `user`'s seed."""
    if settings.nats_credentials.options() or settings.nats_servers:
        return settings.nats_credentials
    seed = credentials_file(embedded_nats_dir(settings), user)
    return Credentials.seed_file(seed, inbox_prefix=inbox(user)) if seed.exists() else Credentials()
