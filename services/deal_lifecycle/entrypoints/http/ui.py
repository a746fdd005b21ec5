"""The ops dashboard: one HTML page and its static assets, shipped in the package (ui_assets/).

The pages carry no data, so they are open routes: the page's JavaScript asks the JSON API for
everything, with the caller's bearer token, and shows only what the API answers for that token.
Nothing is loaded from elsewhere (no CDN), and a strict Content-Security-Policy says so to the browser.
Not in the OpenAPI document: these are pages, not the API.
"""

from __future__ import annotations

from functools import cache
from importlib.resources import files
from typing import Any
from uuid import UUID

from litestar import Response, get
from litestar.params import FromPath

from dealflow.deal_lifecycle.domain.errors import NotFound
from dealflow.deal_lifecycle.entrypoints.http.context import OPEN_ROUTE

CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}
# The only files served, by name: nothing else under the package can be asked for. (Litestar adds
# "; charset=utf-8" to text types.)
ASSETS = {
    "app.css": "text/css",
    "app.js": "text/javascript",
    "pipeline.js": "text/javascript",
    "deal.js": "text/javascript",
    "alerts.js": "text/javascript",
}
PAGE = "index.html"
HTML = "text/html"


@cache
def _read(name: str) -> bytes:
    return files("dealflow.deal_lifecycle.entrypoints.http").joinpath("ui_assets", name).read_bytes()


def _page() -> Response[bytes]:
    return Response(_read(PAGE), media_type=HTML, headers=HEADERS)


# The same page for each: its script decides what to show by the address.
@get(["/ui", "/ui/alerts"], include_in_schema=False, opt=OPEN_ROUTE, sync_to_thread=False)
def ui_page() -> Response[bytes]:
    return _page()


@get("/ui/deals/{deal_id:uuid}", include_in_schema=False, opt=OPEN_ROUTE, sync_to_thread=False)
def ui_deal_page(deal_id: FromPath[UUID]) -> Response[bytes]:
    del deal_id  # the page reads it from its address
    return _page()


@get("/ui/static/{name:str}", include_in_schema=False, opt=OPEN_ROUTE, sync_to_thread=False)
def ui_asset(name: FromPath[str]) -> Response[Any]:
    media_type = ASSETS.get(name)
    if media_type is None:
        raise NotFound(f"no dashboard asset {name[:100]!r}")
    return Response(_read(name), media_type=media_type, headers=HEADERS)


UI_ROUTES = [ui_page, ui_deal_page, ui_asset]
