"""``onecert sync`` and ``onecert sources``: run syncs in-process and show what each source last did."""

from __future__ import annotations

import json

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from materials_store.settings import get_settings

SOURCE_KEYS = (
    "source",
    "extracted",
    "loaded",
    "new_versions",
    "unchanged",
    "quarantined",
    "cursor",
    "last_run_at",
)


def sync(sources: list[str] = typer.Argument(None, help="Sources to sync (all when none is named).")) -> None:
    """Extract → validate → load (or quarantine) for the named sources, with a progress bar."""
    from connectors.pipeline import run_sync
    from connectors.registry import source_names
    from hub.cli._common import open_store_or_exit, sync_catalogue

    names = sources or source_names()
    unknown = sorted(set(names) - set(source_names()))
    if unknown:
        typer.echo(f"unknown sources: {', '.join(unknown)} (known: {', '.join(source_names())})", err=True)
        raise typer.Exit(2)
    handle = open_store_or_exit(get_settings())
    sync_catalogue(handle)
    failed = []
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.fields[counts]}"),
        TimeElapsedColumn(),
    )
    with Progress(*columns) as progress:
        for name in names:
            task = progress.add_task(name, total=None, counts="")

            def show(report, task=task):  # type: ignore[no-untyped-def]
                progress.update(
                    task, counts=f"{report.extracted:,} read · {report.quarantined:,} quarantined"
                )

            report = run_sync(name, handle=handle, progress=show)
            progress.update(
                task,
                total=1,
                completed=1,
                counts=f"{report.state} · {report.extracted:,} read · {report.loaded:,} loaded · "
                f"{report.unchanged:,} unchanged · {report.quarantined:,} quarantined",
            )
            if report.state != "success":
                failed.append(f"{name}: {report.error}")
    for line in failed:
        typer.echo(f"failed {line}", err=True)
    if failed:
        raise typer.Exit(1)


def sources(
    as_json: bool = typer.Option(False, "--json", help="A JSON list, one object per source."),
) -> None:
    """Per source: the last run's counts, its cursor and when it ran."""
    from connectors.registry import source_names
    from hub.cli._common import open_store_or_exit
    from materials_store.store import get_cursor, last_runs

    handle = open_store_or_exit(get_settings())
    rows = []
    with handle.sessions() as session:
        runs = last_runs(session)
        for name in source_names():
            run = runs.get(name)
            rows.append(
                {
                    "source": name,
                    "extracted": run.extracted if run else 0,
                    "loaded": run.loaded if run else 0,
                    "new_versions": run.new_versions if run else 0,
                    "unchanged": run.unchanged if run else 0,
                    "quarantined": run.quarantined if run else 0,
                    "cursor": get_cursor(session, source=name),
                    "last_run_at": run.started_at.isoformat() if run else None,
                }
            )
    if as_json:
        typer.echo(json.dumps(rows, ensure_ascii=False, indent=2))
        return
    table = Table(title="sources · last run")
    for key in SOURCE_KEYS:
        table.add_column(key)
    for row in rows:
        table.add_row(*(str(row[key]) if row[key] is not None else "" for key in SOURCE_KEYS))
    Console(width=200).print(table)


def register(app: typer.Typer) -> None:
    app.command("sync")(sync)
    app.command("sources")(sources)
