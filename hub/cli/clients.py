"""``onecert clients``: register windows, departments, stewards and citizens with their public keys."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from materials_store.errors import DataError
from materials_store.identity import InvalidIdentifier, parse_identifier
from materials_store.settings import get_settings

clients_app = typer.Typer(help="Clients of the API and their public keys (no shared passwords).")


@clients_app.command("add")
def add(
    kind: str = typer.Option(..., "--kind", help="window, department, steward or citizen"),
    name: str = typer.Option(..., "--name", help="e.g. 西湖区政务服务中心 3 号窗口"),
    public_key: Path = typer.Option(
        ..., "--public-key", exists=True, dir_okay=False, help="PEM, Ed25519 or P-256"
    ),
    org: str | None = typer.Option(None, "--org", help="Service centre (windows) or department code."),
    region: str | None = typer.Option(None, "--region", help="Administrative division code (windows)."),
    types: str | None = typer.Option(
        None, "--types", help="Material types a department issues, comma-separated."
    ),
    subject_id: str | None = typer.Option(
        None, "--subject-id", help="A citizen's own ID number (stored blind)."
    ),
) -> None:
    """Register a client; prints its new client_id, alone, on stdout."""
    from hub.cli._common import open_store_or_exit, sync_catalogue
    from materials_store.store import add_client

    handle = open_store_or_exit(get_settings())
    sync_catalogue(handle)
    subject_index = None
    if subject_id is not None:
        try:
            subject_index = handle.keyring.blind_index(parse_identifier(subject_id).value)
        except InvalidIdentifier as error:
            typer.echo(f"invalid --subject-id ({error.reason.value}): {error.detail}", err=True)
            raise typer.Exit(1) from None
    codes = [code.strip() for code in (types or "").split(",") if code.strip()]
    with handle.sessions() as session:
        try:
            client = add_client(
                session, kind=kind, name=name, public_key_pem=public_key.read_text(encoding="ascii"),
                org=org, region=region, types=codes, subject_index=subject_index,
            )  # fmt: skip
        except DataError as error:
            typer.echo(error.detail, err=True)
            raise typer.Exit(1) from None
        session.commit()
        typer.echo(client.id)


@clients_app.command("list")
def list_command() -> None:
    """Every registered client."""
    from hub.cli._common import open_store_or_exit
    from materials_store.store import list_clients

    handle = open_store_or_exit(get_settings())
    table = Table(title="clients")
    for column in ("client_id", "kind", "name", "org", "region", "types", "status"):
        table.add_column(column)
    with handle.sessions() as session:
        for client in list_clients(session):
            table.add_row(
                client.id, client.kind, client.name, client.org or "", client.region or "",
                ",".join(client.types), client.status,
            )  # fmt: skip
    Console(width=200).print(table)


@clients_app.command("disable")
def disable(client_id: str = typer.Argument(..., help="The client to disable.")) -> None:
    """Disable a client: its tokens stop working at once."""
    from hub.cli._common import open_store_or_exit
    from materials_store.errors import NotFound
    from materials_store.store import disable_client

    handle = open_store_or_exit(get_settings())
    with handle.sessions() as session:
        try:
            disable_client(session, client_id=client_id)
        except NotFound:
            typer.echo("no such client", err=True)
            raise typer.Exit(1) from None
        session.commit()
    typer.echo(f"disabled {client_id}")


def register(app: typer.Typer) -> None:
    app.add_typer(clients_app, name="clients")
