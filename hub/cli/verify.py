"""``onecert verify FILE``: check a saved, sealed material offline."""

from __future__ import annotations

import json
from pathlib import Path

import typer


def verify(
    file: Path = typer.Argument(
        ..., exists=True, dir_okay=False, help="A saved GET /v1/materials/{id} answer."
    ),
    jwks: Path | None = typer.Option(
        None, "--jwks", exists=True, help="The hub's JWKS (default: local keyring)."
    ),
) -> None:
    """Verify the hub's seal over a material: the signature, and that the material matches what was sealed."""
    from hub.api.jose import jwks_public_keys, verify_seal
    from materials_store.crypto import load_keyring
    from materials_store.settings import get_settings
    from materials_store.store import canonical_json

    saved = json.loads(file.read_text(encoding="utf-8"))
    if jwks is not None:
        keys = jwks_public_keys(json.loads(jwks.read_text(encoding="utf-8")))
    else:
        published = load_keyring(get_settings()).published_signing_keys()
        keys = jwks_public_keys({"keys": [key.public_jwk() for key in published]})
    try:
        sealed = verify_seal(str(saved["seal"]), keys)
    except (KeyError, ValueError) as error:
        typer.echo(f"INVALID: {error}", err=True)
        raise typer.Exit(1) from None
    if sealed != canonical_json(saved.get("material")):
        typer.echo("INVALID: the material differs from what the hub sealed", err=True)
        raise typer.Exit(1)
    material = saved["material"]
    typer.echo(f"valid seal: {material['type']} {material['id']} issued by {material['issuer']}")


def register(app: typer.Typer) -> None:
    app.command("verify")(verify)
