"""``onecert keys``: create and rotate the keyring (data keys, blind-index key, signing keys)."""

from __future__ import annotations

import typer

from materials_store.crypto import Keyring, load_keyring
from materials_store.errors import ConfigurationError
from materials_store.settings import Settings, get_settings

keys_app = typer.Typer(help="The hub's keyring: data encryption keys and response-signing keys.")


@keys_app.command("init")
def init() -> None:
    """Generate a new keyring file (mode 0600) unless one exists."""
    settings = get_settings()
    _refuse_environment_keyring(settings)
    path = settings.resolved_keyring_file
    try:
        Keyring.generate().save(path, overwrite=False)
    except FileExistsError:
        typer.echo(f"keyring already exists at {path}", err=True)
        raise typer.Exit(1) from None
    typer.echo(f"created {path}")


@keys_app.command("rotate")
def rotate(
    signing: bool = typer.Option(False, "--signing", help="Rotate the response-signing key instead."),
) -> None:
    """Make a new key current. Old rows stay readable; `onecert keys reencrypt` moves them over."""
    settings = get_settings()
    _refuse_environment_keyring(settings)
    try:
        keyring = load_keyring(settings)
    except ConfigurationError as error:
        typer.echo(f"configuration error: {error.detail}", err=True)
        raise typer.Exit(2) from None
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


def _refuse_environment_keyring(settings: Settings) -> None:
    # A file written here would be ignored: ONECERT_KEYRING_JSON takes precedence.
    if settings.keyring_json is not None:
        typer.echo("the keyring comes from ONECERT_KEYRING_JSON; manage it where it is set", err=True)
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    app.add_typer(keys_app, name="keys")
