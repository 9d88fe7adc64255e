"""What routes receive: the graph runner and the settings of the running app."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from ringwatch.config import Settings
from ringwatch.graph.db import QueryRunner


def _graph(request: Request) -> QueryRunner:
    runner: QueryRunner = request.app.state.graph
    return runner


def _settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


Graph = Annotated[QueryRunner, Depends(_graph)]
AppSettings = Annotated[Settings, Depends(_settings)]
