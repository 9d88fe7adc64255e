"""The Neo4j Browser guide and style sheet, served for Browser's `:play` and `:style` commands.

Neo4j Browser fetches a remote guide (`:play URL`) or style sheet (`:style URL`) from the page,
so it needs two things: the host must be in the server's
`browser.remote_content_hostname_whitelist` (the local stack's neo4j.conf allows localhost and
127.0.0.1), and the response must allow cross-origin reads. Browser asks for guides with
`Pragma` and `Cache-Control` request headers, which makes the browser send a CORS preflight
first; both are answered here.

Open like `/healthz`: the files are static documentation shipped with the product
(`cypher/browser/`), they hold no data, and Browser cannot send an API key with them.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, HTTPException, Request, Response
from fastapi.responses import HTMLResponse, PlainTextResponse

from ringwatch.config import ApiConfig, StackConfig
from ringwatch.graph.schema import cypher_dir

GUIDE_ROUTE = "/browser/guide"
STYLE_ROUTE = "/browser/style.grass"

_CORS = {
    # Static, public documentation without credentials: any Browser origin may read it.
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Allow-Methods": "GET, OPTIONS",
    "Access-Control-Max-Age": "600",
}
_NO_CACHE = {"Cache-Control": "no-cache"}
# The guide is written for the default address; it is served with the address it was asked on.
_WRITTEN_FOR = b"http://127.0.0.1:8000"

router = APIRouter(tags=["browser"])


def browser_dir() -> Path:
    return cypher_dir() / "browser"


def _serve(name: str, media_type: str, request: Request) -> Response:
    path = browser_dir() / name
    try:
        content = path.read_bytes()
    except OSError:
        raise HTTPException(status_code=404, detail=f"{name} is not installed") from None
    here = str(request.base_url).rstrip("/").encode()
    content = content.replace(_WRITTEN_FOR, here)
    return Response(content, media_type=media_type, headers={**_CORS, **_NO_CACHE})


def _preflight(request: Request) -> Response:
    asked = request.headers.get("access-control-request-headers", "")
    allowed = asked or "pragma, cache-control, content-type"
    return Response(status_code=204, headers={**_CORS, "Access-Control-Allow-Headers": allowed})


@router.get(GUIDE_ROUTE, response_class=HTMLResponse)
def guide(request: Request) -> Response:
    """The investigation guide for Neo4j Browser: `:play http://127.0.0.1:8000/browser/guide`."""
    return _serve("guide.html", "text/html; charset=utf-8", request)


@router.get(STYLE_ROUTE, response_class=PlainTextResponse)
def style(request: Request) -> Response:
    """The Browser style sheet: `:style http://127.0.0.1:8000/browser/style.grass`."""
    return _serve("style.grass", "text/plain; charset=utf-8", request)


@router.options(GUIDE_ROUTE, include_in_schema=False)
def guide_preflight(request: Request) -> Response:
    return _preflight(request)


@router.options(STYLE_ROUTE, include_in_schema=False)
def style_preflight(request: Request) -> Response:
    return _preflight(request)


def _loopback(host: str) -> str:
    # A server bound to every interface is still reached on loopback from this machine.
    return "127.0.0.1" if host in ("0.0.0.0", "::", "") else host  # noqa: S104


def api_base_url(api: ApiConfig) -> str:
    return f"http://{_loopback(api.host)}:{api.port}"


def browser_url(stack: StackConfig) -> str:
    return f"http://127.0.0.1:{stack.neo4j_http_port}/browser/"


def play_command(api: ApiConfig) -> str:
    return f":play {api_base_url(api)}{GUIDE_ROUTE}"


def style_command(api: ApiConfig) -> str:
    return f":style {api_base_url(api)}{STYLE_ROUTE}"
