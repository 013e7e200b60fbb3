"""``onecert bench``: benchmarks that print figures and ratios."""

from __future__ import annotations

from pathlib import Path

import typer

bench_app = typer.Typer(help="Benchmarks: figures and ratios against a baseline measured in the same run.")


@bench_app.command("store")
def store(
    rows: int = typer.Option(100_000, "--rows", min=1000, help="Materials to load."),
    batch: int = typer.Option(5000, "--batch", min=100, help="Rows per upsert batch."),
    lookups: int = typer.Option(2000, "--lookups", min=100, help="Lookups of random subjects to time."),
    database_url: str | None = typer.Option(None, "--database-url", help="Benchmark this database instead."),
) -> None:
    """Batch upsert rows/s against raw executemany of the same rows, and lookup p50/p99."""
    from hub.bench.store import print_store_bench, run_store_bench

    print_store_bench(run_store_bench(rows=rows, batch=batch, lookups=lookups, database_url=database_url))


@bench_app.command("ingest")
def ingest(
    rows: int = typer.Option(100_000, "--rows", min=1000, help="Persons (≈ records) in the police sandbox."),
    batch: int = typer.Option(50_000, "--batch", min=100, help="Rows per validate-and-load batch."),
    page: int = typer.Option(5000, "--page", min=100, help="Rows per REST page."),
    home: Path | None = typer.Option(
        None, "--home", help="Keep the sandbox data here and reuse it (the store is always new)."
    ),
) -> None:
    """Records/s of a validated sync from the sandbox REST source, peak memory, and the ratio to the
    store's raw batch insert of the same rows."""
    from hub.bench.ingest import print_ingest_bench, run_ingest_bench

    print_ingest_bench(run_ingest_bench(rows=rows, batch=batch, page=page, home=home))


@bench_app.command("lookup")
def lookup(
    subjects: int = typer.Option(1_000_000, "--subjects", min=1000, help="Subjects in the served store."),
    seconds: float = typer.Option(20.0, "--seconds", min=2, help="Seconds each load runs."),
    concurrency: int = typer.Option(32, "--concurrency", min=1),
    workers: int = typer.Option(2, "--workers", min=1, help="Hub worker processes."),
    home: Path = typer.Option(
        Path("var/bench-lookup"), "--home", help="Where the bench store is kept (reused)."
    ),
    database_url: str | None = typer.Option(None, "--database-url", help="Benchmark PostgreSQL instead."),
    during_sync: int = typer.Option(
        0, "--during-sync", min=0, help="Also time lookups while a sync of this many rows loads (embedded store)."
    ),
    sync_home: Path = typer.Option(
        Path("var/bench-lookup-sync"), "--sync-home", help="Where the sandbox data of --during-sync is kept."
    ),
) -> None:
    """Signed lookups/s, p50 and p99 from a separate process at fixed concurrency, and the ratio to a
    trivial unsigned endpoint of the same app in the same run; with ``--during-sync``, the same while a
    sync loads into the store."""
    from hub.bench.lookup import (
        print_during_sync,
        print_lookup_bench,
        run_lookup_bench,
        run_lookup_during_sync,
    )

    if during_sync and database_url:
        raise typer.BadParameter("--during-sync copies the embedded store; leave out --database-url")
    lookups, trivial = run_lookup_bench(
        subjects=subjects, seconds=seconds, concurrency=concurrency, workers=workers, home=home,
        database_url=database_url,
    )  # fmt: skip
    print_lookup_bench(subjects, lookups, trivial)
    if during_sync:
        print_during_sync(*run_lookup_during_sync(
            subjects=subjects, rows=during_sync, seconds=seconds, concurrency=concurrency, workers=workers,
            home=home, sync_home=sync_home,
        ))  # fmt: skip


@bench_app.command("pages")
def pages(
    subjects: int = typer.Option(1_000_000, "--subjects", min=1000, help="Subjects in the served store."),
    samples: int = typer.Option(100, "--samples", min=10, help="Requests per page."),
    home: Path = typer.Option(
        Path("var/bench-lookup"), "--home", help="Where the bench store is kept (the lookup bench's, reused)."
    ),
) -> None:
    """Render time of the console, the receipt, the citizen page and the steward dashboard (budget 300 ms)."""
    from hub.bench.pages import print_pages_bench, run_pages_bench

    print_pages_bench(subjects, run_pages_bench(subjects=subjects, samples=samples, home=home))


def register(app: typer.Typer) -> None:
    app.add_typer(bench_app, name="bench")
