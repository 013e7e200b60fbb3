"""``onecert demo``: the main job on a fresh machine, on the embedded defaults.

It creates the keyring and the store, loads the catalogue from the contracts, starts the sandbox
departmental systems, syncs every source (valid rows into the store, broken ones into quarantine) and
shows what each source did. The API and Airflow join it as they land.
"""

from __future__ import annotations

import typer
from rich.console import Console
from rich.panel import Panel

from materials_store.crypto import Keyring
from materials_store.settings import get_settings


def demo(
    size: int = typer.Option(2000, "--size", min=10, help="Persons in the sandbox population."),
    sandbox: bool = typer.Option(True, "--sandbox/--no-sandbox", help="Start the sandbox and sync it."),
) -> None:
    """Create the keyring and store, load the catalogue, start the sandbox and sync every source."""
    from hub.cli._common import open_store_or_exit, sync_catalogue
    from hub.cli.catalogue import catalogue
    from materials_store.store import count_quarantine, material_types

    console = Console()
    settings = get_settings()
    keyring_file = settings.resolved_keyring_file
    if settings.keyring_json is None and not keyring_file.exists():
        Keyring.generate().save(keyring_file)
        console.print(f"[green]created[/] keyring {keyring_file} (mode 0600; generated on this machine)")
    handle = open_store_or_exit(settings)
    count = sync_catalogue(handle)
    url = handle.engine.url.render_as_string(hide_password=True)
    console.print(f"[green]store ready[/] {url} · {count} material types from {count} data contracts")
    catalogue(as_json=False)
    if sandbox:
        from connectors.sandbox.control import up
        from hub.cli.sync import sources, sync

        up(settings.home, size=size)
        console.print(f"[green]sandbox up[/] {size:,} persons: police, tax, health (REST); market, civil, "
                      "natres (SQL); hrss, medins (file drops)")  # fmt: skip
        try:
            sync(sources=[])
        except typer.Exit as stop:
            if stop.exit_code:
                console.print("[yellow]some sources failed; see above[/]")
        sources(as_json=False)
    with handle.sessions() as session:
        types = len(material_types(session))
        quarantined = count_quarantine(session)
    console.print(
        Panel.fit(
            "\n".join(
                [
                    f"Store: {url}",
                    f"Keyring: {keyring_file}",
                    f"Material types in the store: {types}; rows in quarantine: {quarantined}",
                    "",
                    "Try:",
                    "  .venv/bin/onecert id check ' 11010519491231002x'   # normalise an ID as typed",
                    "  .venv/bin/onecert catalogue --json                 # the catalogue for machines",
                    "  .venv/bin/onecert sources --json                   # what each source last did",
                    "  .venv/bin/onecert sandbox advance && .venv/bin/onecert sync   # incremental sync",
                    "  .venv/bin/onecert sandbox fault police error500 --times 3      # watch it retry",
                    "  .venv/bin/onecert sandbox down                     # stop the departmental systems",
                    "  .venv/bin/onecert bench store --rows 100000        # store speed, with ratios",
                ]
            ),
            title="OneCert Hub demo",
        )
    )


def register(app: typer.Typer) -> None:
    app.command("demo")(demo)
