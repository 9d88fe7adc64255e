"""The two servers of the local stack: how each is configured, launched and health-checked."""

from __future__ import annotations

import logging
import subprocess
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from ringwatch.config import StackConfig
from ringwatch.stack import artifacts
from ringwatch.stack.exceptions import ServerStartError
from ringwatch.stack.process import ManagedProcess, PortSpec
from ringwatch.stack.toolchain import Toolchain


@dataclass
class Health:
    healthy: bool
    checks: dict[str, str] = field(default_factory=dict)  # check name -> "ok" or the failure


class Server(ABC):
    name: str
    lib_prefix: str  # jar-name prefix whose version is the server's version

    def __init__(self, config: StackConfig) -> None:
        self.config = config
        self.home = config.home / self.name
        self.lib_dir = config.lib_root / self.name
        self.log_dir = self.home / "logs"
        self.process = ManagedProcess(
            self.name,
            run_dir=config.home / "run",
            console_log=self.log_dir / "console.log",
            # The stack home in the command line marks the process as ours (see ManagedProcess).
            marker=f"-Dringwatch.stack={config.home.resolve()}",
        )

    @property
    def marker_flag(self) -> str:
        return self.process.marker

    @abstractmethod
    def ports(self) -> list[PortSpec]: ...

    @abstractmethod
    def prepare(self, toolchain: Toolchain) -> None:
        """Write configuration and initialise storage; safe to repeat."""

    @abstractmethod
    def command(self, toolchain: Toolchain) -> list[str]: ...

    @abstractmethod
    def health(self) -> Health: ...

    @property
    @abstractmethod
    def main_log(self) -> Path:
        """The log to read when the server misbehaves."""

    def version(self) -> str | None:
        return artifacts.jar_version(self.lib_dir, self.lib_prefix)


# Neo4j's own launcher passes these; launching the entry point directly means passing them here.
_NEO4J_JVM_FLAGS = [
    "--add-opens=java.base/java.nio=ALL-UNNAMED",
    "--add-opens=java.base/java.io=ALL-UNNAMED",
    "--add-opens=java.base/sun.nio.ch=ALL-UNNAMED",
    "--add-opens=java.base/java.lang=ALL-UNNAMED",
    "--add-opens=java.base/java.lang.invoke=ALL-UNNAMED",
    "--add-opens=java.base/java.util.stream=ALL-UNNAMED",
    "-Dio.netty.tryReflectionSetAccessible=true",
    "-XX:+UseG1GC",
    "-XX:+ExitOnOutOfMemoryError",
]
_SILENT_LOG = logging.getLogger("ringwatch.stack.health")
_SILENT_LOG.addHandler(logging.NullHandler())
_SILENT_LOG.propagate = False
_GDS_SYSINFO_PREFIX = "org.neo4j.gds.proc-sysinfo-"
# Hosts Neo4j Browser may load guides and style sheets from (`ringwatch serve` on loopback).
BROWSER_CONTENT_HOSTS = "localhost,127.0.0.1"


class Neo4jServer(Server):
    """Neo4j 5.26 Community with Browser and the open-source Graph Data Science library."""

    name = "neo4j"
    lib_prefix = "org.neo4j.neo4j-"

    @property
    def conf_dir(self) -> Path:
        return self.home / "conf"

    @property
    def plugins_dir(self) -> Path:
        return self.home / "plugins"

    @property
    def main_log(self) -> Path:
        return self.log_dir / "console.log"

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.config.neo4j_http_port}"

    def ports(self) -> list[PortSpec]:
        return [
            PortSpec(self.config.neo4j_bolt_port, "Neo4j Bolt", "RINGWATCH_STACK__NEO4J_BOLT_PORT"),
            PortSpec(self.config.neo4j_http_port, "Neo4j HTTP", "RINGWATCH_STACK__NEO4J_HTTP_PORT"),
        ]

    def render_conf(self) -> str:
        home = self.home.resolve()
        lines = [
            "# Written by `ringwatch stack up`; edit the RINGWATCH_STACK__* settings instead.",
            "server.default_listen_address=127.0.0.1",
            f"server.bolt.listen_address=127.0.0.1:{self.config.neo4j_bolt_port}",
            f"server.bolt.advertised_address=127.0.0.1:{self.config.neo4j_bolt_port}",
            f"server.http.listen_address=127.0.0.1:{self.config.neo4j_http_port}",
            f"server.http.advertised_address=127.0.0.1:{self.config.neo4j_http_port}",
            "server.https.enabled=false",
            # Loopback only and development data: authentication stays off on the local stack.
            "dbms.security.auth_enabled=false",
            "dbms.usage_report.enabled=false",
            # Nor does Browser send usage data (and it finds no network to send it to).
            "client.allow_telemetry=false",
            f"server.directories.data={home / 'data'}",
            f"server.directories.plugins={self.plugins_dir.resolve()}",
            f"server.directories.logs={self.log_dir.resolve()}",
            f"server.directories.import={home / 'import'}",
            f"server.directories.run={home / 'run'}",
            "dbms.security.procedures.unrestricted=gds.*",
            f"server.memory.pagecache.size={self.config.neo4j_pagecache}",
            f"server.memory.heap.max_size={self.config.neo4j_heap}",
            # Keep the transaction logs of a development store small.
            "db.tx_log.rotation.retention_policy=2 files",
            # Browser's `:play URL` and `:style URL` fetch only from these hosts: the ringwatch
            # API on this machine serves the investigation guide and style sheet. (Neo4j 5.26
            # knows the setting by this name; Browser also reads the later '_allowlist'.)
            f"browser.remote_content_hostname_whitelist={BROWSER_CONTENT_HOSTS}",
        ]
        return "\n".join(lines) + "\n"

    def prepare(self, toolchain: Toolchain) -> None:
        for sub in ("conf", "data", "logs", "plugins", "import", "run"):
            (self.home / sub).mkdir(parents=True, exist_ok=True)
        (self.conf_dir / "neo4j.conf").write_text(self.render_conf())
        # Procedures are registered by scanning the jars in plugins/, while the GDS extension is
        # found on the classpath: link the GDS jars into plugins/ as well.
        for old in self.plugins_dir.glob("*.jar"):
            old.unlink()
        for jar in sorted(self.lib_dir.glob("org.neo4j.gds.*.jar")):
            (self.plugins_dir / jar.name).symlink_to(jar.resolve())

    def command(self, toolchain: Toolchain) -> list[str]:
        sysinfo = sorted(self.lib_dir.glob(f"{_GDS_SYSINFO_PREFIX}*.jar"))
        # gds.version() reads the first META-INF/info.properties on the classpath: GDS's first.
        classpath = ":".join([*(str(j.resolve()) for j in sysinfo), f"{self.lib_dir.resolve()}/*"])
        return [
            str(toolchain.java),
            self.marker_flag,
            f"-Xms{self.config.neo4j_heap}",
            f"-Xmx{self.config.neo4j_heap}",
            *_NEO4J_JVM_FLAGS,
            "-cp",
            classpath,
            "org.neo4j.server.CommunityEntryPoint",
            f"--home-dir={self.home.resolve()}",
            f"--config-dir={self.conf_dir.resolve()}",
            "--console-mode",
        ]

    def health(self) -> Health:
        from neo4j import GraphDatabase
        from neo4j.exceptions import Neo4jError, ServiceUnavailable

        checks: dict[str, str] = {}
        try:
            # One plain attempt each (a session, not execute_query): a health check must not
            # sit in the driver's retries.
            with (
                GraphDatabase.driver(
                    self.config.neo4j_bolt_uri, auth=None, connection_timeout=3
                ) as driver,
                driver.session() as session,
            ):
                one = session.run("RETURN 1 AS one").single(strict=True)["one"]
                checks["bolt"] = "ok" if one == 1 else "unexpected answer"
                gds = session.run("RETURN gds.version() AS v").single(strict=True)["v"]
                checks["gds"] = f"ok ({gds})"
        except (ServiceUnavailable, Neo4jError, OSError) as exc:
            checks.setdefault("bolt", f"not answering: {type(exc).__name__}")
            checks.setdefault("gds", f"not answering: {type(exc).__name__}")
        try:
            response = httpx.get(f"{self.http_url}/browser/", timeout=3)
            served = response.status_code == 200 and "<html" in response.text.lower()
            checks["browser"] = "ok" if served else f"HTTP {response.status_code}"
        except httpx.HTTPError as exc:
            checks["browser"] = f"not answering: {type(exc).__name__}"
        return Health(all(v.startswith("ok") for v in checks.values()), checks)


class KafkaServer(Server):
    """Apache Kafka in KRaft mode: one process is both broker and controller."""

    name = "kafka"
    lib_prefix = "org.apache.kafka.kafka_2.13-"

    @property
    def properties_path(self) -> Path:
        return self.home / "config" / "server.properties"

    @property
    def main_log(self) -> Path:
        return self.log_dir / "server.log"

    def ports(self) -> list[PortSpec]:
        return [
            PortSpec(self.config.kafka_port, "Kafka broker", "RINGWATCH_STACK__KAFKA_PORT"),
            PortSpec(
                self.config.kafka_controller_port,
                "Kafka controller",
                "RINGWATCH_STACK__KAFKA_CONTROLLER_PORT",
            ),
        ]

    def render_properties(self) -> str:
        broker, controller = self.config.kafka_port, self.config.kafka_controller_port
        lines = [
            "# Written by `ringwatch stack up`; edit the RINGWATCH_STACK__* settings instead.",
            "process.roles=broker,controller",
            "node.id=1",
            f"controller.quorum.voters=1@127.0.0.1:{controller}",
            f"listeners=PLAINTEXT://127.0.0.1:{broker},CONTROLLER://127.0.0.1:{controller}",
            f"advertised.listeners=PLAINTEXT://127.0.0.1:{broker}",
            "controller.listener.names=CONTROLLER",
            "inter.broker.listener.name=PLAINTEXT",
            "listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
            f"log.dirs={(self.home / 'data').resolve()}",
            "num.partitions=3",
            "offsets.topic.replication.factor=1",
            "transaction.state.log.replication.factor=1",
            "transaction.state.log.min.isr=1",
            # A single-member group should not wait 3 s for others before its first rebalance.
            "group.initial.rebalance.delay.ms=0",
            "auto.create.topics.enable=true",
        ]
        return "\n".join(lines) + "\n"

    def render_log4j(self) -> str:
        return "\n".join(
            [
                "log4j.rootLogger=INFO, file",
                "log4j.appender.file=org.apache.log4j.RollingFileAppender",
                f"log4j.appender.file.File={self.main_log.resolve()}",
                "log4j.appender.file.MaxFileSize=20MB",
                "log4j.appender.file.MaxBackupIndex=3",
                "log4j.appender.file.layout=org.apache.log4j.PatternLayout",
                "log4j.appender.file.layout.ConversionPattern=[%d] %p %m (%c)%n",
                "log4j.logger.org.apache.kafka.clients=WARN",
                "",
            ]
        )

    def _classpath(self) -> str:
        return f"{self.lib_dir.resolve()}/*"

    def prepare(self, toolchain: Toolchain) -> None:
        for sub in ("config", "data", "logs"):
            (self.home / sub).mkdir(parents=True, exist_ok=True)
        self.properties_path.write_text(self.render_properties())
        (self.home / "config" / "log4j.properties").write_text(self.render_log4j())
        if (self.home / "data" / "meta.properties").exists():
            return
        # KRaft storage is formatted once with a cluster id; later starts reuse it.
        cluster_id = self._kafka_tool(toolchain, ["random-uuid"]).strip()
        self._kafka_tool(
            toolchain, ["format", "-t", cluster_id, "-c", str(self.properties_path.resolve())]
        )

    def _kafka_tool(self, toolchain: Toolchain, args: list[str]) -> str:
        log4j = (
            f"-Dlog4j.configuration=file:{(self.home / 'config' / 'log4j.properties').resolve()}"
        )
        cmd = [str(toolchain.java), log4j, "-cp", self._classpath(), "kafka.tools.StorageTool"]
        proc = subprocess.run([*cmd, *args], capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            log = self.log_dir / "storage-tool.log"
            log.write_text(proc.stdout + proc.stderr)
            raise ServerStartError(
                f"Kafka storage format failed (exit {proc.returncode}); see {log}"
            )
        return proc.stdout

    def command(self, toolchain: Toolchain) -> list[str]:
        log4j = (
            f"-Dlog4j.configuration=file:{(self.home / 'config' / 'log4j.properties').resolve()}"
        )
        return [
            str(toolchain.java),
            self.marker_flag,
            f"-Xms{self.config.kafka_heap}",
            f"-Xmx{self.config.kafka_heap}",
            "-XX:+UseG1GC",
            "-XX:+ExitOnOutOfMemoryError",
            log4j,
            "-cp",
            self._classpath(),
            "kafka.Kafka",
            str(self.properties_path.resolve()),
        ]

    def health(self) -> Health:
        from confluent_kafka import KafkaException
        from confluent_kafka.admin import AdminClient

        client = AdminClient(
            {"bootstrap.servers": self.config.kafka_bootstrap, "socket.timeout.ms": 3000},
            # librdkafka prints connection failures itself; a health check only reports.
            logger=_SILENT_LOG,
        )
        try:
            metadata = client.list_topics(timeout=3)
        except KafkaException as exc:
            return Health(False, {"metadata": f"not answering: {type(exc).__name__}"})
        brokers = len(metadata.brokers)
        return Health(brokers > 0, {"metadata": f"ok ({brokers} broker)" if brokers else "none"})


def all_servers(config: StackConfig) -> list[Server]:
    return [Neo4jServer(config), KafkaServer(config)]
