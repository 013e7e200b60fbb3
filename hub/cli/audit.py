"""``onecert audit verify``: check the usage records' hash chain."""

from __future__ import annotations

import typer

from materials_store.settings import get_settings

audit_app = typer.Typer(help="The usage records (用证记录) and their hash chain.")


@audit_app.command("verify")
def verify() -> None:
    """Recompute the chain; name the first edited, deleted, inserted or reordered record (exit 1)."""
    from hub.cli._common import open_store_or_exit
    from materials_store.store import verify_usage_chain

    handle = open_store_or_exit(get_settings())
    with handle.sessions() as session:
        report = verify_usage_chain(session)
    if report.ok:
        typer.echo(f"ok: {report.checked} usage records, chain intact")
        return
    where = f"record {report.first_bad_seq}" if report.first_bad_seq else "the chain head"
    typer.echo(
        f"TAMPERED at {where}: {report.reason} ({report.checked} records verified before it)", err=True
    )
    raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    app.add_typer(audit_app, name="audit")
