"""``onecert demo``: the main job on a fresh machine, on the embedded defaults.

Today it creates the keyring and the store, loads the catalogue from the contracts and shows it. The
sandbox departmental systems, the syncs, the API and Airflow join it as they land.
"""

from __future__ import annotations

import typer
from rich.console import Console
from rich.panel import Panel

from materials_store.crypto import Keyring
from materials_store.settings import get_settings


def demo() -> None:
    """Create the keyring and the store, load the material catalogue, and show where everything is."""
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
                    "  .venv/bin/onecert bench store --rows 100000        # store speed, with ratios",
                ]
            ),
            title="OneCert Hub demo",
        )
    )


def register(app: typer.Typer) -> None:
    app.command("demo")(demo)
