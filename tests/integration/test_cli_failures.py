"""The stack's failure paths seen from the command line: one clear line, never a traceback.

These start real `java` processes in a throwaway home, reusing the test stack's jar cache.
"""

from __future__ import annotations

import socket
from pathlib import Path

from ringwatch.config import StackConfig
from tests.cli_helpers import assert_one_line_error, processes_marked_with, run_cli, stack_env


def test_port_already_taken_is_named_with_the_setting_that_moves_it(
    stack: StackConfig, tmp_path: Path
) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        taken = squatter.getsockname()[1]
        env = stack_env(tmp_path / "home", stack.lib_root, neo4j_bolt_port=taken)
        result = run_cli("stack", "up", env=env)
    assert_one_line_error(
        result, f"port {taken} (Neo4j Bolt) is already in use", "RINGWATCH_STACK__NEO4J_BOLT_PORT"
    )
    assert processes_marked_with(tmp_path / "home") == []


def test_server_exiting_during_start_points_at_its_log_and_leaves_nothing_running(
    stack: StackConfig, tmp_path: Path
) -> None:
    home = tmp_path / "home"
    env = stack_env(home, stack.lib_root)
    env["RINGWATCH_STACK__NEO4J_HEAP"] = "lots"  # the JVM refuses this heap size and exits
    result = run_cli("stack", "up", env=env)
    line = assert_one_line_error(result, "neo4j exited during start with code 1", "console.log")
    log = Path(line.rsplit("see ", 1)[1])
    assert log.is_file()
    assert "heap size" in log.read_text().lower()
    # Kafka had been started by the same `up`: it must have been stopped again.
    assert processes_marked_with(home) == []
    status = run_cli("stack", "status", env=env)
    assert status.code == 1
    assert "stopped" in status.stdout


def test_down_on_a_stack_that_never_ran_stops_nothing(tmp_path: Path) -> None:
    result = run_cli("stack", "down", env=stack_env(tmp_path / "home"))
    assert result.code == 0
    assert "nothing was running" in result.stdout
