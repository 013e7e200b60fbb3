"""``onecert db upgrade``: create or migrate the store."""

from __future__ import annotations

import typer

from materials_store.settings import get_settings

db_app = typer.Typer(help="The materials store's database.")


@db_app.command("upgrade")
def upgrade_command() -> None:
    """Create the store or migrate it to the newest schema, and load the catalogue from the contracts."""
    from hub.cli._common import open_store_or_exit, sync_catalogue

    handle = open_store_or_exit(get_settings())
    count = sync_catalogue(handle)
    typer.echo(f"store ready at {handle.engine.url.render_as_string(hide_password=True)}; {count} types")


def register(app: typer.Typer) -> None:
    app.add_typer(db_app, name="db")
