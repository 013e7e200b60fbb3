"""Helpers shared by CLI commands: open the store or exit with a clear message."""

from __future__ import annotations

import typer

from materials_store.errors import ConfigurationError
from materials_store.runtime import StoreHandle, open_store
from materials_store.settings import Settings


def open_store_or_exit(settings: Settings, *, migrate: bool = True) -> StoreHandle:
    try:
        return open_store(settings, migrate=migrate)
    except ConfigurationError as error:
        typer.echo(f"configuration error: {error.detail}", err=True)
        raise typer.Exit(2) from None


def sync_catalogue(handle: StoreHandle) -> int:
    """Load the material-type catalogue from the contracts into the store. Returns the number of types."""
    from contracts import load_catalogue
    from materials_store.store import sync_material_types

    specs = load_catalogue()
    with handle.sessions() as session:
        sync_material_types(session, specs=specs)
        session.commit()
    return len(specs)
