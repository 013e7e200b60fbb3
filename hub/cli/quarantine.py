"""``onecert quarantine``: the steward's quarantine queue from a shell (the same service as the API).

Acts are recorded in the usage log as the local steward ``cli:<user>``.
"""

from __future__ import annotations

import getpass
import json
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from materials_store.errors import OneCertError
from materials_store.models import Client
from materials_store.settings import get_settings

quarantine_app = typer.Typer(help="Rows that broke their contract: list, show, resolve, discard.")
conflicts_app = typer.Typer(help="Identity conflicts: subjects whose name or birth date differs by source.")


def _steward() -> Client:
    return Client(id=f"cli:{getpass.getuser()}", kind="steward", name="local steward (CLI)")


def _fail(error: OneCertError) -> typer.Exit:
    typer.echo(f"{error.title}: {error.detail}", err=True)
    return typer.Exit(1)


@quarantine_app.command("list")
def list_rows(
    source: str | None = typer.Option(None, "--source"),
    status: str = typer.Option("open", "--status", help="open, resolved, discarded or all"),
    rule: str | None = typer.Option(None, "--rule", help="Only rows that broke this rule"),
    limit: int = typer.Option(50, "--limit"),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """The queue, with the rules each row broke (never the row's contents)."""
    from hub.api.services.steward import quarantine_page
    from hub.cli._common import open_store_or_exit

    handle = open_store_or_exit(get_settings())
    with handle.sessions() as session:
        try:
            page = quarantine_page(
                session, source=source, status=None if status == "all" else status, run_id=None, rule=rule,
                limit=limit, offset=0,
            )  # fmt: skip
        except OneCertError as error:
            raise _fail(error) from None
    if as_json:
        typer.echo(page.model_dump_json(indent=2))
        return
    table = Table(title=f"quarantine · {page.total} {status}")
    for column in ("id", "source", "record", "rules", "status", "since"):
        table.add_column(column)
    for item in page.items:
        rules = ", ".join(sorted({r.rule for r in item.rules}))
        table.add_row(str(item.id), item.source, item.source_record_id or "", rules, item.status,
                      f"{item.created_at:%Y-%m-%d %H:%M}")  # fmt: skip
    Console().print(table)


@quarantine_app.command("show")
def show(row_id: int = typer.Argument(...)) -> None:
    """One row with its contents, as JSON (the read is recorded in the usage log)."""
    from hub.api.services.steward import quarantine_detail
    from hub.cli._common import open_store_or_exit

    handle = open_store_or_exit(get_settings())
    with handle.sessions() as session:
        try:
            detail = quarantine_detail(session, keyring=handle.keyring, steward=_steward(), row_id=row_id)
        except OneCertError as error:
            raise _fail(error) from None
    typer.echo(detail.model_dump_json(indent=2))


def _resolve(row_id: int, body: dict[str, Any]) -> None:
    from hub.api.services.steward import Resolution, resolve_quarantine
    from hub.cli._common import open_store_or_exit

    handle = open_store_or_exit(get_settings())
    with handle.sessions() as session:
        try:
            result = resolve_quarantine(
                session, keyring=handle.keyring, steward=_steward(), row_id=row_id,
                resolution=Resolution.model_validate(body),
            )  # fmt: skip
        except OneCertError as error:
            raise _fail(error) from None
    typer.echo(result.model_dump_json())


@quarantine_app.command("resolve")
def resolve(
    row_id: int = typer.Argument(...),
    sets: list[str] = typer.Option([], "--set", help="field=value corrections, repeatable"),
    row_file: Path | None = typer.Option(None, "--row", exists=True, dir_okay=False, help="the corrected row (JSON)"),
) -> None:
    """Correct a row and re-validate it against its contract; it loads when it passes."""
    from hub.api.services.steward import quarantine_detail
    from hub.cli._common import open_store_or_exit

    if row_file is not None:
        row = json.loads(row_file.read_text(encoding="utf-8"))
    else:
        handle = open_store_or_exit(get_settings())
        with handle.sessions() as session:
            try:
                row = quarantine_detail(session, keyring=handle.keyring, steward=_steward(), row_id=row_id).row
            except OneCertError as error:
                raise _fail(error) from None
    for assignment in sets:
        field, sep, value = assignment.partition("=")
        if not sep:
            raise typer.BadParameter(f"--set takes field=value, not {assignment!r}")
        row[field] = value or None
    _resolve(row_id, {"action": "revalidate", "row": row})


@quarantine_app.command("discard")
def discard(
    row_id: int = typer.Argument(...), reason: str = typer.Option(..., "--reason", help="why the row is dropped")
) -> None:
    """Close a row without loading it, with a reason."""
    _resolve(row_id, {"action": "discard", "reason": reason})


@conflicts_app.command("list")
def conflicts(
    status: str = typer.Option("open", "--status", help="open, dismissed, resolved or all"),
    limit: int = typer.Option(50, "--limit"),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Subjects whose name or birth date differs between sources (masked)."""
    from hub.api.services.steward import conflicts_page
    from hub.cli._common import open_store_or_exit

    handle = open_store_or_exit(get_settings())
    with handle.sessions() as session:
        page = conflicts_page(
            session, keyring=handle.keyring, status=None if status == "all" else status, limit=limit, offset=0
        )
    if as_json:
        typer.echo(page.model_dump_json(indent=2))
        return
    table = Table(title=f"identity conflicts · {page.total} {status}")
    for column in ("id", "subject", "field", "values (sources)", "since"):
        table.add_column(column)
    for item in page.items:
        values = "; ".join(f"{value} ({', '.join(sources)})" for value, sources in item.values.items())
        table.add_row(str(item.id), item.subject, item.field, values, f"{item.first_seen:%Y-%m-%d}")
    Console().print(table)


@conflicts_app.command("reconcile")
def reconcile() -> None:
    """Run the cross-source identity check now (the reconcile_identity DAG runs it after police syncs)."""
    from dataclasses import asdict

    from hub.cli._common import open_store_or_exit
    from materials_store.quality import reconcile_identity

    handle = open_store_or_exit(get_settings())
    with handle.sessions() as session:
        typer.echo(json.dumps(asdict(reconcile_identity(session, keyring=handle.keyring))))


def register(app: typer.Typer) -> None:
    app.add_typer(quarantine_app, name="quarantine")
    app.add_typer(conflicts_app, name="conflicts")
