"""Errors as JSON: ``{"error": {"code", "message", "details"}}``, never a stack trace."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from ringwatch.graph.exceptions import GraphError

log = logging.getLogger(__name__)


class ApiError(Exception):
    """An error the API reports to its caller with a status and a stable code."""

    def __init__(
        self, status: int, code: str, message: str, details: dict[str, Any] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.details = details or {}


def not_found(kind: str, ident: str) -> ApiError:
    # The id is the caller's own input; echoing it back is safe and helps them.
    return ApiError(404, "not_found", f"no {kind} with id {ident!r}", {"kind": kind})


class ErrorDetail(BaseModel):
    code: str
    message: str
    details: dict[str, Any] = Field(default_factory=dict)


class ErrorOut(BaseModel):
    """Every error the API returns has this shape."""

    error: ErrorDetail


# Documented on every /v1 operation, so clients (and schema checkers) know the error shape.
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorOut, "description": description}
    for status, description in {
        400: "Malformed request (e.g. a cursor this API did not return).",
        401: "No API key, or not a valid one.",
        403: "The API key lacks the scope this operation needs.",
        404: "No such subscriber, ring, alert or identifier kind.",
        409: "The request conflicts with the current state.",
        413: "The request body is too large.",
        422: "The request is not valid; `details.problems` says where.",
        503: "The graph database or Kafka is unavailable, or the server is at capacity "
        "(`overloaded`, with Retry-After); retry later.",
    }.items()
}


def error_body(code: str, message: str, details: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "details": details or {}}}


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def api_error(_: Request, exc: ApiError) -> JSONResponse:
        return JSONResponse(error_body(exc.code, exc.message, exc.details), exc.status)

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        problems = [
            {
                "location": ".".join(str(part) for part in error.get("loc", ())),
                "problem": error.get("msg", "invalid"),
            }
            for error in exc.errors()
        ]
        return JSONResponse(
            error_body("invalid_request", "the request is not valid", {"problems": problems}),
            422,
        )

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {401: "unauthorized", 403: "forbidden", 404: "not_found", 405: "method_not_allowed",
                413: "too_large"}.get(exc.status_code, "http_error")  # fmt: skip
        return JSONResponse(error_body(code, str(exc.detail)), exc.status_code, headers=exc.headers)

    @app.exception_handler(GraphError)
    async def graph_down(_: Request, exc: GraphError) -> JSONResponse:
        log.warning("graph unavailable: %s", type(exc).__name__)
        return JSONResponse(
            error_body("unavailable", "the graph database is unavailable; retry later"), 503
        )

    @app.exception_handler(Exception)
    async def unexpected(_: Request, exc: Exception) -> JSONResponse:
        # The type only: messages may carry request data, and traces stay in our logs.
        log.exception("unexpected error (%s)", type(exc).__name__)
        return JSONResponse(error_body("internal", "internal error"), 500)
