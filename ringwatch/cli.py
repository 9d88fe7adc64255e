"""The `ringwatch` command line.

Commands parse options and hand off to plain functions in the packages; errors that ringwatch
raises on purpose (`RingwatchError`) become one red line and exit code 1, never a traceback.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from ringwatch import __version__
from ringwatch.config import Settings, StackConfig, get_settings
from ringwatch.exceptions import RingwatchError

app = typer.Typer(
    name="ringwatch",
    help="Identity-fraud rings and risk on a Neo4j identity graph.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
stack_app = typer.Typer(help="The local Neo4j + GDS + Browser and Kafka stack (no Docker).")
db_app = typer.Typer(help="The graph database: schema migrations.")
ingest_app = typer.Typer(help="Kafka ingest: workers, topics, publishing files of events.")
app.add_typer(stack_app, name="stack")
app.add_typer(db_app, name="db")
app.add_typer(ingest_app, name="ingest")

out = Console()
err = Console(stderr=True)

HomeOption = Annotated[
    Path | None,
    typer.Option(
        "--home",
        help="Stack home: jars, configuration, data, logs and pid files.",
        envvar="RINGWATCH_STACK__HOME",
        show_default="~/.ringwatch/stack",
    ),
]


@contextmanager
def _edge() -> Iterator[None]:
    """Turn ringwatch's own errors into one clear line and exit code 1."""
    try:
        yield
    except RingwatchError as exc:
        err.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
        raise typer.Exit(code=1) from None


def _settings() -> Settings:
    return get_settings()


def _stack_config(home: Path | None) -> StackConfig:
    config = _settings().stack
    return config.model_copy(update={"home": home}) if home is not None else config


@app.command()
def version() -> None:
    """Print the ringwatch version."""
    out.print(__version__)


# --- stack ------------------------------------------------------------------------------------


@stack_app.command("up")
def stack_up(home: HomeOption = None) -> None:
    """Resolve the jars (first time only), start Neo4j and Kafka, wait until both are healthy."""
    from ringwatch.stack import manager

    with _edge():
        config = _stack_config(home)
        result = manager.up(config, report=lambda line: out.print(f"  {line}"))
        out.print(
            f"[green]stack up[/] in {result.seconds:.1f}s "
            f"(started: {', '.join(result.started) or 'none'}; "
            f"already running: {', '.join(result.already_running) or 'none'})"
        )
        out.print(f"  Neo4j Browser: http://127.0.0.1:{config.neo4j_http_port}/browser/")
        out.print(f"  Bolt:          {config.neo4j_bolt_uri}")
        out.print(f"  Kafka:         {config.kafka_bootstrap}")


@stack_app.command("down")
def stack_down(home: HomeOption = None) -> None:
    """Stop the servers this stack started; other processes are never touched."""
    from ringwatch.stack import manager

    with _edge():
        stopped = manager.down(_stack_config(home), report=lambda line: out.print(f"  {line}"))
        out.print(f"[green]stack down[/] ({', '.join(stopped) or 'nothing was running'})")


@stack_app.command("status")
def stack_status(home: HomeOption = None) -> None:
    """Each server's process, health checks and version. Exit 1 if any is not healthy."""
    from ringwatch.stack import manager

    with _edge():
        statuses = manager.status(_stack_config(home))
        table = Table(title="ringwatch local stack")
        for column in ("server", "state", "pid", "version", "ports", "checks"):
            table.add_column(column)
        for s in statuses:
            state = (
                "[green]healthy[/]"
                if s.health.healthy
                else ("[yellow]unhealthy[/]" if s.running else "[red]stopped[/]")
            )
            checks = "\n".join(f"{k}: {v}" for k, v in s.health.checks.items())
            table.add_row(
                s.name,
                state,
                str(s.pid or "-"),
                s.version or "-",
                ", ".join(map(str, s.ports)),
                checks,
            )
        out.print(table)
        for s in statuses:
            out.print(f"  {s.name} log: {s.log}", highlight=False)
        if not all(s.health.healthy for s in statuses):
            raise typer.Exit(code=1)


@stack_app.command("logs")
def stack_logs(
    server: Annotated[str, typer.Argument(help="neo4j or kafka")],
    lines: Annotated[int, typer.Option("--lines", "-n", help="Lines to show.")] = 50,
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Keep printing.")] = False,
    home: HomeOption = None,
) -> None:
    """Print the end of a server's log."""
    from ringwatch.stack import manager
    from ringwatch.stack.process import tail

    with _edge():
        target = manager.server_by_name(_stack_config(home), server)
        log = target.main_log
        for line in tail(log, lines):
            out.print(line, markup=False, highlight=False)
        if not follow:
            return
        with log.open("rb") as handle:
            handle.seek(0, 2)
            try:
                while True:
                    chunk = handle.readline()
                    if chunk:
                        out.print(chunk.decode(errors="replace").rstrip(), markup=False)
                    else:
                        time.sleep(0.5)
            except KeyboardInterrupt:
                return


@stack_app.command("fetch")
def stack_fetch(home: HomeOption = None) -> None:
    """Only resolve the servers' jars from Maven Central (what `up` does first)."""
    from ringwatch.stack import artifacts
    from ringwatch.stack.servers import all_servers
    from ringwatch.stack.toolchain import find_toolchain

    with _edge():
        config = _stack_config(home)
        toolchain = find_toolchain()
        for server in all_servers(config):
            ran = artifacts.resolve(
                server.name, server.lib_dir, mvn=toolchain.mvn, log_dir=config.home / "logs"
            )
            state = "resolved" if ran else "cached"
            out.print(f"  {server.name}: {state} ({server.version()}) in {server.lib_dir}")


# --- db ---------------------------------------------------------------------------------------


@db_app.command("migrate")
def db_migrate() -> None:
    """Apply cypher/schema.cypher (constraints and indexes); safe to run any number of times."""
    from ringwatch.graph.db import Neo4jRunner, create_driver
    from ringwatch.graph.schema import migrate

    with _edge():
        settings = _settings()
        with create_driver(settings.neo4j) as driver:
            result = migrate(Neo4jRunner(driver, settings.neo4j.database))
        out.print(
            f"[green]schema applied[/]: {result.statements} statements, "
            f"{len(result.constraints)} constraints, {len(result.indexes)} indexes"
        )


# --- ingest -----------------------------------------------------------------------------------


@ingest_app.command("run")
def ingest_run(
    workers: Annotated[
        int | None,
        typer.Option(
            help="Worker processes (one consumer each).", envvar="RINGWATCH_INGEST__WORKERS"
        ),
    ] = None,
) -> None:
    """Consume identity, transaction and label events from Kafka into Neo4j until stopped.

    SIGTERM or Ctrl-C: each worker finishes its batch, commits, and exits.
    """
    import logging

    from ringwatch.ingest.run import run_workers

    with _edge():
        settings = _settings()
        logging.basicConfig(level=settings.log_level, format="%(asctime)s %(name)s %(message)s")
        failed = run_workers(settings, workers or settings.ingest.workers)
        if failed:
            err.print(f"[bold red]error:[/] {failed} ingest worker(s) failed; see the log above")
            raise typer.Exit(code=1)


@ingest_app.command("topics")
def ingest_topics() -> None:
    """Create the input, dead-letter, alert and ring topics if they do not exist."""
    from ringwatch.ingest.run import prepare_topics

    with _edge():
        prepare_topics(_settings())
        out.print("[green]topics ready[/]")


@app.command()
def demo() -> None:
    """Write a small sample to the graph, read it back, and say where to look at it."""
    from ringwatch.graph import demo as sample
    from ringwatch.graph.db import Neo4jRunner, create_driver
    from ringwatch.graph.schema import migrate

    with _edge():
        settings = _settings()
        with create_driver(settings.neo4j) as driver:
            runner = Neo4jRunner(driver, settings.neo4j.database)
            agent, edition = runner.server_info()
            migrate(runner)
            written = sample.write_sample(runner)
            shared = sample.read_shared_devices(runner)
        out.print(f"connected to {agent} ({edition}); wrote {written} sample subscribers")
        table = Table(title="devices shared by more than one subscriber (read back)")
        table.add_column("device")
        table.add_column("subscribers")
        for row in shared:
            table.add_row(row.identifier, ", ".join(row.subscribers))
        out.print(table)
        out.print(
            f"Open Neo4j Browser at http://127.0.0.1:{settings.stack.neo4j_http_port}/browser/ "
            "(no authentication on the local stack) and run:"
        )
        out.print(f"  {sample.BROWSER_QUERY}", markup=False, highlight=False)


@app.command()
def serve(
    host: Annotated[
        str | None, typer.Option(help="Bind address.", envvar="RINGWATCH_API__HOST")
    ] = None,
    port: Annotated[int | None, typer.Option(help="Port.", envvar="RINGWATCH_API__PORT")] = None,
) -> None:
    """Run the HTTP API (OpenAPI at /docs)."""
    import uvicorn

    with _edge():
        settings = _settings()
        uvicorn.run(
            "ringwatch.service.app:create_app",
            factory=True,
            host=host or settings.api.host,
            port=port or settings.api.port,
            log_level=settings.log_level.lower(),
        )


def main() -> None:  # pragma: no cover - console entry point
    app()
