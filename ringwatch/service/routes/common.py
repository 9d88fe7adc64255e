"""Shapes shared by several routes."""

from __future__ import annotations

import base64
import json
from typing import Any

from pydantic import BaseModel, Field

from ringwatch.scoring import reasons as reason_codec
from ringwatch.service.errors import ApiError

# Path parameters: ids are opaque strings; bounded and free of control characters.
ID_PATTERN = r"^[^\x00-\x1f\x7f]{1,200}$"


class ReasonOut(BaseModel):
    code: str
    text: str
    weight: float
    evidence: dict[str, Any] = Field(default_factory=dict)


def reasons_out(stored: str | None) -> list[ReasonOut]:
    return [ReasonOut(**reason.to_dict()) for reason in reason_codec.loads(stored)]


def native(value: Any) -> Any:
    """Neo4j temporal values to Python ones (JSON-ready through pydantic)."""
    return value.to_native() if hasattr(value, "to_native") else value


def encode_cursor(*values: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps(values).encode()).decode()


def decode_cursor(cursor: str | None, arity: int) -> list[Any] | None:
    if not cursor:
        return None
    try:
        values = json.loads(base64.urlsafe_b64decode(cursor.encode()))
    except (ValueError, json.JSONDecodeError) as exc:
        raise ApiError(400, "invalid_cursor", "the cursor is not one this API returned") from exc
    if not isinstance(values, list) or len(values) != arity:
        raise ApiError(400, "invalid_cursor", "the cursor is not one this API returned")
    return values
