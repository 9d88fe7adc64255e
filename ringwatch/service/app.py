"""The FastAPI application: the versioned /v1 API, health, readiness and metrics.

Every route but `/healthz`, `/readyz` (and the static Browser guide) needs an API key with the
right scope (`ringwatch.service.security`). Errors are JSON (`ringwatch.service.errors`).
Request bodies over `api.max_request_bytes` are refused before they are read. Logs carry the
route template, never the path (ids are personal data) nor the body.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

from anyio import to_thread
from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ringwatch import __version__
from ringwatch.config import Settings, get_settings
from ringwatch.graph.db import Neo4jRunner, create_driver
from ringwatch.graph.drift import current_drift
from ringwatch.graph.schema import migrate
from ringwatch.service import browser_kit
from ringwatch.service.errors import ERROR_RESPONSES, error_body, install_error_handlers
from ringwatch.service.metrics import StateCollector, request_histogram
from ringwatch.service.readiness import check_kafka, check_neo4j
from ringwatch.service.routes import ROUTERS
from ringwatch.service.security import KeyCache, ReadKey

log = logging.getLogger(__name__)


class BodyLimit:
    """Refuses request bodies over `limit` bytes with 413, by header and while streaming."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            await self._refuse(send)
            return
        received = 0

        async def counted() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit:
                    raise _BodyTooLargeError
            return message

        try:
            await self.app(scope, counted, send)
        except _BodyTooLargeError:
            await self._refuse(send)

    async def _refuse(self, send: Send) -> None:
        response = JSONResponse(
            error_body("too_large", f"request body over {self.limit} bytes"), status_code=413
        )
        await response({"type": "http"}, _no_receive, send)


class LoadShedder:
    """Answers 503 at once when `limit` requests are already in progress or waiting.

    Past the server's capacity, requests would otherwise queue without bound and every caller
    (a signup flow waiting for its score) would wait seconds; shedding keeps the answers that
    are given fast and tells the rest to retry. Health, metrics and the long-lived alert stream
    are never shed or counted.
    """

    EXEMPT = frozenset({"/healthz", "/readyz", "/metrics", "/v1/alerts/stream"})

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app, self.limit = app, limit
        self.in_flight = 0  # one event loop: no lock needed

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in self.EXEMPT:
            await self.app(scope, receive, send)
            return
        if self.in_flight >= self.limit:
            response = JSONResponse(
                error_body("overloaded", "the server is at capacity; retry shortly",
                           {"in_flight_limit": self.limit}),
                status_code=503, headers={"Retry-After": "1"},
            )  # fmt: skip
            await response(scope, _no_receive, send)
            return
        self.in_flight += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.in_flight -= 1


class _BodyTooLargeError(Exception):
    pass


async def _no_receive() -> Message:
    return {"type": "http.disconnect"}


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    registry = CollectorRegistry()
    latency = request_histogram(registry)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # The endpoints are synchronous and run on worker threads. Each spends most of its time
        # waiting for Neo4j, but the Python around it holds the interpreter lock: a few threads
        # keep the server busy, and many more (AnyIO's default is 40) only add lock contention,
        # so past saturation throughput falls instead of requests queueing.
        to_thread.current_default_thread_limiter().total_tokens = (
            settings.api.request_thread_count()
        )
        driver = create_driver(settings.neo4j)
        runner = Neo4jRunner(driver, settings.neo4j.database)
        if settings.api.apply_schema_on_start:
            migrate(runner)
        app.state.settings = settings
        app.state.graph = runner
        app.state.key_cache = KeyCache()
        collector = StateCollector(runner, settings, drift=lambda: current_drift(runner))
        registry.register(collector)
        try:
            yield
        finally:
            registry.unregister(collector)
            producer = getattr(app.state, "producer", None)
            if producer is not None:
                producer.flush(5.0)
                # Released now, not when the app object goes: an idle librdkafka producer keeps
                # reconnecting (and logging) after the broker has gone.
                app.state.producer = None
            driver.close()

    app = FastAPI(
        title="ringwatch",
        version=__version__,
        description=(
            "Identity-fraud rings and risk on a Neo4j identity graph. Every endpoint but health "
            "needs an API key (`X-API-Key` header) with the scope it names: read, write or admin."
        ),
        lifespan=lifespan,
    )
    install_error_handlers(app)

    app.add_middleware(LoadShedder, limit=settings.api.max_in_flight)

    @app.middleware("http")
    async def timing(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Any:
        started = time.perf_counter()
        response = await call_next(request)
        route = _route_template(request)
        latency.labels(request.method, route, str(response.status_code)).observe(
            time.perf_counter() - started
        )
        return response

    app.add_middleware(BodyLimit, limit=settings.api.max_request_bytes)

    @app.get("/healthz", tags=["health"])
    def healthz() -> dict[str, str]:
        """Liveness: the process answers. Open, no key needed."""
        return {"status": "ok", "version": __version__}

    @app.get("/readyz", tags=["health"])
    def readyz() -> JSONResponse:
        """Readiness: Neo4j and Kafka both reachable. Open, no key needed."""
        checks: dict[str, Any] = {
            "neo4j": check_neo4j(app.state.graph),
            "kafka": check_kafka(settings.kafka),
        }
        ready = all(check == "ok" for check in checks.values())
        return JSONResponse(
            {"status": "ready" if ready else "not ready", "checks": checks},
            status_code=200 if ready else 503,
        )

    @app.get(
        "/metrics",
        tags=["health"],
        response_class=Response,
        responses={code: ERROR_RESPONSES[code] for code in (401, 403, 503)},
    )
    def metrics(_: ReadKey) -> Response:
        """Prometheus metrics (read scope; configure the scrape with a bearer token)."""
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    for router in ROUTERS:
        app.include_router(router, responses=ERROR_RESPONSES)
    # The Browser guide and style sheet: static documentation, open like health.
    app.include_router(browser_kit.router)
    return app


def _route_template(request: Request) -> str:
    # The template (/v1/subscribers/{subscriber_id}) routing matched, never the path: ids stay
    # out of metrics.
    route = request.scope.get("route")
    return str(getattr(route, "path", "unmatched"))
