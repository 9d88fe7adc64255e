"""Operational views: drift of scores and alert rates."""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel

from ringwatch.graph.drift import current_drift
from ringwatch.service.deps import Graph
from ringwatch.service.security import ReadKey

router = APIRouter(prefix="/v1", tags=["monitoring"])


class DriftOut(BaseModel):
    drifted: bool
    score_drift: bool
    alert_rate_drift: bool
    ks_statistic: float
    ks_p_value: float
    alert_rate_ratio: float
    alerts_last_day: int
    baseline_alerts_per_day: float
    baseline_size: int
    current_size: int


@router.get("/drift", response_model=DriftOut)
def drift(graph: Graph, _: ReadKey) -> DriftOut:
    """Score-distribution drift (two-sample KS, latest scoring run against the earliest kept)
    and alert-rate drift (last day against the mean of the seven days before)."""
    measured = current_drift(graph)
    assert measured is not None
    return DriftOut(drifted=measured.drifted, **vars(measured))
