"""The `ringwatch` command line.

Commands parse options and hand off to plain functions in the packages; errors that ringwatch
raises on purpose (`RingwatchError`) become one red line and exit code 1, never a traceback.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from ringwatch import __version__
from ringwatch.config import Settings, StackConfig, get_settings
from ringwatch.exceptions import RingwatchError
from ringwatch.scoring import reasons as reason_codec

if TYPE_CHECKING:
    from ringwatch.ingest.backfill import BackfillSummary
    from ringwatch.ingest.events import EventFamily
    from ringwatch.models.registry import ModelRegistry

app = typer.Typer(
    name="ringwatch",
    help="Identity-fraud rings and risk on a Neo4j identity graph.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
stack_app = typer.Typer(help="The local Neo4j + GDS + Browser and Kafka stack (no Docker).")
db_app = typer.Typer(help="The graph database: schema migrations.")
ingest_app = typer.Typer(help="Kafka ingest: workers, topics, publishing files of events.")
backfill_app = typer.Typer(
    help="Load event files (CSV, JSONL, Parquet) straight into Neo4j: resumable, idempotent."
)
app.add_typer(stack_app, name="stack")
app.add_typer(db_app, name="db")
app.add_typer(ingest_app, name="ingest")
app.add_typer(backfill_app, name="backfill")
alerts_app = typer.Typer(help="Alert delivery to n8n and Slack: the worker and a test send.")
app.add_typer(alerts_app, name="alerts")
keys_app = typer.Typer(help="API keys: create (shown once), list, revoke.")
app.add_typer(keys_app, name="keys")

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
    until_idle: Annotated[
        float | None,
        typer.Option(
            help="Exit once no message has arrived for this many seconds (load, then stop)."
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
        failed = run_workers(settings, workers or settings.ingest.workers, idle_exit_s=until_idle)
        if failed:
            err.print(f"[bold red]error:[/] {failed} ingest worker(s) failed; see the log above")
            raise typer.Exit(code=1)


@ingest_app.command("produce")
def ingest_produce(
    paths: Annotated[list[Path], typer.Argument(help="Event files: .jsonl, .csv or .parquet.")],
    family: Annotated[
        str | None,
        typer.Option(help="identity, transactions or labels (default: from the file name)."),
    ] = None,
    rate: Annotated[
        float | None, typer.Option(help="Events per second (default: as fast as possible).")
    ] = None,
) -> None:
    """Publish files of events to the input topics, keyed by subscriber id."""
    from ringwatch.ingest.events import EventFamily
    from ringwatch.ingest.exceptions import IngestError

    with _edge():
        try:
            chosen = EventFamily(family) if family else None
        except ValueError:
            raise IngestError(f"unknown family '{family}'") from None
        _publish(paths, family=chosen, rate=rate)


def _publish(paths: list[Path], *, family: EventFamily | None, rate: float | None) -> None:
    """Publish event files with a progress bar, then say what was sent and what was not."""
    from rich.progress import Progress

    from ringwatch.ingest.publish import publish_files
    from ringwatch.ingest.run import prepare_topics

    settings = _settings()
    prepare_topics(settings)
    with Progress(console=err, transient=True) as progress:
        task = progress.add_task("publishing", total=None)
        summary = publish_files(
            settings.kafka,
            paths,
            family=family,
            rate=rate,
            progress=lambda n: progress.advance(task, n),
        )
    rate_done = summary.sent / summary.seconds if summary.seconds else 0.0
    out.print(
        f"[green]published[/] {summary.sent:,} events in {summary.seconds:.1f}s "
        f"({rate_done:,.0f}/s); unreadable rows: {len(summary.unreadable)}"
    )
    for line in summary.unreadable[:20]:
        out.print(f"  {line}", markup=False, highlight=False)


@ingest_app.command("topics")
def ingest_topics() -> None:
    """Create the input, dead-letter, alert and ring topics if they do not exist."""
    from ringwatch.ingest.run import prepare_topics

    with _edge():
        prepare_topics(_settings())
        out.print("[green]topics ready[/]")


@app.command()
def simulate(
    directory: Annotated[
        Path, typer.Option("--out", help="Directory for the event files and ground truth.")
    ] = Path("data/simulated"),
    subscribers: Annotated[int, typer.Option(help="Population size.")] = 2000,
    months: Annotated[int, typer.Option(help="Months of history (30 days each).")] = 3,
    seed: Annotated[int, typer.Option(help="Same seed, same population.")] = 0,
    file_format: Annotated[str, typer.Option("--format", help="jsonl, csv or parquet.")] = "jsonl",
    kafka: Annotated[
        bool, typer.Option("--kafka", help="Also publish the events to the input topics.")
    ] = False,
    rate: Annotated[
        float | None, typer.Option(help="With --kafka: events per second (default: max).")
    ] = None,
    camouflaged_rings: Annotated[
        float,
        typer.Option(
            min=0,
            max=0.5,
            help="Share of subscribers in camouflaged rings (accounts hidden behind real "
            "households that later share handsets); off by default.",
        ),
    ] = 0.0,
) -> None:
    """Simulate a population with injected fraud patterns and ground truth."""
    from ringwatch.ingest.exceptions import IngestError
    from ringwatch.ingest.simulate import FraudRates, SimulationConfig, simulate_to_directory

    with _edge():
        if file_format not in ("jsonl", "csv", "parquet"):
            raise IngestError(f"unknown format '{file_format}'; choose jsonl, csv or parquet")
        config = SimulationConfig(
            subscribers=subscribers,
            months=months,
            seed=seed,
            fraud=FraudRates(camouflaged_ring=camouflaged_rings),
        )
        started = time.perf_counter()
        counts = simulate_to_directory(config, directory, file_format)  # type: ignore[arg-type]
        summary = ", ".join(f"{count:,} {name}" for name, count in counts.items())
        elapsed = time.perf_counter() - started
        out.print(f"simulated {summary} into {directory} in {elapsed:.1f}s", highlight=False)
        if kafka:
            files = [
                directory / f"{name}.{file_format}"
                for name in ("identity", "transactions", "labels")
            ]
            _publish(files, family=None, rate=rate)


@db_app.command("stats")
def db_stats() -> None:
    """What the graph holds: nodes by label, relationships by type, hub identifiers."""
    from ringwatch.graph.db import Neo4jRunner, create_driver
    from ringwatch.graph.stats import graph_stats

    with _edge():
        settings = _settings()
        with create_driver(settings.neo4j) as driver:
            stats = graph_stats(Neo4jRunner(driver, settings.neo4j.database))
        table = Table(title="graph contents")
        table.add_column("kind")
        table.add_column("name")
        table.add_column("count", justify="right")
        for name, count in stats.nodes.items():
            table.add_row("nodes", name, f"{count:,}")
        for name, count in stats.relationships.items():
            table.add_row("relationships", name, f"{count:,}")
        for name, count in stats.hubs.items():
            table.add_row("hub identifiers", name, f"{count:,}")
        out.print(table)


# --- API keys ---------------------------------------------------------------------------------


@keys_app.command("create")
def keys_create(
    name: Annotated[str, typer.Option(help="Who or what uses the key.")],
    scope: Annotated[
        list[str],
        typer.Option(help="read, write or admin (repeat for several; admin includes write)."),
    ] = ["read"],  # noqa: B006 - typer needs a literal default
) -> None:
    """Create an API key. It is printed once and stored only as a keyed hash."""
    from ringwatch.graph.api_keys import Scope, create_key
    from ringwatch.graph.db import Neo4jRunner, create_driver

    with _edge():
        try:
            scopes = {Scope(value) for value in scope}
        except ValueError:
            raise RingwatchError(f"unknown scope in {scope}; use read, write or admin") from None
        settings = _settings()
        with create_driver(settings.neo4j) as driver:
            key, record = create_key(
                Neo4jRunner(driver, settings.neo4j.database),
                name,
                scopes,
                settings.api.api_key_pepper.get_secret_value(),
            )
        err.print(
            f"created key {record.prefix} for {name!r} with scopes "
            f"{', '.join(sorted(s.value for s in record.scopes))}; it is shown once:"
        )
        out.print(key, highlight=False, markup=False)


@keys_app.command("list")
def keys_list() -> None:
    """Keys with their prefix, scopes and state (never the key)."""
    from ringwatch.graph.api_keys import list_keys
    from ringwatch.graph.db import Neo4jRunner, create_driver

    with _edge():
        settings = _settings()
        with create_driver(settings.neo4j) as driver:
            keys = list_keys(Neo4jRunner(driver, settings.neo4j.database))
        table = Table(title="API keys")
        for column in ("prefix", "name", "scopes", "created", "last used", "state"):
            table.add_column(column)
        for key in keys:
            table.add_row(
                key.prefix,
                key.name,
                ", ".join(sorted(s.value for s in key.scopes)),
                f"{key.created_at:%Y-%m-%d %H:%M}",
                f"{key.last_used_at:%Y-%m-%d %H:%M}" if key.last_used_at else "-",
                "active" if key.active else f"revoked {key.revoked_at:%Y-%m-%d %H:%M}",
            )
        out.print(table)


@keys_app.command("revoke")
def keys_revoke(
    ref: Annotated[str, typer.Argument(help="The key's prefix (or its name).")],
) -> None:
    """Revoke a key; requests with it fail from then on (within the API's 30 s key cache)."""
    from ringwatch.graph.api_keys import revoke_key
    from ringwatch.graph.db import Neo4jRunner, create_driver

    with _edge():
        settings = _settings()
        with create_driver(settings.neo4j) as driver:
            revoked = revoke_key(Neo4jRunner(driver, settings.neo4j.database), ref)
        if not revoked:
            raise RingwatchError(f"no key with prefix or name {ref!r}")
        for key in revoked:
            out.print(f"revoked {key.prefix} ({key.name})")


@app.command()
def examples(
    name: Annotated[str, typer.Option(help="Name of the demo key to create.")] = "demo",
) -> None:
    """Create a read/write demo key and print a curl for each main endpoint, with real ids."""
    from ringwatch.graph.api_keys import Scope, create_key
    from ringwatch.graph.db import Neo4jRunner, create_driver

    with _edge():
        settings = _settings()
        with create_driver(settings.neo4j) as driver:
            runner = Neo4jRunner(driver, settings.neo4j.database)
            key, _ = create_key(runner, name, {Scope.READ, Scope.WRITE},
                                settings.api.api_key_pepper.get_secret_value())  # fmt: skip
            ring = runner.read(
                "MATCH (r:Ring {status: 'active'})<-[:MEMBER_OF]-(s:Subscriber) "
                "WITH r, min(s.id) AS member RETURN r.id AS ring, member "
                "ORDER BY r.risk DESC LIMIT 1"
            )
            email = runner.read("MATCH (e:Email) WHERE e.subscribers > 1 RETURN e.id AS id LIMIT 1")
        ring_id = ring[0]["ring"] if ring else "R-1"
        member = ring[0]["member"] if ring else "sub-000001"
        shared = email[0]["id"] if email else "someone@example.org"
        base = f"http://{settings.api.host}:{settings.api.port}"
        header = f"-H 'X-API-Key: {key}'"
        lines = [
            f"export RINGWATCH_KEY='{key}'   # demo key (read, write); shown once",
            f"curl -s {header} {base}/v1/rings?limit=5",
            f"curl -s {header} {base}/v1/rings/{ring_id}",
            f"curl -s {header} {base}/v1/subscribers/{member}",
            f"curl -s {header} '{base}/v1/subscribers/{member}/network?depth=2'",
            f"curl -s {header} {base}/v1/identifiers/email/{shared}",
            f"curl -s {header} -H 'Content-Type: application/json' "
            f'-d \'{{"emails": ["{shared}"]}}\' {base}/v1/score/signup',
            f"curl -s {header} -H 'Content-Type: application/json' -d '{{\"subscriber_id\": "
            f'"{member}", "kind": "payment", "amount": 650, "currency": "USD"}}\' '
            f"{base}/v1/score/transaction",
            f"curl -s {header} '{base}/v1/alerts?limit=5'",
            f"curl -s {header} {base}/v1/drift",
            f"curl -s {header} {base}/metrics | head",
        ]
        out.print("Try the API (OpenAPI at " + base + "/docs):", highlight=False)
        for line in lines:
            out.print("  " + line, highlight=False, markup=False, soft_wrap=True)


# --- analytics --------------------------------------------------------------------------------


@app.command()
def analyze(
    lookback_days: Annotated[
        int, typer.Option(min=1, max=3650, help="How far back usage rules look for hits.")
    ] = 30,
    publish: Annotated[
        bool, typer.Option(help="Publish ring lineage and alerts to Kafka afterwards.")
    ] = True,
    top: Annotated[int, typer.Option(min=0, max=1000, help="Rings to list at the end.")] = 10,
) -> None:
    """Find rings and score every subscriber: GDS analytics, rings, usage, merged risk, alerts."""
    from ringwatch.graph.analyze import analyze as run_analysis
    from ringwatch.graph.analyze import top_rings
    from ringwatch.graph.db import Neo4jRunner, create_driver, create_gds
    from ringwatch.scoring.graph import IDENTIFIER_NAMES

    with _edge():
        settings = _settings()
        with create_driver(settings.neo4j) as driver:
            gds = create_gds(settings.neo4j)
            try:
                report = run_analysis(
                    driver, gds, settings, lookback_days=lookback_days, publish=publish
                )
            finally:
                gds.close()
            ranked = top_rings(Neo4jRunner(driver, settings.neo4j.database), top)
        steps = Table(title=f"analysis as of {report.as_of:%Y-%m-%d %H:%M} UTC")
        steps.add_column("step")
        steps.add_column("seconds", justify="right")
        for step in [*report.pipeline.steps, *report.steps[1:]]:
            steps.add_row(step.name, f"{step.seconds:.2f}")
        out.print(steps)
        rings = report.rings
        out.print(
            f"rings: {rings.rings:,} active ({rings.created} created, {rings.grew} grew, "
            f"{rings.merged} merged, {rings.split} split, {rings.dissolved} dissolved, "
            f"{rings.unchanged} unchanged); scored {report.scoring.subscribers:,} subscribers "
            f"with {report.scoring.model}; priorities "
            + ", ".join(f"{k} {v:,}" for k, v in sorted(report.scoring.by_priority.items()))
            + f"; {report.scoring.alerts_raised:,} new alerts"
        )
        if ranked:
            table = Table(title=f"top {len(ranked)} rings by risk")
            for column in ("ring", "size", "risk", "priority", "shared", "top reason"):
                table.add_column(column, justify="right" if column in ("size", "risk") else "left")
            for ring in ranked:
                reasons = [r for r in reason_codec.loads(ring["reasons"]) if r.weight > 0]
                table.add_row(
                    ring["id"],
                    str(ring["size"]),
                    f"{ring['risk']:.2f}" if ring["risk"] is not None else "-",
                    ring["priority"] or "-",
                    ", ".join(
                        IDENTIFIER_NAMES.get(kind, kind) for kind in ring["identifier_types"] or []
                    ),
                    reasons[0].text if reasons else "",
                )
            out.print(table)
            stack = settings.stack
            out.print(
                f"Investigate in Neo4j Browser: http://127.0.0.1:{stack.neo4j_http_port}/browser/"
                f"  e.g. MATCH (r:Ring {{id: '{ranked[0]['id']}'}})<-[:MEMBER_OF]-(s)-[l]->(i) "
                "RETURN r, s, l, i",
                highlight=False,
                markup=False,
                soft_wrap=True,
            )


# --- backfill ---------------------------------------------------------------------------------

BACKFILL_DIR = Path(".ringwatch-backfill")

BackfillPaths = Annotated[
    list[Path],
    typer.Argument(
        help="Event files, loaded in order; the format comes from the extension "
        "(.csv, .jsonl / .ndjson, .parquet).",
        metavar="PATH",
        show_default=False,
    ),
]
BatchSizeOption = Annotated[
    int,
    typer.Option("--batch-size", min=1, max=100_000, help="Events per Neo4j transaction."),
]
CheckpointOption = Annotated[
    Path | None,
    typer.Option(
        "--checkpoint",
        help="Checkpoint file: how far each input file got. A new run resumes from it.",
        show_default=".ringwatch-backfill/<family>.checkpoint.json",
    ),
]
RejectsOption = Annotated[
    Path | None,
    typer.Option(
        "--rejects",
        help="Rejected rows, one JSON line each (file, line, reason, stage).",
        show_default=".ringwatch-backfill/<family>.rejects.jsonl",
    ),
]
RestartOption = Annotated[
    bool,
    typer.Option(
        "--restart",
        help="Ignore and reset the checkpoint (and the rejects file): read every file again.",
    ),
]


@backfill_app.command("identities")
def backfill_identities(
    paths: BackfillPaths,
    batch_size: BatchSizeOption = 5000,
    checkpoint: CheckpointOption = None,
    rejects: RejectsOption = None,
    restart: RestartOption = False,
    offline: Annotated[
        bool,
        typer.Option(
            "--offline",
            help="Empty local database only: build the store with neo4j-admin import "
            "(Neo4j is stopped and restarted). Much faster than the online load.",
        ),
    ] = False,
    transactions: Annotated[
        list[Path] | None,
        typer.Option(
            "--transactions",
            help="With --offline: transaction files imported in the same pass (usage history, "
            "counterparties, devices and IPs used). Repeat for several files.",
        ),
    ] = None,
) -> None:
    """Load identity events (registrations, updates, closures, SIMs, devices)."""
    if offline:
        _offline_import(paths, transactions or [], rejects)
        return
    if transactions:
        raise typer.BadParameter(
            "goes with --offline; online, load transactions with "
            "`ringwatch backfill transactions FILE`",
            param_hint="--transactions",
        )
    _backfill("identity", paths, batch_size, checkpoint, rejects, restart)


def _offline_import(paths: list[Path], transactions: list[Path], rejects: Path | None) -> None:
    import tempfile

    from ringwatch.ingest.offline_import import offline_import
    from ringwatch.ingest.prepare import Preparer

    with _edge():
        settings = _settings()
        rejects_path = rejects or Path(".ringwatch-backfill/offline-rejects.jsonl")
        with tempfile.TemporaryDirectory(prefix="ringwatch-import-") as work:
            summary = offline_import(
                paths,
                transaction_paths=transactions,
                stack=settings.stack,
                preparer=Preparer(
                    pii_hmac_key=settings.scoring.pii_hmac_key,
                    default_region=settings.ingest.default_region,
                ),
                hub_cap=settings.scoring.hub_cap,
                work_dir=Path(work),
                rejects_path=rejects_path,
            )
        out.print(
            f"[green]imported[/] {summary.events - summary.transactions:,} identity events "
            f"and {summary.transactions:,} transactions "
            f"({summary.subscribers:,} subscribers, {summary.identifiers:,} identifiers, "
            f"{summary.links:,} links, {summary.usage_buckets:,} usage days) "
            f"in {summary.seconds:.1f}s "
            f"({summary.rate:,.0f} records/s; neo4j-admin {summary.import_seconds:.1f}s); "
            f"duplicates {summary.duplicates:,}, rejected {summary.rejected:,}"
        )
        if summary.rejected:
            out.print(f"  rejects: {rejects_path}")


@backfill_app.command("transactions")
def backfill_transactions(
    paths: BackfillPaths,
    batch_size: BatchSizeOption = 5000,
    checkpoint: CheckpointOption = None,
    rejects: RejectsOption = None,
    restart: RestartOption = False,
) -> None:
    """Load transaction events (usage, calls, SMS, top-ups, payments, transfers)."""
    _backfill("transactions", paths, batch_size, checkpoint, rejects, restart)


@backfill_app.command("labels")
def backfill_labels(
    paths: BackfillPaths,
    batch_size: BatchSizeOption = 5000,
    checkpoint: CheckpointOption = None,
    rejects: RejectsOption = None,
    restart: RestartOption = False,
) -> None:
    """Load fraud / legitimate labels (chargebacks, analyst decisions)."""
    _backfill("labels", paths, batch_size, checkpoint, rejects, restart)


def _backfill(
    family: str,
    paths: list[Path],
    batch_size: int,
    checkpoint: Path | None,
    rejects: Path | None,
    restart: bool,
) -> None:
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from ringwatch.graph.db import Neo4jRunner, create_driver
    from ringwatch.graph.writer import GraphWriter
    from ringwatch.ingest.backfill import BackfillInterruptedError, BackfillProgress, backfill
    from ringwatch.ingest.prepare import Preparer

    checkpoint_path = checkpoint or BACKFILL_DIR / f"{family}.checkpoint.json"
    rejects_path = rejects or BACKFILL_DIR / f"{family}.rejects.jsonl"
    with _edge():
        settings = _settings()
        interrupted: BackfillInterruptedError | None = None
        with create_driver(settings.neo4j) as driver:
            runner = Neo4jRunner(driver, settings.neo4j.database)
            preparer = Preparer(
                pii_hmac_key=settings.scoring.pii_hmac_key,
                default_region=settings.ingest.default_region,
            )
            columns = (
                TextColumn("{task.description}"),
                BarColumn(),
                TextColumn("{task.completed:,.0f} rows"),
                TextColumn("{task.fields[rate]:,.0f} rows/s"),
                TimeElapsedColumn(),
            )
            with Progress(*columns, console=out, transient=False) as bar:
                task = bar.add_task(f"backfill {family}", total=None, rate=0.0)
                started = time.perf_counter()

                def report(progress: BackfillProgress) -> None:
                    elapsed = time.perf_counter() - started
                    bar.update(
                        task,
                        completed=progress.rows_read,
                        rate=progress.rows_read / elapsed if elapsed > 0 else 0.0,
                        description=f"backfill {family}: {Path(progress.file).name}",
                    )

                try:
                    summary: BackfillSummary = backfill(
                        family,
                        paths,
                        runner=runner,
                        writer=GraphWriter(runner, hub_cap=settings.scoring.hub_cap),
                        preparer=preparer,
                        batch_size=batch_size,
                        checkpoint_path=checkpoint_path,
                        rejects_path=rejects_path,
                        progress=report,
                        resume=not restart,
                    )
                except BackfillInterruptedError as exc:
                    interrupted, summary = exc, exc.summary
                bar.update(task, total=summary.rows_read, completed=summary.rows_read)
        _print_backfill_summary(family, summary, rejects_path)
        if summary.files_skipped:
            out.print(
                f"files already loaded per {checkpoint_path} were skipped; "
                "pass --restart to read them again",
                markup=False,
                highlight=False,
            )
        if interrupted is not None:
            err.print(
                str(interrupted), style="bold yellow", markup=False, highlight=False, soft_wrap=True
            )
            raise typer.Exit(code=130)


def _print_backfill_summary(family: str, summary: BackfillSummary, rejects: Path) -> None:
    table = Table(title=f"backfill {family}", show_header=False)
    table.add_column("what")
    table.add_column("value", justify="right")
    table.add_row("files", f"{summary.files:,} ({summary.files_skipped:,} already loaded)")
    table.add_row("rows read", f"{summary.rows_read:,}")
    table.add_row("written", f"{summary.written:,}")
    table.add_row("duplicates", f"{summary.duplicates:,}")
    table.add_row("rejected", f"{summary.rejected:,}")
    table.add_row("rate", f"{summary.rate:,.0f} rows/s")
    table.add_row("elapsed", f"{summary.seconds:,.1f} s")
    if summary.rejected:
        table.add_row("rejects file", Text(str(rejects)))
    out.print(table)


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


# --- alerts -----------------------------------------------------------------------------------


@alerts_app.command("deliver")
def alerts_deliver(
    once: Annotated[
        bool, typer.Option("--once", help="Deliver what is due now, then exit.")
    ] = False,
    poll_interval: Annotated[
        float | None,
        typer.Option(
            min=0.05,
            help="Seconds between polls of the outbox when it is empty.",
            envvar="RINGWATCH_ALERTS__POLL_INTERVAL_S",
            show_default="2",
        ),
    ] = None,
) -> None:
    """Deliver due alerts to n8n and Slack, with retries and backoff, until stopped.

    SIGTERM or Ctrl-C: the worker finishes the alert in hand, records it, and exits.
    """
    import logging

    from ringwatch.delivery import run_delivery
    from ringwatch.graph.db import Neo4jRunner, create_driver
    from ringwatch.graph.delivery import delivery_counts

    with _edge():
        settings = _settings()
        logging.basicConfig(level=settings.log_level, format="%(asctime)s %(name)s %(message)s")
        summary = run_delivery(settings, poll_interval_s=poll_interval, once=once)
        with create_driver(settings.neo4j) as driver:
            counts = delivery_counts(Neo4jRunner(driver, settings.neo4j.database))
        out.print(
            f"[green]delivered[/] {summary.delivered:,} alerts "
            f"({summary.fallbacks:,} via Slack in place of n8n); "
            f"{summary.retried:,} attempts to retry, {summary.failed:,} failed for good",
            highlight=False,
        )
        out.print(
            "  outbox: " + ", ".join(f"{state} {count:,}" for state, count in counts.items()),
            highlight=False,
        )


@alerts_app.command("test")
def alerts_test(
    priority: Annotated[
        str, typer.Option(help="Priority of the sample alert: P1, P2, P3 or P4.")
    ] = "P1",
) -> None:
    """Send a sample alert, marked as a test, to every configured sink; print each answer."""
    from ringwatch.delivery import DeliveryError, send_test_alert
    from ringwatch.delivery.sinks import create_client, n8n_url
    from ringwatch.scoring.risk import Priority

    with _edge():
        try:
            chosen = Priority(priority.upper())
        except ValueError:
            raise DeliveryError(f"unknown priority '{priority}'; choose P1, P2, P3 or P4") from None
        settings = _settings()
        config = settings.alerts
        with create_client(config) as client:
            results = send_test_alert(client, config, chosen, scoring=settings.scoring)
        for result in results:
            # The n8n path is no secret; the Slack webhook URL is, and is never shown.
            where = n8n_url(config, chosen.value) if result.sink.value == "n8n" else "webhook"
            state = "[green]accepted[/]" if result.ok else "[red]rejected[/]"
            line = f"  {result.sink.value:<6} {state} {result.summary}  ({where})"
            out.print(line, soft_wrap=True, highlight=False)
        rejected = [result for result in results if not result.ok]
        if rejected:
            raise DeliveryError(
                f"{len(rejected)} of {len(results)} sink(s) did not accept the test alert: "
                + ", ".join(f"{result.sink.value} {result.summary}" for result in rejected)
            )
        out.print(f"[green]test alert delivered[/] to {len(results)} sink(s)")


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


@app.command()
def browser() -> None:
    """Where Neo4j Browser is, the one command that opens the investigation guide, the style."""
    import httpx

    from ringwatch.graph.investigate import kit_dir
    from ringwatch.service.browser_kit import (
        GUIDE_ROUTE,
        api_base_url,
        browser_url,
        play_command,
        style_command,
    )

    settings = _settings()
    rows = [
        ("Neo4j Browser", f"{browser_url(settings.stack)}  (no authentication on the local stack)"),
        ("investigation guide", play_command(settings.api)),
        ("style sheet", style_command(settings.api)),
        ("queries", f"{kit_dir()}/*.cypher  (drag them onto Browser's Favorites)"),
    ]
    for name, value in rows:
        out.print(f"{name + ':':<21}{value}", markup=False, highlight=False, soft_wrap=True)
    out.print("Type the guide command into the Browser editor and press Enter.", highlight=False)
    try:
        answered = httpx.get(f"{api_base_url(settings.api)}{GUIDE_ROUTE}", timeout=2).is_success
    except httpx.HTTPError:
        answered = False
    if not answered:
        out.print(
            f"[yellow]note:[/] the API is not answering on {api_base_url(settings.api)}; "
            "the guide and the style sheet are served by it: start it with 'ringwatch serve'.",
            highlight=False,
            soft_wrap=True,
        )


# --- GNN models -------------------------------------------------------------------------------

models_app = typer.Typer(help="GNN models: list, evaluate, promote (gated), batch scoring.")
app.add_typer(models_app, name="models")


def _registry() -> ModelRegistry:
    from ringwatch.models.registry import ModelRegistry

    return ModelRegistry(_settings().models.dir)


def _metric(value: object) -> str:
    return f"{value:.3f}" if isinstance(value, float) else "-"


@app.command()
def train(
    kinds: Annotated[
        list[str] | None,
        typer.Option(
            "--model", help="Model kinds to train: sage, camouflage, boosted (default all three)."
        ),
    ] = None,
    epochs: Annotated[int, typer.Option(min=1, max=1000, help="At most this many epochs.")] = 60,
    seed: Annotated[int, typer.Option(help="Seed of the split, sampling and weights.")] = 0,
    min_new_labels: Annotated[
        int,
        typer.Option(
            min=0,
            help="Train only if at least this many subscribers were labelled since the promoted "
            "model's snapshot (for a schedule: cron runs it, it trains when labels came in).",
        ),
    ] = 0,
    promote: Annotated[
        bool, typer.Option(help="Promote the new model if it passes the promotion gate.")
    ] = False,
) -> None:
    """Train the models on the live graph and store the best on validation PR-AUC (not promoted
    unless --promote and it beats the promoted model)."""
    from ringwatch.graph.db import Neo4jRunner, create_driver
    from ringwatch.graph.gnn_run import MODEL_KINDS, new_labels, train_from_graph
    from ringwatch.models.config import TrainConfig
    from ringwatch.models.exceptions import ModelError

    with _edge():
        settings = _settings()
        chosen = kinds or list(MODEL_KINDS)
        unknown = sorted(set(chosen) - set(MODEL_KINDS))
        if unknown:
            raise typer.BadParameter(f"unknown model kind(s): {', '.join(unknown)}")
        registry = _registry()
        with create_driver(settings.neo4j) as driver:
            runner = Neo4jRunner(driver, settings.neo4j.database)
            if min_new_labels:
                added = new_labels(runner, registry)
                if added is not None and added < min_new_labels:
                    out.print(
                        f"{added} new labels since the last model (need {min_new_labels}): "
                        "not training",
                        highlight=False,
                    )
                    return
            report = train_from_graph(
                runner,
                registry,
                settings.models,
                kinds=chosen,
                base=TrainConfig(epochs=epochs, seed=seed),
                seed=seed,
            )
        manifest = report.manifest
        data = report.export
        out.print(
            f"exported {data['subscribers']:,} subscribers ({data['labelled_fraud']:,} fraud, "
            f"{data['labelled_legitimate']:,} legitimate labels) in {data['seconds']:.1f} s",
            highlight=False,
        )
        if report.candidates:
            table = Table(title="candidates (split by connected component)")
            for column in ("model", "kept", "val PR-AUC", "test PR-AUC", "test ROC-AUC"):
                table.add_column(column)
            for candidate in report.candidates:
                metrics = candidate["metrics"]
                table.add_row(
                    candidate["kind"],
                    candidate["fit"],
                    _metric(metrics["val"]["pr_auc"]),
                    _metric(metrics["test"]["pr_auc"]),
                    _metric(metrics["test"]["roc_auc"]),
                )
            out.print(table)
        if not promote:
            out.print(
                f"stored {manifest.version} ({manifest.kind}); promote it with "
                f"'ringwatch models promote {manifest.version}'",
                highlight=False,
            )
            return
        try:
            promotion = registry.promote(manifest.version)
        except ModelError as exc:
            out.print(f"stored {manifest.version}, not promoted: {exc}", highlight=False)
            return
        out.print(
            f"stored and promoted {manifest.version} (was {promotion.previous or 'none'})",
            highlight=False,
        )


@models_app.command("list")
def models_list() -> None:
    """Every stored model with its validation and test metrics; * marks the promoted one."""
    registry = _registry()
    promoted = registry.promoted_version()
    table = Table(title=f"models in {registry.root}")
    for column in ("", "version", "kind", "created", "subscribers", "val PR-AUC", "test PR-AUC"):
        table.add_column(column)
    for manifest in registry.versions():
        table.add_row(
            "*" if manifest.version == promoted else "",
            manifest.version,
            manifest.kind,
            f"{manifest.created_at:%Y-%m-%d %H:%M}",
            f"{manifest.data.get('subscribers', 0):,}",
            _metric(manifest.metrics.get("val", {}).get("pr_auc")),
            _metric(manifest.metrics.get("test", {}).get("pr_auc")),
        )
    out.print(table)


@models_app.command("evaluate")
def models_evaluate(version: Annotated[str, typer.Argument(help="e.g. v0003")]) -> None:
    """Metrics of a stored model: at training time, and on today's labels (all, and unseen)."""
    from ringwatch.graph.db import Neo4jRunner, create_driver
    from ringwatch.graph.gnn_run import evaluate_version

    with _edge():
        settings = _settings()
        registry = _registry()
        manifest = registry.manifest(version)
        with create_driver(settings.neo4j) as driver:
            today = evaluate_version(
                Neo4jRunner(driver, settings.neo4j.database), registry, version
            )
        table = Table(title=f"{version} ({manifest.kind})")
        for column in ("set", "labelled", "fraud", "PR-AUC", "ROC-AUC", "Brier"):
            table.add_column(column)
        rows = [(f"{name} (training time)", m) for name, m in manifest.metrics.items()]
        rows += [(f"{name} (today)", m) for name, m in today.items()]
        for name, m in rows:
            table.add_row(name, str(m.get("n", "-")), str(m.get("fraud", "-")),
                          _metric(m.get("pr_auc")), _metric(m.get("roc_auc")),
                          _metric(m.get("brier")))  # fmt: skip
        out.print(table)


@models_app.command("promote")
def models_promote(
    version: Annotated[str, typer.Argument(help="e.g. v0003")],
    force: Annotated[
        bool, typer.Option("--force", help="Promote even if it does not beat the promoted model.")
    ] = False,
) -> None:
    """Serve a model: refused unless its validation PR-AUC beats the promoted model's."""
    with _edge():
        promotion = _registry().promote(version, force=force)
        if promotion.forced:
            err.print(
                f"[bold yellow]warning:[/] {version} was promoted by force over "
                f"{promotion.previous or 'nothing'} (validation PR-AUC "
                f"{_metric(promotion.candidate_pr_auc)} vs {_metric(promotion.previous_pr_auc)})",
                highlight=False,
                soft_wrap=True,
            )
        out.print(
            f"promoted {version} (was {promotion.previous or 'none'}); the API picks it up "
            "within RINGWATCH_MODELS__RELOAD_CHECK_S; 'ringwatch models score' rescores everyone",
            highlight=False,
        )


@models_app.command("score")
def models_score(
    version: Annotated[
        str | None, typer.Option(help="Model version (default: the promoted one).")
    ] = None,
    merge: Annotated[
        bool, typer.Option(help="Recompute the merged risk (and its alerts) afterwards.")
    ] = True,
) -> None:
    """Batch inference: write gnn_risk and gnn_reasons to every subscriber, then merge."""
    from ringwatch.graph.analyze import data_time
    from ringwatch.graph.db import Neo4jRunner, create_driver
    from ringwatch.graph.gnn_run import score_subscribers
    from ringwatch.graph.scoring_run import score_all

    with _edge():
        settings = _settings()
        with create_driver(settings.neo4j) as driver:
            runner = Neo4jRunner(driver, settings.neo4j.database)
            report = score_subscribers(
                runner, _registry(), version=version, scoring=settings.scoring
            )
            out.print(
                f"scored {report.subscribers:,} subscribers with {report.version} in "
                f"{report.seconds:.1f} s (GNN bands: "
                + ", ".join(f"{k} {v:,}" for k, v in sorted(report.by_band.items()))
                + ")",
                highlight=False,
            )
            if merge:
                merged = score_all(runner, settings.scoring, as_of=data_time(runner))
                out.print(
                    f"merged risk of {merged.subscribers:,} subscribers with {merged.model}: "
                    + ", ".join(f"{k} {v:,}" for k, v in sorted(merged.by_priority.items()))
                    + f"; {merged.alerts_raised:,} new alerts",
                    highlight=False,
                )


def main() -> None:  # pragma: no cover - console entry point
    app()
