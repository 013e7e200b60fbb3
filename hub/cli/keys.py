"""``onecert keys``: create and rotate the keyring (data keys, blind-index key, signing keys)."""

from __future__ import annotations

import typer

from materials_store.crypto import Keyring, load_keyring
from materials_store.settings import get_settings

keys_app = typer.Typer(help="The hub's keyring: data encryption keys and response-signing keys.")


@keys_app.command("init")
def init() -> None:
    """Generate a new keyring file (mode 0600) unless one exists."""
    settings = get_settings()
    path = settings.resolved_keyring_file
    if path.exists():
        typer.echo(f"keyring already exists at {path}", err=True)
        raise typer.Exit(1)
    Keyring.generate().save(path)
    typer.echo(f"created {path}")


@keys_app.command("rotate")
def rotate(
    signing: bool = typer.Option(False, "--signing", help="Rotate the response-signing key instead."),
) -> None:
    """Make a new key current. Old rows stay readable; `onecert keys reencrypt` moves them over."""
    settings = get_settings()
    if settings.keyring_json is not None:
        typer.echo("the keyring comes from ONECERT_KEYRING_JSON; rotate it where it is managed", err=True)
        raise typer.Exit(1)
    keyring = load_keyring(settings)
    new_id = keyring.rotate_signing_key() if signing else keyring.rotate_data_key()
    keyring.save(settings.resolved_keyring_file)
    typer.echo(new_id)


@keys_app.command("reencrypt")
def reencrypt_command() -> None:
    """Move every row encrypted with an older data key to the current one."""
    from hub.cli._common import open_store_or_exit
    from materials_store.store import reencrypt

    handle = open_store_or_exit(get_settings())
    with handle.sessions() as session:
        moved = reencrypt(session, keyring=handle.keyring)
    typer.echo(f"re-encrypted {moved} rows with key {handle.keyring.current_data_key_id}")


def register(app: typer.Typer) -> None:
    app.add_typer(keys_app, name="keys")
