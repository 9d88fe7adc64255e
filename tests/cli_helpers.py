"""Running the real `ringwatch` command in a child process, as a user would."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class CliResult:
    code: int
    stdout: str
    stderr: str


def run_cli(*args: str, env: dict[str, str] | None = None, timeout: float = 240) -> CliResult:
    full_env = {**os.environ, "COLUMNS": "200", **(env or {})}
    proc = subprocess.run(
        [sys.executable, "-m", "ringwatch", *args],
        capture_output=True,
        text=True,
        env=full_env,
        timeout=timeout,
        check=False,
    )
    return CliResult(proc.returncode, proc.stdout, proc.stderr)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def stack_env(home: Path, jar_cache: Path | None = None, **ports: int) -> dict[str, str]:
    """Environment for a throwaway stack in `home` on free ports (overridable)."""
    chosen = {
        "NEO4J_BOLT_PORT": free_port(),
        "NEO4J_HTTP_PORT": free_port(),
        "KAFKA_PORT": free_port(),
        "KAFKA_CONTROLLER_PORT": free_port(),
        **{k.upper(): v for k, v in ports.items()},
    }
    env = {f"RINGWATCH_STACK__{k}": str(v) for k, v in chosen.items()}
    env["RINGWATCH_STACK__HOME"] = str(home)
    env["RINGWATCH_STACK__START_TIMEOUT_S"] = "90"
    if jar_cache is not None:
        env["RINGWATCH_STACK__JAR_CACHE"] = str(jar_cache)
    return env


def assert_one_line_error(result: CliResult, *fragments: str) -> str:
    assert result.code == 1, (result.code, result.stdout, result.stderr)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: "), lines[0]
    assert "Traceback" not in result.stderr + result.stdout
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


def processes_marked_with(home: Path) -> list[int]:
    """Pids whose command line carries the stack marker of `home`."""
    marker = f"-Dringwatch.stack={home.resolve()}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if marker in (entry / "cmdline").read_bytes():
                found.append(int(entry.name))
        except OSError:
            continue
    return found
