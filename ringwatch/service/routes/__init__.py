"""The /v1 API, one router per resource. Add a router here to serve it."""

from __future__ import annotations

from fastapi import APIRouter

from ringwatch.service.routes import (
    alerts,
    events,
    identifiers,
    labels,
    rings,
    scoring,
    subscribers,
    system,
)

ROUTERS: list[APIRouter] = [
    subscribers.router,
    identifiers.router,
    rings.router,
    system.router,
    scoring.router,
    labels.router,
    alerts.router,
    events.router,
]
