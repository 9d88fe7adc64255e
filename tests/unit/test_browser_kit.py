"""The Neo4j Browser guide and style sheet: their content, how they are served, how Browser may
fetch them (the stack's neo4j.conf), and `ringwatch browser`."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from ringwatch.config import ApiConfig, Settings, StackConfig
from ringwatch.graph.investigate import load_kit
from ringwatch.service import browser_kit
from ringwatch.service.app import create_app
from ringwatch.stack.servers import Neo4jServer
from tests.cli_helpers import free_port, run_cli

GUIDE = browser_kit.browser_dir() / "guide.html"
STYLE = browser_kit.browser_dir() / "style.grass"
NODE_LABELS = (
    "Subscriber",
    "Ring",
    "Device",
    "Address",
    "PaymentMethod",
    "Phone",
    "Email",
    "IP",
    "Alert",
    "Transaction",
)

# --- the guide --------------------------------------------------------------------------------


@dataclass
class Slide:
    heading: str = ""
    text: list[str] = field(default_factory=list)
    runnable: list[str] = field(default_factory=list)
    inputs: set[str] = field(default_factory=set)  # value-for
    bound: set[str] = field(default_factory=set)  # value-key


class GuideParser(HTMLParser):
    """Reads a Browser guide the way Browser uses it: slides, runnable blocks, bound inputs."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.article_classes: list[str] = []
        self.slides: list[Slide] = []
        self.in_slide = False
        self.pre_depth = 0
        self.pre_runnable = False
        self.pre_text: list[str] = []
        self.in_heading = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        self.tags.append(tag)
        if tag == "article":
            self.article_classes.append(attributes.get("class") or "")
        if tag == "slide":
            self.in_slide = True
            self.slides.append(Slide())
        if not self.in_slide:
            return
        slide = self.slides[-1]
        self.in_heading = tag == "h3"
        if tag == "pre":
            self.pre_depth += 1
            self.pre_runnable = "runnable" in (attributes.get("class") or "").split()
            self.pre_text = []
        if tag == "input" and attributes.get("value-for"):
            slide.inputs.add(str(attributes["value-for"]))
        if attributes.get("value-key"):
            slide.bound.add(str(attributes["value-key"]))

    def handle_endtag(self, tag: str) -> None:
        if tag == "h3":
            self.in_heading = False
        if tag == "slide":
            self.in_slide = False
        if tag == "pre" and self.pre_depth:
            self.pre_depth -= 1
            if self.pre_runnable:
                self.slides[-1].runnable.append("".join(self.pre_text).strip())

    def handle_data(self, data: str) -> None:
        if self.pre_depth:
            self.pre_text.append(data)
        elif self.in_slide:
            self.slides[-1].text.append(data)
            if self.in_heading:
                self.slides[-1].heading += data


@pytest.fixture(scope="module")
def guide() -> GuideParser:
    parser = GuideParser()
    parser.feed(GUIDE.read_text(encoding="utf-8"))
    parser.close()
    return parser


def _split_block(block: str) -> tuple[dict[str, str], str]:
    params: dict[str, str] = {}
    lines = block.splitlines()
    while lines and (lines[0].startswith(":param") or not lines[0].strip()):
        line = lines.pop(0)
        if line.strip():
            match = re.fullmatch(r":param (\w+) => (.+);", line.strip())
            assert match, line
            params[match.group(1)] = match.group(2)
    return params, "\n".join(lines).strip()


def test_guide_is_in_browser_guide_format(guide: GuideParser) -> None:
    assert "guide" in guide.article_classes
    assert "carousel" in guide.tags
    assert len(guide.slides) >= 8
    assert all(slide.text for slide in guide.slides)


def test_guide_walks_through_the_investigation_in_order(guide: GuideParser) -> None:
    headings = " | ".join(slide.heading for slide in guide.slides)
    steps = ["Top rings", "Open a ring", "Why", "share", "connected", "Alerts", "Label"]
    positions = [headings.find(step) for step in steps]
    assert all(p >= 0 for p in positions), headings
    assert positions == sorted(positions), headings
    labelling = next(slide for slide in guide.slides if "Label" in slide.heading)
    assert "POST /v1/labels" in " ".join(labelling.text)


def test_every_runnable_block_is_a_kit_query_after_its_params(guide: GuideParser) -> None:
    """Each question is two blocks: its `:param` lines, then the query exactly as in its file.

    (Browser runs a block holding both as a script and then shows only each statement's status,
    not the graph or table: so they are two blocks.)
    """
    kit = load_kit()
    allowed_commands = {
        ":style http://127.0.0.1:8000/browser/style.grass",
        ":config autoComplete: false",
    }
    used: set[str] = set()
    for slide in guide.slides:
        pending: dict[str, str] = {}
        for block in slide.runnable:
            if block in allowed_commands:
                continue
            params, query = _split_block(block)
            if not query:
                pending = params
                continue
            assert not params, f"a query block sets no parameters:\n{block}"
            matches = [name for name, kit_query in kit.items() if kit_query.query == query]
            assert matches, f"runnable block is not a cypher/investigate query:\n{query}"
            assert set(pending) == set(kit[matches[0]].params), matches[0]
            pending = {}
            used.update(matches)
    assert used == set(kit), f"kit queries missing from the guide: {set(kit) - used}"


def test_every_bound_value_has_an_input_on_its_slide(guide: GuideParser) -> None:
    for slide in guide.slides:
        assert slide.bound <= slide.inputs, (slide.bound, slide.inputs)


def test_guide_stays_within_what_browser_renders() -> None:
    text = GUIDE.read_text(encoding="utf-8")
    # Browser strips scripts and event handlers, and its page policy allows no outside images.
    assert "<script" not in text.lower()
    assert not re.search(r"\son\w+=", text)
    assert "<img" not in text.lower()


# --- the style sheet --------------------------------------------------------------------------


def parse_grass(text: str) -> dict[str, dict[str, str]]:
    """Browser's own GraSS reader (`parseGrassCSS` of `:style`), in Python."""
    rules: dict[str, str] = {}
    keyword, props = "", ""
    inside_string = inside_props = inside_binding = False
    for c in text:
        skip = True
        if c == "{":
            if inside_string:
                skip = False
            elif inside_props:
                inside_binding = True
            else:
                inside_props = True
        elif c == "}":
            if inside_string:
                skip = False
            elif inside_binding:
                inside_binding = False
            else:
                inside_props = False
                rules[keyword] = props
                keyword, props = "", ""
        elif c in "'\"":
            inside_string = not inside_string
        else:
            skip = False
        if skip:
            continue
        if inside_props:
            props += c
        elif not c.isspace():
            keyword += c
    parsed: dict[str, dict[str, str]] = {}
    for selector, body in rules.items():
        parsed[selector] = {}
        for declaration in body.split(";"):
            parts = declaration.split(":")
            if len(parts) == 2:
                parsed[selector][parts[0].strip()] = parts[1].strip()
    return parsed


@pytest.fixture(scope="module")
def grass() -> dict[str, dict[str, str]]:
    return parse_grass(STYLE.read_text(encoding="utf-8"))


def test_style_sheet_is_grass_that_browser_reads_whole() -> None:
    text = STYLE.read_text(encoding="utf-8")
    # GraSS has no comments: Browser would read one as part of the next selector.
    assert "/*" not in text and "//" not in text
    declarations = [d for d in re.findall(r"\{([^{}]*(?:\{[^{}]*\}[^{}]*)*)\}", text)]
    for body in declarations:
        for declaration in filter(str.strip, body.split(";")):
            assert declaration.count(":") == 1, f"Browser drops '{declaration.strip()}'"


def test_every_node_label_has_its_own_colour(grass: dict[str, dict[str, str]]) -> None:
    colours = {}
    for label in NODE_LABELS:
        rule = grass.get(f"node.{label}")
        assert rule is not None, label
        assert re.fullmatch(r"#[0-9A-F]{6}", rule.get("color", "")), label
        colours[label] = rule["color"]
    assert len(set(colours.values())) == len(NODE_LABELS), "two labels share a colour"


def test_captions_show_id_size_and_priority(grass: dict[str, dict[str, str]]) -> None:
    assert grass["node.Subscriber"]["caption"] == "{id}"
    assert "{id}" in grass["node.Ring"]["caption"] and "{size}" in grass["node.Ring"]["caption"]
    assert "{priority}" in grass["node.Alert"]["caption"]


def test_risk_marker_labels_come_after_the_labels_they_override(
    grass: dict[str, dict[str, str]],
) -> None:
    order = list(grass)
    for marked in ("Subscriber", "Ring"):
        for band in ("P1", "P2", "P3"):
            selector = f"node.{marked}.{band}"
            assert selector in grass, selector
            # Browser applies matching rules in order: the marker must come later to win.
            assert order.index(selector) > order.index(f"node.{marked}")


# --- serving them -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def client() -> TestClient:
    app = FastAPI()
    app.include_router(browser_kit.router)
    return TestClient(app, base_url="http://127.0.0.1:8000")


def test_guide_is_served_to_browser_across_origins(client: TestClient) -> None:
    response = client.get("/browser/guide", headers={"Origin": "http://127.0.0.1:7474"})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert response.headers["access-control-allow-origin"] == "*"
    assert "<carousel" in response.text


def test_guide_names_the_address_it_was_fetched_from() -> None:
    app = FastAPI()
    app.include_router(browser_kit.router)
    elsewhere = TestClient(app, base_url="http://localhost:8123")
    text = elsewhere.get("/browser/guide").text
    assert ":style http://localhost:8123/browser/style.grass" in text
    assert "127.0.0.1:8000" not in text


def test_browser_preflight_for_the_guide_is_answered(client: TestClient) -> None:
    # Browser asks for guides with Pragma and Cache-Control, so the page sends a preflight first.
    response = client.options(
        "/browser/guide",
        headers={
            "Origin": "http://127.0.0.1:7474",
            "Access-Control-Request-Method": "GET",
            "Access-Control-Request-Headers": "cache-control,pragma",
        },
    )
    assert response.status_code == 204
    assert response.headers["access-control-allow-origin"] == "*"
    assert "GET" in response.headers["access-control-allow-methods"]
    assert response.headers["access-control-allow-headers"] == "cache-control,pragma"


def test_style_sheet_is_served(client: TestClient) -> None:
    response = client.get("/browser/style.grass")
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == "*"
    assert parse_grass(response.text)["node.Ring"]


def test_a_missing_file_is_a_404(client: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RINGWATCH_CYPHER_DIR", "/nonexistent")
    assert client.get("/browser/guide").status_code == 404


def test_the_application_serves_them_without_an_api_key() -> None:
    # No lifespan (no Neo4j needed): these routes read files only.
    client = TestClient(create_app(Settings()))
    assert client.get(browser_kit.GUIDE_ROUTE).status_code == 200
    assert client.get(browser_kit.STYLE_ROUTE).status_code == 200
    assert client.options(browser_kit.GUIDE_ROUTE).status_code == 204


def test_commands_point_at_the_api_on_loopback() -> None:
    api = ApiConfig(host="0.0.0.0", port=8010)  # noqa: S104
    assert browser_kit.play_command(api) == ":play http://127.0.0.1:8010/browser/guide"
    assert browser_kit.style_command(api) == ":style http://127.0.0.1:8010/browser/style.grass"


# --- Browser may fetch them, and the CLI says how ----------------------------------------------


def test_stack_lets_browser_fetch_guides_from_loopback(tmp_path: Path) -> None:
    conf = Neo4jServer(StackConfig(home=tmp_path)).render_conf().splitlines()
    # Neo4j 5.26 knows the setting by this name and refuses unknown ones at start.
    line = next(x for x in conf if x.startswith("browser.remote_content_hostname_whitelist="))
    hosts = line.split("=", 1)[1].split(",")
    assert {"127.0.0.1", "localhost"} <= set(hosts)
    # No Browser usage data leaves a development machine.
    assert "client.allow_telemetry=false" in conf


def test_browser_command_prints_the_address_and_the_one_command() -> None:
    port = free_port()  # nothing listens: the command says how to start the API
    result = run_cli(
        "browser",
        env={"RINGWATCH_API__PORT": str(port), "RINGWATCH_STACK__NEO4J_HTTP_PORT": "7575"},
    )
    assert result.code == 0, result.stderr
    assert "http://127.0.0.1:7575/browser/" in result.stdout
    assert f":play http://127.0.0.1:{port}/browser/guide" in result.stdout
    assert f":style http://127.0.0.1:{port}/browser/style.grass" in result.stdout
    assert "ringwatch serve" in result.stdout
