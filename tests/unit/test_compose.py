"""Static checks of docker-compose.yml, the Dockerfile and .dockerignore.

Docker is not needed: the files are parsed and their structure is checked against what the
services require (GDS enabled, containers reaching each other by service name, secrets only
from the environment, an image without PyTorch that does not run as root).
"""

from __future__ import annotations

import json
import re
from functools import cache
from pathlib import Path
from typing import Any

import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = REPO_ROOT / "docker-compose.yml"
DOCKERFILE = REPO_ROOT / "Dockerfile"
DOCKERIGNORE = REPO_ROOT / ".dockerignore"

EXPECTED_SERVICES = frozenset({"neo4j", "kafka", "api", "ingest", "delivery", "n8n"})
APP_SERVICES = ("api", "ingest", "delivery")
BACKING_SERVICES = ("neo4j", "kafka")

# Environment keys whose values must never be literals in the compose file.
SECRET_KEY = re.compile(r"PASSWORD|SECRET|TOKEN|PEPPER|PASSPHRASE|PRIVATE_KEY|API_KEY|_AUTH$", re.I)
# `${VAR}`, `${VAR?msg}` or `${VAR:?msg}`; a default (`${VAR:-x}`) would be a literal secret.
SECRET_REFERENCE = re.compile(r"\$\{[A-Za-z_][A-Za-z0-9_]*(?::?\?[^}]*)?\}")
REQUIRED_REFERENCE = re.compile(r"\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*):\?[^}]+\}")
# An exact release such as `3.9.1` or `5.26.24-community`: never `latest`, never a moving `5`.
EXACT_VERSION_TAG = re.compile(r"\d+\.\d+\.\d+(?:-[A-Za-z0-9.]+)?")


# --- helpers ------------------------------------------------------------------------------------


@cache
def load_compose() -> dict[str, Any]:
    document = yaml.safe_load(COMPOSE_FILE.read_text(encoding="utf-8"))
    assert isinstance(document, dict), "docker-compose.yml must be a mapping at the top level"
    return document


def services() -> dict[str, dict[str, Any]]:
    declared = load_compose().get("services")
    assert isinstance(declared, dict), "docker-compose.yml has no `services` mapping"
    for name, definition in declared.items():
        assert isinstance(definition, dict), f"service {name!r} is not a mapping"
    return declared


def service(name: str) -> dict[str, Any]:
    found = services().get(name)
    assert found is not None, f"service {name!r} is missing"
    return found


def environment(name: str) -> dict[str, str]:
    """A service's environment as a name -> value mapping, whichever syntax the file uses."""
    declared = service(name).get("environment", {})
    if isinstance(declared, list):
        pairs: dict[str, str] = {}
        for entry in declared:
            key, _, value = str(entry).partition("=")
            pairs[key] = value
        return pairs
    assert isinstance(declared, dict), f"environment of {name!r} must be a list or a mapping"
    return {str(key): "" if value is None else str(value) for key, value in declared.items()}


def depends_on(name: str) -> dict[str, dict[str, Any]]:
    declared = service(name).get("depends_on", {})
    if isinstance(declared, list):
        return {str(target): {} for target in declared}
    assert isinstance(declared, dict), f"depends_on of {name!r} must be a list or a mapping"
    return {str(target): dict(options or {}) for target, options in declared.items()}


def published_ports(name: str) -> list[tuple[int, str]]:
    """(host port, protocol) for every port a service publishes, short or long syntax."""
    published: list[tuple[int, str]] = []
    for entry in service(name).get("ports", []):
        if isinstance(entry, dict):
            if "published" in entry:
                published.append((int(entry["published"]), str(entry.get("protocol", "tcp"))))
            continue
        spec, _, protocol = str(entry).partition("/")
        parts = spec.rsplit(":", 2)
        if len(parts) == 1:  # only a container port: Docker picks a random host port
            continue
        published.append((int(parts[-2]), protocol or "tcp"))
    return published


def named_volume_sources(name: str) -> list[str]:
    """The named volumes (not bind mounts) a service mounts."""
    sources: list[str] = []
    for entry in service(name).get("volumes", []):
        if isinstance(entry, dict):
            if entry.get("type", "volume") == "volume" and entry.get("source"):
                sources.append(str(entry["source"]))
            continue
        source, separator, _ = str(entry).partition(":")
        if separator and not source.startswith(("/", ".", "~", "$")):
            sources.append(source)
    return sources


def image_tag(image: str) -> str:
    """The tag of an image reference, '' when it has none (which means `latest`)."""
    reference = image.split("@", 1)[0]
    last_component = reference.rsplit("/", 1)[-1]
    _, _, tag = last_component.partition(":")
    return tag


def healthcheck_command(name: str) -> str:
    check = service(name).get("healthcheck")
    assert isinstance(check, dict), f"service {name!r} has no healthcheck"
    assert not check.get("disable"), f"the healthcheck of {name!r} is disabled"
    test = check.get("test")
    assert test, f"the healthcheck of {name!r} has no test"
    return test if isinstance(test, str) else " ".join(str(part) for part in test)


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, with line continuations joined and comments dropped."""
    logical_lines: list[str] = []
    pending = ""
    for raw_line in DOCKERFILE.read_text(encoding="utf-8").splitlines():
        line = raw_line.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):  # a comment inside a continued instruction
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        logical_lines.append(pending + line)
        pending = ""
    if pending:
        logical_lines.append(pending)
    instructions: list[tuple[str, str]] = []
    for logical in logical_lines:
        keyword, _, arguments = logical.partition(" ")
        instructions.append((keyword.upper(), arguments.strip()))
    return instructions


def dockerfile_stages() -> list[str]:
    stages: list[str] = []
    for keyword, arguments in dockerfile_instructions():
        if keyword == "FROM":
            match = re.search(r"\bAS\s+(\S+)", arguments, re.IGNORECASE)
            stages.append(match.group(1) if match else "")
    return stages


def app_build_target() -> str:
    build = service("api").get("build")
    assert isinstance(build, dict), "the api service must build from the repository Dockerfile"
    return str(build.get("target", ""))


# --- the compose file ---------------------------------------------------------------------------


def test_compose_file_parses_to_a_mapping_with_services() -> None:
    assert COMPOSE_FILE.is_file()
    assert isinstance(load_compose().get("services"), dict)


def test_compose_declares_exactly_the_expected_services() -> None:
    assert set(services()) == EXPECTED_SERVICES


def test_every_depends_on_target_is_a_declared_service() -> None:
    for name in services():
        for target in depends_on(name):
            assert target in services(), f"{name} depends on undeclared service {target!r}"
            assert target != name, f"{name} depends on itself"


def test_app_services_wait_for_healthy_neo4j_and_kafka() -> None:
    for name in APP_SERVICES:
        dependencies = depends_on(name)
        for backing in BACKING_SERVICES:
            assert backing in dependencies, f"{name} must depend on {backing}"
            assert dependencies[backing].get("condition") == "service_healthy", (
                f"{name} must wait until {backing} is healthy, not merely started"
            )
            healthcheck_command(backing)  # a service_healthy condition needs a healthcheck


def test_every_named_volume_is_declared_and_every_declared_volume_is_used() -> None:
    declared = load_compose().get("volumes") or {}
    assert isinstance(declared, dict)
    used = {volume for name in services() for volume in named_volume_sources(name)}
    assert used, "expected named volumes for the databases' state"
    assert used <= set(declared), f"undeclared volumes: {sorted(used - set(declared))}"
    assert set(declared) <= used, f"unused volumes: {sorted(set(declared) - used)}"


def test_stateful_services_keep_their_data_in_named_volumes() -> None:
    mounts = {name: str(service(name).get("volumes", [])) for name in services()}
    assert ":/data" in mounts["neo4j"]
    assert ":/logs" in mounts["neo4j"]
    assert named_volume_sources("kafka"), "Kafka's log dirs must survive re-creation"
    assert named_volume_sources("n8n"), "n8n's workflows and credentials must survive"


def test_pulled_images_are_pinned_to_exact_versions() -> None:
    for name, definition in services().items():
        image = definition.get("image")
        if "build" in definition:
            if image is not None:
                assert image_tag(str(image)) not in ("", "latest"), f"{name}: {image}"
            continue
        assert isinstance(image, str), f"{name} neither builds nor names an image"
        tag = image_tag(image)
        assert EXACT_VERSION_TAG.fullmatch(tag), f"{name}: {image!r} is not an exact release"


def test_neo4j_is_the_5_26_lts_community_image() -> None:
    image = str(service("neo4j")["image"])
    assert image.startswith("neo4j:5.26.")
    assert image.endswith("-community")


def test_no_literal_secrets_in_service_environments() -> None:
    for name in services():
        for key, value in environment(name).items():
            if not SECRET_KEY.search(key):
                continue
            if key.endswith("_AUTH"):  # user/password, e.g. NEO4J_AUTH=neo4j/${NEO4J_PASSWORD}
                _, _, value = value.partition("/")
            assert SECRET_REFERENCE.fullmatch(value), (
                f"{name}.{key} must be a ${{VAR}} reference without a default, got {value!r}"
            )


def test_required_secrets_refuse_to_start_when_unset() -> None:
    text = COMPOSE_FILE.read_text(encoding="utf-8")
    required = {match["name"] for match in REQUIRED_REFERENCE.finditer(text)}
    assert {"NEO4J_PASSWORD", "RINGWATCH_API_KEY_PEPPER"} <= required
    api_password = REQUIRED_REFERENCE.fullmatch(environment("api")["RINGWATCH_NEO4J__PASSWORD"])
    neo4j_auth = re.fullmatch(r"neo4j/(?P<reference>.+)", environment("neo4j")["NEO4J_AUTH"])
    assert api_password is not None
    assert neo4j_auth is not None
    database_password = REQUIRED_REFERENCE.fullmatch(neo4j_auth["reference"])
    assert database_password is not None
    assert api_password["name"] == database_password["name"], (
        "the API must use the password the database is initialised with"
    )


def test_published_host_ports_do_not_collide() -> None:
    seen: dict[tuple[int, str], str] = {}
    for name in services():
        for port in published_ports(name):
            assert port not in seen, f"{name} and {seen[port]} both publish {port}"
            seen[port] = name


def test_expected_ports_are_published() -> None:
    assert {7474, 7687} <= {port for port, _ in published_ports("neo4j")}
    assert (9092, "tcp") in published_ports("kafka")
    assert (8000, "tcp") in published_ports("api")
    assert (5678, "tcp") in published_ports("n8n")


def test_ingest_publishes_no_ports_so_it_can_scale_out() -> None:
    assert published_ports("ingest") == []
    assert "container_name" not in service("ingest")


def test_neo4j_enables_graph_data_science() -> None:
    env = environment("neo4j")
    plugins = json.loads(env["NEO4J_PLUGINS"])
    assert "graph-data-science" in plugins
    unrestricted = env["NEO4J_dbms_security_procedures_unrestricted"].split(",")
    assert "gds.*" in [entry.strip() for entry in unrestricted]
    assert env["NEO4J_server_memory_heap_max__size"]
    assert env["NEO4J_server_memory_pagecache_size"]


def test_kafka_runs_single_node_kraft() -> None:
    env = environment("kafka")
    assert set(env["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}
    assert env["KAFKA_NODE_ID"]
    assert env["CLUSTER_ID"]
    assert "KAFKA_ZOOKEEPER_CONNECT" not in env
    for key in (
        "KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR",
        "KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR",
        "KAFKA_TRANSACTION_STATE_LOG_MIN_ISR",
    ):
        assert env[key] == "1", f"{key} must be 1 on a single broker"
    assert "/opt/kafka/bin/kafka-broker-api-versions.sh" in healthcheck_command("kafka")


def kafka_listeners(key: str) -> dict[str, str]:
    """Listener name -> host:port from a Kafka listener list such as KAFKA_LISTENERS."""
    listeners: dict[str, str] = {}
    for entry in environment("kafka")[key].split(","):
        listener_name, _, address = entry.strip().partition("://")
        listeners[listener_name] = address
    return listeners


def test_kafka_advertises_an_internal_and_a_host_listener() -> None:
    env = environment("kafka")
    advertised = kafka_listeners("KAFKA_ADVERTISED_LISTENERS")
    bound = kafka_listeners("KAFKA_LISTENERS")
    assert "kafka:29092" in advertised.values()
    assert "localhost:9092" in advertised.values()
    assert set(advertised) <= set(bound), "every advertised listener must also be bound"
    controller = env["KAFKA_CONTROLLER_LISTENER_NAMES"]
    assert controller in bound
    assert controller not in advertised
    assert env["KAFKA_INTER_BROKER_LISTENER_NAME"] in advertised


def test_app_services_reach_neo4j_and_kafka_by_service_name() -> None:
    internal = [
        address
        for address in kafka_listeners("KAFKA_ADVERTISED_LISTENERS").values()
        if address.startswith("kafka:")
    ]
    for name in APP_SERVICES:
        env = environment(name)
        assert env["RINGWATCH_NEO4J__URI"] in ("bolt://neo4j:7687", "neo4j://neo4j:7687")
        assert env["RINGWATCH_KAFKA__BOOTSTRAP_SERVERS"] in internal, (
            f"{name} must use the broker's internal listener {internal}"
        )
        assert env["RINGWATCH_ENVIRONMENT"] == "production"
        for key in ("RINGWATCH_NEO4J__PASSWORD", "RINGWATCH_API__API_KEY_PEPPER"):
            assert key in env, f"{name} must set {key} outside development"


def test_app_services_run_the_repository_image_with_their_commands() -> None:
    target = app_build_target()
    assert target in dockerfile_stages(), f"build target {target!r} is not a Dockerfile stage"
    assert service("ingest").get("build") == service("api").get("build")
    assert service("ingest").get("image") == service("api").get("image")
    commands = {name: service(name).get("command") for name in APP_SERVICES}
    assert commands["api"] == ["serve", "--host", "0.0.0.0", "--port", "8000"]  # noqa: S104
    assert commands["ingest"] == ["ingest", "run"]
    for name, command in commands.items():
        # The image's entrypoint already is `ringwatch`; repeating it would pass it as an argument.
        assert isinstance(command, list)
        assert command[0] != "ringwatch", f"{name}: the entrypoint already runs ringwatch"


def test_api_healthcheck_probes_healthz_without_curl() -> None:
    command = healthcheck_command("api")
    assert "/healthz" in command
    assert "urllib" in command
    assert "curl" not in command


def test_n8n_mounts_the_shipped_workflows_read_only() -> None:
    mounts = [str(entry) for entry in service("n8n").get("volumes", [])]
    assert "./deploy/n8n:/workflows:ro" in mounts
    env = environment("n8n")
    assert env.get("GENERIC_TIMEZONE")
    assert env.get("TZ")


# --- the image ----------------------------------------------------------------------------------


def test_dockerfile_builds_on_python_311_slim_in_several_stages() -> None:
    bases = [
        arguments.split()[0]
        for keyword, arguments in dockerfile_instructions()
        if keyword == "FROM"
    ]
    assert len(bases) >= 2, "build and runtime should be separate stages"
    assert all(base == "python:3.11-slim" for base in bases), bases


def test_dockerfile_runs_as_a_non_root_user() -> None:
    users = [arguments for keyword, arguments in dockerfile_instructions() if keyword == "USER"]
    assert users, "the image must switch to a non-root USER"
    final_user = users[-1].split(":", 1)[0]
    assert final_user not in ("root", "0"), f"the final USER is {users[-1]!r}"


def test_dockerfile_installs_the_package_without_the_gnn_extra() -> None:
    runs = " ".join(
        arguments for keyword, arguments in dockerfile_instructions() if keyword == "RUN"
    )
    assert re.search(r"pip install --no-cache-dir \.(\s|$)", runs), runs
    assert "gnn" not in runs
    assert "torch" not in runs
    assert not re.search(r"\.\[", runs), "no extras in the runtime image"


def test_dockerfile_ships_the_cypher_queries_and_points_at_them() -> None:
    instructions = dockerfile_instructions()
    copies = [arguments for keyword, arguments in instructions if keyword == "COPY"]
    assert any(arguments.split()[-1] == "/app/cypher" for arguments in copies), copies
    env = " ".join(arguments for keyword, arguments in instructions if keyword == "ENV")
    assert "RINGWATCH_CYPHER_DIR=/app/cypher" in env


def test_dockerfile_entrypoint_command_port_and_healthcheck() -> None:
    instructions = dict(dockerfile_instructions())
    assert json.loads(instructions["ENTRYPOINT"]) == ["ringwatch"]
    assert json.loads(instructions["CMD"]) == ["serve", "--host", "0.0.0.0", "--port", "8000"]  # noqa: S104
    assert instructions["EXPOSE"].split() == ["8000"]
    assert "/healthz" in instructions["HEALTHCHECK"]


def test_dockerignore_keeps_local_state_and_secrets_out_of_the_image() -> None:
    patterns = {
        line.strip().rstrip("/")
        for line in DOCKERIGNORE.read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    }
    for required in (".venv", ".git", ".env", "tests", ".stack", "__pycache__", ".mypy_cache"):
        assert required in patterns, f".dockerignore must exclude {required}"
    for needed_by_the_build in ("ringwatch", "pyproject.toml", "README.md", "cypher"):
        assert needed_by_the_build not in patterns, f"the build needs {needed_by_the_build}"
