"""The n8n workflows in deploy/n8n: valid export shape, wired as documented, and their signature
check agrees with ringwatch's signing (run under Node.js when it is installed)."""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
import time
from collections import deque
from pathlib import Path
from typing import Any

import pytest

from ringwatch.config import AlertsConfig, ScoringConfig
from ringwatch.delivery.messages import alert_document, n8n_body
from ringwatch.delivery.signing import signed_headers
from ringwatch.delivery.sinks import n8n_url
from ringwatch.delivery.worker import sample_alert
from ringwatch.scoring.risk import Priority

WORKFLOWS = Path(__file__).resolve().parents[2] / "deploy" / "n8n"
PRIORITIES = ("p1", "p2", "p3", "p4")
SECRET = "workflow-test-secret"


def _load(priority: str) -> dict[str, Any]:
    data = json.loads((WORKFLOWS / f"ringwatch-{priority}.json").read_text())
    assert isinstance(data, dict)
    return data


def _nodes(workflow: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {node["name"]: node for node in workflow["nodes"]}


def _targets(workflow: dict[str, Any], name: str) -> list[str]:
    outputs = workflow["connections"].get(name, {}).get("main", [])
    return [link["node"] for output in outputs for link in output]


def test_one_workflow_per_priority_and_nothing_else() -> None:
    files = sorted(path.name for path in WORKFLOWS.glob("*.json"))
    assert files == [f"ringwatch-{priority}.json" for priority in PRIORITIES]
    assert (WORKFLOWS / "README.md").is_file()


@pytest.mark.parametrize("priority", PRIORITIES)
def test_workflow_has_the_n8n_export_shape(priority: str) -> None:
    workflow = _load(priority)
    assert isinstance(workflow["name"], str) and workflow["name"]
    assert isinstance(workflow["nodes"], list) and workflow["nodes"]
    assert isinstance(workflow["connections"], dict)
    assert workflow["settings"]["executionOrder"] == "v1"
    assert workflow["active"] is False  # activated by a person, after credentials are set
    names = [node["name"] for node in workflow["nodes"]]
    ids = [node["id"] for node in workflow["nodes"]]
    assert len(set(names)) == len(names), "node names must be unique"
    assert len(set(ids)) == len(ids), "node ids must be unique"
    for node in workflow["nodes"]:
        assert node["type"].startswith("n8n-nodes-base."), node["name"]
        assert isinstance(node["typeVersion"], int | float), node["name"]
        assert isinstance(node["parameters"], dict), node["name"]
        position = node["position"]
        assert isinstance(position, list) and len(position) == 2, node["name"]
        assert all(isinstance(value, int | float) for value in position), node["name"]


@pytest.mark.parametrize("priority", PRIORITIES)
def test_every_connection_joins_existing_nodes(priority: str) -> None:
    workflow = _load(priority)
    nodes = _nodes(workflow)
    for source, kinds in workflow["connections"].items():
        assert source in nodes, f"connection from unknown node {source!r}"
        assert set(kinds) == {"main"}
        for output in kinds["main"]:
            for link in output:
                assert link["node"] in nodes, f"{source} -> unknown node {link['node']!r}"
                assert link["type"] == "main"
                assert link["index"] == 0


@pytest.mark.parametrize("priority", PRIORITIES)
def test_the_webhook_matches_what_ringwatch_calls(priority: str) -> None:
    workflow = _load(priority)
    hooks = [n for n in workflow["nodes"] if n["type"] == "n8n-nodes-base.webhook"]
    assert len(hooks) == 1
    hook = hooks[0]["parameters"]
    assert hook["path"] == f"ringwatch-{priority}"
    assert hook["httpMethod"] == "POST"
    # The bearer token is checked by the node; the signature needs the raw body.
    assert hook["authentication"] == "headerAuth"
    assert hook["responseMode"] == "responseNode"
    assert hook["options"]["rawBody"] is True
    assert hooks[0]["webhookId"]
    url = n8n_url(AlertsConfig(n8n_base_url="http://n8n:5678"), priority.upper())
    assert url == f"http://n8n:5678/webhook/{hook['path']}"


@pytest.mark.parametrize("priority", PRIORITIES)
def test_every_path_verifies_first_and_ends_in_a_response(priority: str) -> None:
    workflow = _load(priority)
    nodes = _nodes(workflow)
    [hook] = [name for name, n in nodes.items() if n["type"] == "n8n-nodes-base.webhook"]
    assert _targets(workflow, hook) == ["Verify signature"]
    assert _targets(workflow, "Signature valid?") == ["Seen before?", "Reject (401)"]
    reached = {hook}
    queue = deque([hook])
    while queue:
        for target in _targets(workflow, queue.popleft()):
            if target not in reached:
                reached.add(target)
                queue.append(target)
    assert reached == set(nodes), f"unreachable: {set(nodes) - reached}"
    leaves = {name for name in nodes if not _targets(workflow, name)}
    assert all(nodes[name]["type"] == "n8n-nodes-base.respondToWebhook" for name in leaves)
    codes = {nodes[name]["parameters"]["options"]["responseCode"] for name in leaves}
    assert codes == {200, 401}


def test_p1_suspends_through_the_api_then_posts_to_slack_and_opens_a_ticket() -> None:
    workflow = _load("p1")
    nodes = _nodes(workflow)
    suspend = nodes["Suspend subscriber"]
    assert suspend["type"] == "n8n-nodes-base.httpRequest"
    assert suspend["parameters"]["method"] == "POST"
    assert suspend["parameters"]["url"].startswith("={{ $env.RINGWATCH_API }}/v1/subscribers/")
    assert suspend["parameters"]["url"].endswith("/suspend")
    assert suspend["parameters"]["genericAuthType"] == "httpHeaderAuth"
    assert suspend["credentials"]["httpHeaderAuth"]["name"] == "ringwatch API key"
    assert _targets(workflow, "Suspend?") == ["Suspend subscriber", "Post to Slack"]
    assert _targets(workflow, "Post to Slack") == ["Create ticket"]
    assert "$env.SLACK_WEBHOOK_URL" in nodes["Post to Slack"]["parameters"]["url"]
    assert "$env.TICKET_WEBHOOK_URL" in nodes["Create ticket"]["parameters"]["url"]


def test_p2_posts_to_slack_and_opens_a_ticket_and_p3_queues_for_review() -> None:
    p2 = _load("p2")
    assert _targets(p2, "Prepare messages") == ["Post to Slack"]
    assert _targets(p2, "Post to Slack") == ["Create ticket"]
    assert "Suspend subscriber" not in _nodes(p2)
    p3 = _nodes(_load("p3"))
    assert "$env.REVIEW_QUEUE_URL" in p3["Add to review queue"]["parameters"]["url"]
    assert "Post to Slack" not in p3


@pytest.mark.parametrize("priority", PRIORITIES)
def test_workflows_hold_no_secrets(priority: str) -> None:
    text = (WORKFLOWS / f"ringwatch-{priority}.json").read_text()
    for marker in ("hooks.slack.com", "Bearer ", "xoxb-", "sha256=0", "rw_"):
        assert marker not in text


# --- the Code nodes, run under Node.js --------------------------------------------------------

_HARNESS = r"""
const fs = require('fs');
const ctx = JSON.parse(fs.readFileSync(process.argv[2], 'utf8'));
const items = ctx.items;
const staticData = ctx.static || {};
const $env = ctx.env || {};
const $input = { first: () => items[0], all: () => items };
const $ = (name) => ({ first: () => ({ json: ctx.nodes[name] }) });
const $getWorkflowStaticData = () => staticData;
const helpers = {
  getBinaryDataBuffer: async (index, property) =>
    Buffer.from(items[index].binary[property].data, 'base64'),
};
const AsyncFunction = Object.getPrototypeOf(async function () {}).constructor;
const run = new AsyncFunction('$env', '$input', '$', '$getWorkflowStaticData', 'require', ctx.code);
run.call({ helpers }, $env, $input, $, $getWorkflowStaticData, require)
  .then((out) => console.log(JSON.stringify({ out, static: staticData })))
  .catch((error) => { console.error(error); process.exit(1); });
"""

needs_node = pytest.mark.skipif(shutil.which("node") is None, reason="Node.js is not installed")


def _run_code(
    tmp_path: Path,
    priority: str,
    node_name: str,
    items: list[dict[str, Any]],
    *,
    nodes: dict[str, Any] | None = None,
    static: dict[str, Any] | None = None,
) -> dict[str, Any]:
    code = _nodes(_load(priority))[node_name]["parameters"]["jsCode"]
    harness = tmp_path / "harness.js"
    harness.write_text(_HARNESS)
    context = tmp_path / "context.json"
    context.write_text(
        json.dumps(
            {
                "code": code,
                "items": items,
                "env": {"RINGWATCH_SIGNING_SECRET": SECRET},
                "nodes": nodes or {},
                "static": static or {},
            }
        )
    )
    node = shutil.which("node") or "node"
    done = subprocess.run(
        [node, str(harness), str(context)], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert isinstance(result, dict)
    return result


def _request(
    *, secret: str = SECRET, timestamp: int | None = None, tamper: bool = False
) -> tuple[dict[str, Any], str]:
    """A webhook item as n8n's Webhook node hands it on, for a request ringwatch signed."""
    document = alert_document(
        sample_alert(Priority.P1), AlertsConfig(), ScoringConfig(), test=False
    )
    sent_at = int(time.time()) if timestamp is None else timestamp
    body = n8n_body(document, sent_at)
    headers = signed_headers(secret, body, timestamp=sent_at, idempotency_key=document["id"])
    if tamper:
        body = body.replace(b'"P1"', b'"P4"')
    item = {
        "json": {"headers": {k.lower(): v for k, v in headers.items()}, "body": json.loads(body)},
        "binary": {
            "data": {"data": base64.b64encode(body).decode(), "mimeType": "application/json"}
        },
    }
    return item, str(document["id"])


@needs_node
@pytest.mark.parametrize("priority", PRIORITIES)
def test_verify_signature_accepts_what_ringwatch_signs(tmp_path: Path, priority: str) -> None:
    item, alert_id = _request()
    [out] = _run_code(tmp_path, priority, "Verify signature", [item])["out"]
    assert out["json"]["verified"] is True, out
    assert out["json"]["alert"]["id"] == alert_id
    assert out["json"]["idempotency_key"] == alert_id


@needs_node
@pytest.mark.parametrize(
    ("request_kwargs", "problem"),
    [
        ({"secret": "another-secret"}, "bad signature"),
        ({"tamper": True}, "bad signature"),
        ({"timestamp": 1_000_000_000}, "stale or mismatched timestamp"),
    ],
)
def test_verify_signature_rejects_forged_altered_or_old_requests(
    tmp_path: Path, request_kwargs: dict[str, Any], problem: str
) -> None:
    item, _ = _request(**request_kwargs)
    [out] = _run_code(tmp_path, "p1", "Verify signature", [item])["out"]
    assert out["json"]["verified"] is False
    assert out["json"]["problem"] == problem
    assert out["json"]["alert"] is None


@needs_node
def test_an_alert_is_remembered_only_after_its_actions(tmp_path: Path) -> None:
    item, alert_id = _request()
    [verified] = _run_code(tmp_path, "p1", "Verify signature", [item])["out"]
    first = _run_code(tmp_path, "p1", "Seen before?", [verified])
    assert first["out"][0]["json"]["duplicate"] is False
    remembered = _run_code(
        tmp_path, "p1", "Remember alert", [verified], nodes={"Verify signature": verified["json"]}
    )
    assert remembered["out"][0]["json"] == {"status": "accepted", "id": alert_id}
    again = _run_code(tmp_path, "p1", "Seen before?", [verified], static=remembered["static"])
    assert again["out"][0]["json"]["duplicate"] is True


@needs_node
def test_p1_prepares_a_suspension_only_for_real_subscribers(tmp_path: Path) -> None:
    item, _ = _request()
    [verified] = _run_code(tmp_path, "p1", "Verify signature", [item])["out"]
    [prepared] = _run_code(tmp_path, "p1", "Prepare messages", [verified])["out"]
    assert prepared["json"]["suspend"] is True
    assert "n8n suspended the subscriber" in prepared["json"]["slack"]["text"]
    assert prepared["json"]["ticket"]["priority"] == "P1"
    verified["json"]["alert"]["test"] = True
    [test_run] = _run_code(tmp_path, "p1", "Prepare messages", [verified])["out"]
    assert test_run["json"]["suspend"] is False
    assert test_run["json"]["slack"]["text"].startswith("*[TEST] P1")
