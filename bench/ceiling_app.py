"""The HTTP ceiling: a trivial Litestar POST endpoint with the same path and body as the
dealflow concession command, served the same way (uvicorn, uvloop, httptools).

    python -m uvicorn bench.ceiling_app:app --loop uvloop --http httptools
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from uuid import UUID, uuid4

from litestar import Litestar, get, post


@dataclass
class Concession:
    by: str
    what: str


@post("/deals/{deal_id:uuid}/concessions", status_code=201)
async def record_concession(deal_id: UUID, data: Concession) -> dict[str, Any]:
    return {"id": str(uuid4()), "deal": {"id": str(deal_id), "version": 1, "by": data.by, "what": data.what}}


@get("/health")
async def health() -> dict[str, str]:
    return {"status": "ok"}


app = Litestar(route_handlers=[record_concession, health], logging_config=None, openapi_config=None)
