"""`up`, `down` and `status` of the local stack, as plain functions the CLI and tests share."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from ringwatch.config import StackConfig
from ringwatch.stack import artifacts
from ringwatch.stack.exceptions import ServerStartError
from ringwatch.stack.process import ensure_ports_free
from ringwatch.stack.servers import Health, Server, all_servers
from ringwatch.stack.toolchain import find_toolchain

Reporter = Callable[[str], None]


def _quiet(_: str) -> None:
    return None


@dataclass(frozen=True)
class ServerStatus:
    name: str
    running: bool
    pid: int | None
    version: str | None
    health: Health
    ports: list[int]
    log: str


@dataclass(frozen=True)
class UpResult:
    started: list[str]
    already_running: list[str]
    seconds: float


def up(config: StackConfig, *, report: Reporter = _quiet) -> UpResult:
    """Resolve jars, start every server that is not running, and wait until all are healthy.

    Idempotent: servers this stack already runs are left alone (and still health-checked).
    """
    began = time.monotonic()
    toolchain = find_toolchain()
    servers = all_servers(config)
    for server in servers:
        if artifacts.resolve(
            server.name, server.lib_dir, mvn=toolchain.mvn, log_dir=config.home / "logs"
        ):
            report(f"resolved {server.name} jars into {server.lib_dir}")

    started: list[Server] = []
    already: list[str] = []
    try:
        for server in servers:
            if server.process.pid() is not None:
                already.append(server.name)
                continue
            ensure_ports_free(server.ports())
            server.prepare(toolchain)
            server.process.start(server.command(toolchain), cwd=server.home)
            started.append(server)
            report(f"started {server.name} (logs: {server.main_log})")

        # The servers boot in parallel; wait for each in turn.
        for server in servers:
            _wait_healthy(server, config.start_timeout_s)
            report(f"{server.name} healthy")
    except BaseException:
        # A half-started stack is worse than none: stop what this call started, keep the rest.
        for server in started:
            server.process.stop(timeout_s=20)
        raise
    return UpResult([s.name for s in started], already, time.monotonic() - began)


def _wait_healthy(server: Server, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    health = Health(False)
    while time.monotonic() < deadline:
        code = server.process.exit_code()
        if code is not None or server.process.pid() is None:
            server.process.pid_file.unlink(missing_ok=True)
            detail = f" with code {code}" if code is not None else ""
            raise ServerStartError(
                f"{server.name} exited during start{detail}; see {server.main_log}"
            )
        health = server.health()
        if health.healthy:
            return
        time.sleep(1.0)
    failing = ", ".join(f"{k}: {v}" for k, v in health.checks.items() if not v.startswith("ok"))
    raise ServerStartError(
        f"{server.name} not healthy after {timeout_s:.0f}s ({failing}); see {server.main_log}"
    )


def down(config: StackConfig, *, report: Reporter = _quiet) -> list[str]:
    """Stop the servers this stack started (Kafka first: it holds no graph state)."""
    stopped = []
    for server in reversed(all_servers(config)):
        if server.process.stop():
            stopped.append(server.name)
            report(f"stopped {server.name}")
    return stopped


def status(config: StackConfig) -> list[ServerStatus]:
    result = []
    for server in all_servers(config):
        pid = server.process.pid()
        health = server.health() if pid is not None else Health(False, {"process": "not running"})
        result.append(
            ServerStatus(
                name=server.name,
                running=pid is not None,
                pid=pid,
                version=server.version(),
                health=health,
                ports=[p.port for p in server.ports()],
                log=str(server.main_log),
            )
        )
    return result


def server_by_name(config: StackConfig, name: str) -> Server:
    for server in all_servers(config):
        if server.name == name:
            return server
    names = ", ".join(s.name for s in all_servers(config))
    raise ServerStartError(f"unknown server '{name}'; choose one of: {names}")
