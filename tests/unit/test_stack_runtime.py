"""The local stack's configuration, command lines and process ownership, without servers."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from ringwatch.config import StackConfig
from ringwatch.stack import artifacts
from ringwatch.stack.exceptions import PortInUseError
from ringwatch.stack.process import ManagedProcess, PortSpec, ensure_ports_free, tail
from ringwatch.stack.servers import KafkaServer, Neo4jServer
from ringwatch.stack.toolchain import Toolchain

TOOLCHAIN = Toolchain(java=Path("/usr/bin/java"), java_major=17, mvn=Path("/usr/bin/mvn"))


def _config(tmp_path: Path) -> StackConfig:
    return StackConfig(
        home=tmp_path / "stack",
        neo4j_bolt_port=27687,
        neo4j_http_port=27474,
        kafka_port=29092,
        kafka_controller_port=29093,
        neo4j_heap="768m",
        neo4j_pagecache="256m",
    )


def _conf_map(text: str) -> dict[str, str]:
    pairs = (line.split("=", 1) for line in text.splitlines() if line and not line.startswith("#"))
    return {key: value for key, value in pairs}


def test_neo4j_conf_listens_on_loopback_with_gds_unrestricted(tmp_path: Path) -> None:
    conf = _conf_map(Neo4jServer(_config(tmp_path)).render_conf())
    assert conf["server.bolt.listen_address"] == "127.0.0.1:27687"
    assert conf["server.http.listen_address"] == "127.0.0.1:27474"
    assert conf["dbms.security.procedures.unrestricted"] == "gds.*"
    assert conf["server.memory.pagecache.size"] == "256m"
    assert conf["dbms.usage_report.enabled"] == "false"
    assert conf["server.directories.data"].startswith(str((tmp_path / "stack").resolve()))


def test_neo4j_command_puts_gds_sysinfo_first_and_carries_the_marker(tmp_path: Path) -> None:
    server = Neo4jServer(_config(tmp_path))
    server.lib_dir.mkdir(parents=True)
    (server.lib_dir / "org.neo4j.gds.proc-sysinfo-2.13.9.jar").touch()
    cmd = server.command(TOOLCHAIN)
    classpath = cmd[cmd.index("-cp") + 1].split(":")
    assert classpath[0].endswith("org.neo4j.gds.proc-sysinfo-2.13.9.jar")
    assert classpath[1] == f"{server.lib_dir.resolve()}/*"
    assert server.marker_flag in cmd
    assert "-Xmx768m" in cmd
    assert cmd[-4] == "org.neo4j.server.CommunityEntryPoint"


def test_kafka_properties_are_a_single_kraft_node(tmp_path: Path) -> None:
    props = _conf_map(KafkaServer(_config(tmp_path)).render_properties())
    assert props["process.roles"] == "broker,controller"
    assert props["controller.quorum.voters"] == "1@127.0.0.1:29093"
    assert props["advertised.listeners"] == "PLAINTEXT://127.0.0.1:29092"
    assert props["offsets.topic.replication.factor"] == "1"


def test_jar_cache_can_live_outside_the_home(tmp_path: Path) -> None:
    config = _config(tmp_path).model_copy(update={"jar_cache": tmp_path / "jars"})
    assert Neo4jServer(config).lib_dir == tmp_path / "jars" / "neo4j"
    assert KafkaServer(_config(tmp_path)).lib_dir == tmp_path / "stack" / "lib" / "kafka"


def test_jar_version_reads_the_version_from_file_names(tmp_path: Path) -> None:
    for name in ("org.neo4j.neo4j-kernel-5.26.24.jar", "org.neo4j.neo4j-5.26.24.jar"):
        (tmp_path / name).touch()
    assert artifacts.jar_version(tmp_path, "org.neo4j.neo4j-") == "5.26.24"
    assert artifacts.jar_version(tmp_path, "org.apache.kafka.kafka_2.13-") is None


def test_resolution_is_cached_until_the_pom_changes(tmp_path: Path) -> None:
    lib = tmp_path / "neo4j"
    lib.mkdir()
    assert not artifacts.is_resolved(lib, "neo4j")
    (lib / artifacts.MARKER).write_text("stale-digest\n")
    assert not artifacts.is_resolved(lib, "neo4j")
    # A resolved cache is reused without running Maven (mvn path is deliberately bogus).
    import hashlib

    digest = hashlib.sha256(artifacts.pom_text("neo4j").encode()).hexdigest()
    (lib / artifacts.MARKER).write_text(digest + "\n")
    assert artifacts.resolve("neo4j", lib, mvn=Path("/nonexistent/mvn"), log_dir=tmp_path) is False


def test_taken_port_is_reported_with_its_purpose_and_setting() -> None:
    import socket

    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        with pytest.raises(PortInUseError, match=f"port {port} \\(Kafka broker\\).*MOVE_ME"):
            ensure_ports_free([PortSpec(port, "Kafka broker", "MOVE_ME")])


def _sleeper(*extra: str) -> list[str]:
    return [sys.executable, "-c", "import time; time.sleep(60)", *extra]


def test_managed_process_starts_finds_and_stops_its_own_process(tmp_path: Path) -> None:
    marker = f"-Dringwatch.stack={tmp_path}"
    proc = ManagedProcess("sleeper", tmp_path / "run", tmp_path / "log.txt", marker)
    pid = proc.start(_sleeper(marker), cwd=tmp_path)
    assert proc.pid() == pid
    # A second object (another CLI invocation) finds it through the pid file.
    again = ManagedProcess("sleeper", tmp_path / "run", tmp_path / "log.txt", marker)
    assert again.pid() == pid
    assert proc.stop(timeout_s=10) is True
    assert proc.pid() is None
    assert not proc.pid_file.exists()


def test_down_never_signals_a_process_it_did_not_start(tmp_path: Path) -> None:
    stranger = subprocess.Popen(_sleeper())
    try:
        proc = ManagedProcess("neo4j", tmp_path / "run", tmp_path / "log", "-Dringwatch.stack=X")
        proc.pid_file.parent.mkdir(parents=True)
        # A stale pid file whose pid now belongs to someone else.
        proc.pid_file.write_text(f'{{"pid": {stranger.pid}}}')
        assert proc.pid() is None
        assert proc.stop() is False
        time.sleep(0.2)
        assert stranger.poll() is None
        assert not proc.pid_file.exists()
    finally:
        stranger.kill()
        stranger.wait()


def test_tail_returns_the_last_lines(tmp_path: Path) -> None:
    log = tmp_path / "log"
    log.write_text("".join(f"line {i}\n" for i in range(100)))
    assert tail(log, 2) == ["line 98", "line 99"]
    assert tail(tmp_path / "missing", 5) == []
