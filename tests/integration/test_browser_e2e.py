"""Neo4j Browser end to end: an analyst's investigation of a ring, in a real (headless) browser.

On a simulated population with rings found by `analyze`, with the API serving the guide and the
style sheet, headless Chromium (driven by `tests/browser/investigate_ring.mjs`) opens the test
stack's Neo4j Browser, connects without authentication, loads the style with `:style URL`, opens
the guide with `:play URL`, pastes the "ring of a subscriber" investigation file (its `:param`
line set to a ring member), runs its query again on its own to see the result drawn (Browser
shows a script's statements only as statuses) and waits for the graph. The picture is saved in
the test's temporary directory; with `RINGWATCH_UPDATE_SCREENSHOT=1` it also replaces
`docs/img/browser-ring.png`, which the README shows (so running the suite leaves the work tree
as it was).

Needs Debian's `chromium` and `npm ci` in tests/browser (`make setup` installs both). Outside CI
a machine without Chromium skips this test; in CI (`CI` set) it must run.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from graphdatascience import GraphDataScience
from neo4j import Driver
from neo4j.graph import Node, Relationship

from ringwatch.config import ApiConfig, Settings
from ringwatch.graph.analyze import analyze
from ringwatch.graph.db import Neo4jRunner
from ringwatch.graph.investigate import load_kit
from ringwatch.graph.writer import GraphWriter
from ringwatch.ingest.prepare import Preparer
from ringwatch.ingest.simulate import SimulationConfig, simulate
from ringwatch.service.app import create_app
from ringwatch.service.browser_kit import GUIDE_ROUTE, STYLE_ROUTE, browser_url
from tests.cli_helpers import free_port

ROOT = Path(__file__).resolve().parents[2]
SCRIPT_DIR = ROOT / "tests" / "browser"
README_SCREENSHOT = ROOT / "docs" / "img" / "browser-ring.png"
CHROMIUM = os.environ.get("RINGWATCH_CHROMIUM", "/usr/bin/chromium")


def _browser_tools() -> tuple[str, str]:
    """(node, chromium), or skip (outside CI only) saying what is missing."""
    node = shutil.which("node")
    chromium = CHROMIUM if Path(CHROMIUM).exists() else shutil.which("chromium")
    if chromium is None and not os.environ.get("CI"):
        pytest.skip(f"Chromium not installed ({CHROMIUM}); 'make setup' installs it")
    assert chromium is not None, f"Chromium not installed ({CHROMIUM}); run 'make setup'"
    assert node is not None, "node not found; 'make setup' installs Node.js"
    assert (SCRIPT_DIR / "node_modules" / "playwright-core").is_dir(), (
        "playwright-core missing: run 'npm ci' in tests/browser (or 'make setup')"
    )
    return node, chromium


@pytest.fixture
def api(settings: Settings) -> Iterator[str]:
    """The real API on a free port, serving the guide and the style sheet."""
    port = free_port()
    app_settings = settings.model_copy(update={"api": ApiConfig(port=port)})
    server = uvicorn.Server(
        uvicorn.Config(create_app(app_settings), host="127.0.0.1", port=port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{base}/healthz", timeout=2).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    else:
        pytest.fail("the API did not start")
    yield base
    server.should_exit = True
    thread.join(timeout=30)


def _ring_member(graph: Neo4jRunner) -> tuple[str, str]:
    """(ring id, member id) of the riskiest active ring of at least three members."""
    rows = graph.read(
        "MATCH (r:Ring {status: 'active'})<-[:MEMBER_OF]-(s:Subscriber) "
        "WITH r, s ORDER BY s.id "
        "WITH r, collect(s.id) AS members WHERE size(members) >= 3 "
        "RETURN r.id AS ring, members[0] AS member "
        "ORDER BY coalesce(r.risk, 0) DESC, size(members) DESC, r.id LIMIT 1"
    )
    assert rows, "the simulated population should form at least one ring"
    return str(rows[0]["ring"]), str(rows[0]["member"])


def _expected_picture(driver: Driver, member: str) -> tuple[int, int]:
    """(nodes, relationships) the ring-of-subscriber query returns for `member`."""
    records, _, _ = driver.execute_query(
        load_kit()["ring_of_subscriber"].query, {"subscriberId": member}
    )
    values = [value for record in records for value in record.values()]
    nodes = {value.element_id for value in values if isinstance(value, Node)}
    relationships = {value.element_id for value in values if isinstance(value, Relationship)}
    return len(nodes), len(relationships)


def test_analyst_investigates_a_ring_in_neo4j_browser(
    graph: Neo4jRunner,
    driver: Driver,
    gds: GraphDataScience,
    settings: Settings,
    api: str,
    tmp_path: Path,
) -> None:
    node, chromium = _browser_tools()
    screenshot = tmp_path / "browser-ring.png"
    population = simulate(SimulationConfig(subscribers=300, months=1))
    preparer = Preparer()
    writer = GraphWriter(graph, hub_cap=settings.scoring.hub_cap)
    for family in (population.identity, population.labels, population.transactions):
        for start in range(0, len(family), 2000):
            writer.write([preparer.prepare(event) for event in family[start : start + 2000]])
    analyze(driver, gds, settings, publish=False)
    ring, member = _ring_member(graph)
    nodes, relationships = _expected_picture(driver, member)

    kit_query = load_kit()["ring_of_subscriber"]
    # The file as it is in the repository, with the example subscriber swapped for a member.
    text = kit_query.path.read_text(encoding="utf-8")
    example = f":param subscriberId => {kit_query.params['subscriberId']};"
    assert example in text
    file_text = text.replace(example, f":param subscriberId => '{member}';")

    config: dict[str, Any] = {
        "browserUrl": browser_url(settings.stack),
        "boltAddress": settings.neo4j.uri.removeprefix("bolt://"),
        "styleUrl": f"{api}{STYLE_ROUTE}",
        "guideUrl": f"{api}{GUIDE_ROUTE}",
        "fileText": file_text,
        "query": kit_query.query,
        "screenshot": str(screenshot),
        "executablePath": chromium,
        "timeoutMs": 60_000,
    }
    proc = subprocess.run(
        [node, str(SCRIPT_DIR / "investigate_ring.mjs"), json.dumps(config)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        cwd=SCRIPT_DIR,
    )
    lines = proc.stdout.strip().splitlines()
    assert lines, f"no answer from the browser script (exit {proc.returncode}): {proc.stderr}"
    seen = json.loads(lines[-1])
    assert "error" not in seen, f"{seen['error']}\n{proc.stderr[-2000:]}"
    assert seen["connected"]
    # The style sheet and the guide came from the API, through Browser's allowed hosts.
    assert "node.Ring" in seen["style"]["text"]
    assert seen["guide"]["slides"] >= 8
    assert "Top rings by risk" in seen["guide"]["text"]
    assert "POST /v1/labels" in seen["guide"]["text"]
    # The file as it is: Browser set the parameter and ran the query.
    assert seen["statements"] == ["Status: success", "Status: success"]
    # The picture holds exactly what the query returns, captioned by the style sheet.
    drawn = seen["graph"]
    assert (drawn["nodes"], drawn["relationships"]) == (nodes, relationships), (ring, member)
    ring_size = graph.read("MATCH (r:Ring {id: $id}) RETURN r.size AS size", {"id": ring})
    assert f"{ring} ({ring_size[0]['size']})" in [caption.strip() for caption in drawn["captions"]]
    assert screenshot.stat().st_size > 20_000
    assert screenshot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    if os.environ.get("RINGWATCH_UPDATE_SCREENSHOT") == "1":
        shutil.copyfile(screenshot, README_SCREENSHOT)
