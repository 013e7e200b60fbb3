"""``onecert contracts check``: CI refuses a breaking contract change unless its major version is bumped."""

from __future__ import annotations

import typer
from rich.console import Console

contracts_app = typer.Typer(help="The data contracts (ODCS v3) under contracts/.")


@contracts_app.command("check")
def check(base: str | None = typer.Option(None, "--base", help="git revision to compare with (default: main)")) -> None:
    """Run `datacontract breaking` on every contract changed since BASE; exit 1 on an unbumped break."""
    from contracts.breaking import check_against, default_base

    console = Console()
    base = base or default_base()
    if base is None:
        console.print("no earlier revision to compare the contracts with: nothing to check")
        return
    verdicts = check_against(base)
    refused = [v for v in verdicts if not v.accepted]
    for verdict in verdicts:
        if not verdict.accepted:
            mark = "[red]refused[/]"
        else:
            mark = "[yellow]breaking, major version bumped[/]" if verdict.breaking else "[green]compatible[/]"
        console.print(f"{verdict.path}: {verdict.old_version} → {verdict.new_version}: {mark}")
        if not verdict.accepted:
            console.print(verdict.detail)
    console.print(f"{len(verdicts)} contract(s) changed since {base[:12]}; {len(refused)} refused")
    if refused:
        console.print("A breaking change needs a new major version in the contract's `version`.")
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    app.add_typer(contracts_app, name="contracts")
