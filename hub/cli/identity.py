"""``onecert id check``: validate and normalise an ID number or credit code."""

from __future__ import annotations

import typer

from materials_store.identity import InvalidIdentifier, parse_identifier

id_app = typer.Typer(help="Citizen ID numbers (GB 11643) and unified social credit codes (GB 32100).")


@id_app.command("check")
def check(
    value: str = typer.Argument(..., help="An ID number or credit code, as typed at a window."),
) -> None:
    """Print the normalised identifier and its kind, or why it is invalid (exit 1)."""
    try:
        identifier = parse_identifier(value)
    except InvalidIdentifier as error:
        typer.echo(f"invalid ({error.reason.value}): {error.detail}", err=True)
        raise typer.Exit(1) from None
    typer.echo(f"{identifier.value}\t{identifier.kind.value}")


def register(app: typer.Typer) -> None:
    app.add_typer(id_app, name="id")
