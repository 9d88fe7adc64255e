"""Real HTTP receivers for delivery tests, and a checker for Slack Block Kit messages.

`WebhookReceiver` is a small threaded HTTP server on a free local port, standing in for n8n or
a Slack incoming webhook. It does what a careful receiver does: it checks the HMAC signature of
the exact body (and the bearer token, when one is expected), answers 401 when either is wrong,
and processes each `Idempotency-Key` once (a repeat is answered 200 but not processed again).
It can be told to fail (any status), to hang past the client's timeout, or be stopped
altogether (connection refused) and started again on the same port.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from collections import Counter
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Literal

Mode = Literal["ok", "fail", "hang"]


@dataclass(frozen=True)
class Received:
    """One request as the receiver saw it, and what it answered."""

    path: str
    headers: dict[str, str]
    body: bytes
    status: int
    signature_ok: bool
    token_ok: bool

    @property
    def key(self) -> str:
        return self.headers.get("idempotency-key", "")

    def json(self) -> Any:
        return json.loads(self.body)


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that gave up (timeout) leaves a broken pipe behind: expected, not news.
        pass


class WebhookReceiver:
    def __init__(self, *, secret: str, token: str | None = None, path_prefix: str = "") -> None:
        self.secret = secret
        self.token = token
        self.path_prefix = path_prefix
        self.mode: Mode = "ok"
        self.fail_status = 503
        self.retry_after: str | None = None
        self.hang_s = 2.0
        self.latency_s = 0.0
        self.requests: list[Received] = []
        self.processed: list[str] = []
        self._lock = threading.Lock()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self.port = 0

    # --- lifecycle ----------------------------------------------------------------------------

    def start(self) -> WebhookReceiver:
        """Listen (on the same port as before, after a `stop`)."""
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                receiver._handle(self)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = _Server(("127.0.0.1", self.port), Handler)
        self.port = int(self._server.server_address[1])
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Close the port: requests now fail with connection refused."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}{self.path_prefix}"

    # --- what arrived -------------------------------------------------------------------------

    def accepted(self) -> list[Received]:
        with self._lock:
            return [r for r in self.requests if 200 <= r.status < 300]

    def accepted_counts(self) -> Counter[str]:
        """2xx answers per idempotency key (duplicates included)."""
        return Counter(r.key for r in self.accepted())

    def processed_counts(self) -> Counter[str]:
        """Keys processed, after deduplication: exactly once each is the goal."""
        with self._lock:
            return Counter(self.processed)

    def first_accepted(self, key: str) -> Received:
        return next(r for r in self.accepted() if r.key == key)

    # --- handling -----------------------------------------------------------------------------

    def _handle(self, handler: BaseHTTPRequestHandler) -> None:
        length = int(handler.headers.get("Content-Length") or 0)
        body = handler.rfile.read(length)
        headers = {name.lower(): value for name, value in handler.headers.items()}
        expected = "sha256=" + hmac.new(self.secret.encode(), body, hashlib.sha256).hexdigest()
        signature_ok = hmac.compare_digest(expected, headers.get("x-ringwatch-signature", ""))
        token_ok = self.token is None or hmac.compare_digest(
            f"Bearer {self.token}", headers.get("authorization", "")
        )
        if self.latency_s:
            time.sleep(self.latency_s)
        mode = self.mode
        if mode == "hang":
            time.sleep(self.hang_s)
        if not (signature_ok and token_ok):
            status = 401
        elif mode != "ok":
            status = self.fail_status
        else:
            status = 200
        duplicate = False
        with self._lock:
            if status == 200:
                key = headers.get("idempotency-key", "")
                duplicate = key in self.processed
                if not duplicate:
                    self.processed.append(key)
            self.requests.append(
                Received(handler.path, headers, body, status, signature_ok, token_ok)
            )
        answer = json.dumps({"ok": status == 200, "duplicate": duplicate}).encode()
        try:
            handler.send_response(status)
            if status != 200 and self.retry_after is not None:
                handler.send_header("Retry-After", self.retry_after)
            handler.send_header("Content-Type", "application/json")
            handler.send_header("Content-Length", str(len(answer)))
            handler.end_headers()
            handler.wfile.write(answer)
        except OSError:
            pass  # the client timed out and left


# --- Slack Block Kit ------------------------------------------------------------------------------

_TEXT_TYPES = {"plain_text", "mrkdwn"}


def _text_object(value: Any, where: str, *, limit: int, plain_only: bool = False) -> list[str]:
    errors: list[str] = []
    if not isinstance(value, dict):
        return [f"{where}: not a text object"]
    kind = value.get("type")
    if kind not in _TEXT_TYPES or (plain_only and kind != "plain_text"):
        errors.append(f"{where}: text type {kind!r}")
    allowed = {"type", "text", "emoji"} if kind == "plain_text" else {"type", "text", "verbatim"}
    if set(value) - allowed:
        errors.append(f"{where}: unknown keys {sorted(set(value) - allowed)}")
    text = value.get("text")
    if not isinstance(text, str) or not text:
        errors.append(f"{where}: empty text")
    elif len(text) > limit:
        errors.append(f"{where}: {len(text)} characters > {limit}")
    return errors


def block_kit_errors(message: Any) -> list[str]:
    """What is wrong with a Slack message by Block Kit's rules (empty when it is valid).

    Checks the parts ringwatch uses: header, section (text, fields), context, actions with link
    buttons, and the limits Slack enforces on each.
    """
    if not isinstance(message, dict):
        return ["message is not an object"]
    errors: list[str] = []
    if not isinstance(message.get("text"), str) or not message["text"]:
        errors.append("no fallback text")
    blocks = message.get("blocks")
    if not isinstance(blocks, list) or not 1 <= len(blocks) <= 50:
        return [*errors, "blocks must be a list of 1 to 50"]
    action_ids: list[str] = []
    for index, block in enumerate(blocks):
        where = f"blocks[{index}]"
        if not isinstance(block, dict):
            errors.append(f"{where}: not an object")
            continue
        kind = block.get("type")
        if "block_id" in block and len(str(block["block_id"])) > 255:
            errors.append(f"{where}: block_id too long")
        if kind == "header":
            errors += _text_object(block.get("text"), f"{where}.text", limit=150, plain_only=True)
            extra = set(block) - {"type", "text", "block_id"}
        elif kind == "section":
            if "text" not in block and "fields" not in block:
                errors.append(f"{where}: section without text or fields")
            if "text" in block:
                errors += _text_object(block["text"], f"{where}.text", limit=3000)
            if "fields" in block:
                fields = block["fields"]
                if not isinstance(fields, list) or not 1 <= len(fields) <= 10:
                    errors.append(f"{where}: 1 to 10 fields")
                else:
                    for n, item in enumerate(fields):
                        errors += _text_object(item, f"{where}.fields[{n}]", limit=2000)
            extra = set(block) - {"type", "text", "fields", "block_id", "accessory"}
        elif kind == "context":
            elements = block.get("elements")
            if not isinstance(elements, list) or not 1 <= len(elements) <= 10:
                errors.append(f"{where}: 1 to 10 context elements")
            else:
                for n, item in enumerate(elements):
                    errors += _text_object(item, f"{where}.elements[{n}]", limit=3000)
            extra = set(block) - {"type", "elements", "block_id"}
        elif kind == "actions":
            elements = block.get("elements")
            if not isinstance(elements, list) or not 1 <= len(elements) <= 25:
                errors.append(f"{where}: 1 to 25 action elements")
                elements = []
            for n, item in enumerate(elements):
                spot = f"{where}.elements[{n}]"
                if item.get("type") != "button":
                    errors.append(f"{spot}: only buttons are expected")
                    continue
                errors += _text_object(item.get("text"), f"{spot}.text", limit=75, plain_only=True)
                url = item.get("url")
                if not isinstance(url, str) or not url.startswith("http") or len(url) > 3000:
                    errors.append(f"{spot}: url missing, not http(s) or over 3000 characters")
                action_id = item.get("action_id")
                if action_id is not None:
                    if not isinstance(action_id, str) or not 1 <= len(action_id) <= 255:
                        errors.append(f"{spot}: bad action_id")
                    action_ids.append(str(action_id))
                if set(item) - {"type", "text", "url", "action_id", "value", "style"}:
                    errors.append(f"{spot}: unknown keys")
            extra = set(block) - {"type", "elements", "block_id"}
        else:
            errors.append(f"{where}: unexpected block type {kind!r}")
            continue
        if extra:
            errors.append(f"{where}: unknown keys {sorted(extra)}")
    if len(action_ids) != len(set(action_ids)):
        errors.append("action_id values must be unique in a message")
    return errors
