"""``onecert sandbox``: the departmental systems the hub pulls from, run on this machine."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from materials_store.errors import ConfigurationError
from materials_store.settings import get_settings

sandbox_app = typer.Typer(help="Sandbox departmental systems (police, tax, health REST; SQL; file drops).")


def _home() -> Path:
    home = get_settings().home
    home.mkdir(parents=True, exist_ok=True)
    return home


@sandbox_app.command("up")
def up_command(
    size: int = typer.Option(2000, "--size", min=10, help="Persons in the synthetic population."),
    seed: int = typer.Option(42, "--seed", help="Same seed, same data."),
    defect_rate: float = typer.Option(0.02, "--defect-rate", min=0.0, max=0.5, help="Seeded defect share."),
    regenerate: bool = typer.Option(False, "--regenerate", help="Generate the data again."),
) -> None:
    """Generate the data (unless it exists for this size and seed) and start the REST systems."""
    from connectors.sandbox.control import status, up

    state = up(_home(), size=size, seed=seed, defect_rate=defect_rate, regenerate=regenerate)
    table = Table(title=f"sandbox up · {state['size']:,} persons · seed {state['seed']}")
    table.add_column("system")
    table.add_column("where")
    for system, where in status(_home()).items():
        table.add_row(system, where)
    Console().print(table)


@sandbox_app.command("down")
def down_command() -> None:
    """Stop every sandbox process (the data stays)."""
    from connectors.sandbox.control import down

    down(_home())
    typer.echo("sandbox stopped")


@sandbox_app.command("status")
def status_command() -> None:
    """Where each system is and whether it is up."""
    from connectors.sandbox.control import status

    try:
        for system, where in status(_home()).items():
            typer.echo(f"{system}\t{where}")
    except ConfigurationError as error:
        typer.echo(error.detail, err=True)
        raise typer.Exit(1) from None


@sandbox_app.command("advance")
def advance_command(
    updates: int = typer.Option(10, "--updates", min=0, help="Records to change per source."),
    new: int = typer.Option(10, "--new", min=0, help="Records to add per source."),
) -> None:
    """Change and add records, so an incremental sync has work."""
    from connectors.sandbox.control import advance

    for source, count in advance(_home(), updates=updates, new=new).items():
        typer.echo(f"{source}\t{count} rows changed or added")


@sandbox_app.command("fault")
def fault_command(
    system: str = typer.Argument(..., help="police, tax, health, market, civil, natres, hrss or medins"),
    mode: str = typer.Argument(..., help="error500, timeout, drop, rate_limit, down or none"),
    times: int | None = typer.Option(None, "--times", min=1, help="Only the next N requests."),
    delay: float = typer.Option(30.0, "--delay", help="Seconds a `timeout` waits before answering."),
) -> None:
    """Make a system fail on purpose, to see the hub retry, fail safely and resume."""
    from connectors.sandbox.control import fault

    modes = ("error500", "timeout", "drop", "rate_limit", "down", "none")
    if mode not in modes:
        typer.echo(f"mode must be one of {', '.join(modes)}", err=True)
        raise typer.Exit(2)
    try:
        fault(_home(), system, mode, times=times, delay=delay)
    except ConfigurationError as error:
        typer.echo(error.detail, err=True)
        raise typer.Exit(1) from None
    typer.echo(f"{system}: {mode}")


@sandbox_app.command("family")
def family_command(
    field: str | None = typer.Option(None, "--field", help="Print only this field (e.g. mother_id)."),
) -> None:
    """A sandbox family with a newborn and clean records (and a valid ID card), for
    walking through 新生儿出生一件事. The data is synthetic; real IDs are never printed by the hub."""
    import json

    from connectors.sandbox.control import families

    found = families(_home(), limit=1)
    if not found:
        typer.echo("no sandbox family with a newborn: run `onecert sandbox up`", err=True)
        raise typer.Exit(1)
    if field is not None:
        if field not in found[0]:
            typer.echo(f"no field {field!r} (fields: {', '.join(found[0])})", err=True)
            raise typer.Exit(2)
        typer.echo(found[0][field])
        return
    typer.echo(json.dumps(found[0], ensure_ascii=False, indent=1))


def register(app: typer.Typer) -> None:
    app.add_typer(sandbox_app, name="sandbox")
