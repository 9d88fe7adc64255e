"""The API's load shedder: at its limit, 503 at once; health and the alert stream exempt."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from starlette.types import Message, Receive, Scope, Send

from ringwatch.service.app import LoadShedder


class HeldApp:
    """Answers 200 once `release` is set, counting the requests it has seen."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.seen = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self.seen += 1
        await self.release.wait()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})


async def _request(app: Any, path: str) -> tuple[int, dict[str, str], bytes]:
    sent: list[Message] = []

    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Message) -> None:
        sent.append(message)

    scope = {"type": "http", "method": "GET", "path": path, "headers": []}
    await app(scope, receive, send)
    start = next(m for m in sent if m["type"] == "http.response.start")
    headers = {k.decode(): v.decode() for k, v in start.get("headers", [])}
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return start["status"], headers, body


def test_requests_past_the_limit_are_refused_at_once_and_the_rest_answered() -> None:
    async def scenario() -> None:
        held = HeldApp()
        shedder = LoadShedder(held, limit=2)
        first = [asyncio.create_task(_request(shedder, "/v1/rings")) for _ in range(2)]
        await asyncio.sleep(0)
        status, headers, body = await asyncio.wait_for(_request(shedder, "/v1/rings"), 1)
        assert status == 503 and headers["retry-after"] == "1"
        assert json.loads(body)["error"]["code"] == "overloaded"
        # Health and the alert stream pass whatever the load.
        exempt = [asyncio.create_task(_request(shedder, p))
                  for p in ("/healthz", "/v1/alerts/stream")]  # fmt: skip
        await asyncio.sleep(0)
        held.release.set()
        assert [r[0] for r in await asyncio.gather(*first, *exempt)] == [200] * 4
        assert held.seen == 4 and shedder.in_flight == 0
        # Capacity is back once the held requests are answered.
        assert (await _request(shedder, "/v1/rings"))[0] == 200

    asyncio.run(scenario())
