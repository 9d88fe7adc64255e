"""Command-line behaviour that needs no servers: help, and missing prerequisites."""

from __future__ import annotations

import shutil
from pathlib import Path

from ringwatch.ingest.simulate import GROUND_TRUTH_FILE, read_ground_truth
from tests.cli_helpers import assert_one_line_error, run_cli, stack_env


def _path_with(tmp_path: Path, **tools: str) -> str:
    """A PATH holding only the given tools (name -> shell script body)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    for name, body in tools.items():
        script = bin_dir / name
        script.write_text(f"#!/bin/sh\n{body}\n")
        script.chmod(0o755)
    return str(bin_dir)


def test_help_lists_the_command_groups() -> None:
    result = run_cli("--help")
    assert result.code == 0
    for command in ("stack", "db", "demo", "serve", "version"):
        assert command in result.stdout


def test_missing_java_is_one_clear_line(tmp_path: Path) -> None:
    env = {**stack_env(tmp_path / "home"), "PATH": _path_with(tmp_path)}
    result = run_cli("stack", "up", env=env)
    assert_one_line_error(result, "Java not found on PATH", "openjdk-17")


def test_java_that_is_too_old_is_refused(tmp_path: Path) -> None:
    old_java = "echo 'openjdk version \"11.0.21\" 2023-10-17' >&2"
    env = {**stack_env(tmp_path / "home"), "PATH": _path_with(tmp_path, java=old_java)}
    result = run_cli("stack", "up", env=env)
    assert_one_line_error(result, "Java 11 found", "needs Java 17 or newer")


def test_missing_maven_is_one_clear_line(tmp_path: Path) -> None:
    java = shutil.which("java") or "java"
    env = {
        **stack_env(tmp_path / "home"),
        "PATH": _path_with(tmp_path, java=f'exec {java} "$@"'),
    }
    result = run_cli("stack", "up", env=env)
    assert_one_line_error(result, "Maven not found on PATH")


def test_logs_of_an_unknown_server_is_one_clear_line(tmp_path: Path) -> None:
    result = run_cli("stack", "logs", "postgres", env=stack_env(tmp_path / "home"))
    assert_one_line_error(result, "unknown server 'postgres'", "neo4j, kafka")


def test_simulate_writes_the_event_files_and_ground_truth(tmp_path: Path) -> None:
    target = tmp_path / "sim"
    result = run_cli("simulate", "--subscribers", "100", "--months", "1", "--out", str(target))
    assert result.code == 0, result.stderr
    names = sorted(p.name for p in target.iterdir())
    assert names == ["ground_truth.csv", "identity.jsonl", "labels.jsonl", "transactions.jsonl"]
    assert "100 ground_truth" in result.stdout


def test_simulate_adds_camouflaged_rings_on_request(tmp_path: Path) -> None:
    target = tmp_path / "sim"
    result = run_cli(
        "simulate", "--subscribers", "200", "--months", "1", "--out", str(target),
        "--camouflaged-rings", "0.05",
    )  # fmt: skip
    assert result.code == 0, result.stderr
    patterns = [row.pattern for row in read_ground_truth(target / GROUND_TRUTH_FILE)]
    assert 10 <= patterns.count("camouflaged_ring") <= 19


def test_produce_with_an_unknown_family_is_one_clear_line(tmp_path: Path) -> None:
    events = tmp_path / "identity.jsonl"
    events.write_text("{}\n")
    result = run_cli("ingest", "produce", str(events), "--family", "payroll")
    assert_one_line_error(result, "unknown family 'payroll'")
