"""The FastAPI application: for now health and readiness; the /v1 API grows on this."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from fastapi.responses import JSONResponse

from ringwatch import __version__
from ringwatch.config import Settings, get_settings
from ringwatch.graph.db import Neo4jRunner, create_driver
from ringwatch.graph.schema import migrate
from ringwatch.service.readiness import check_kafka, check_neo4j


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        driver = create_driver(settings.neo4j)
        runner = Neo4jRunner(driver, settings.neo4j.database)
        if settings.api.apply_schema_on_start:
            migrate(runner)
        app.state.settings = settings
        app.state.graph = runner
        try:
            yield
        finally:
            driver.close()

    app = FastAPI(
        title="ringwatch",
        version=__version__,
        description="Identity-fraud rings and risk on a Neo4j identity graph.",
        lifespan=lifespan,
    )

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

    return app
