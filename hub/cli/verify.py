"""``onecert verify FILE``: check a saved, sealed material offline."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import typer


def verify(
    file: Path = typer.Argument(
        ..., exists=True, dir_okay=False, help="A saved GET /v1/materials/{id} answer."
    ),
    jwks: Path | None = typer.Option(
        None, "--jwks", exists=True, help="The hub's JWKS (default: local keyring)."
    ),
    signature: str | None = typer.Option(
        None, "--signature", help="A signed answer's X-Signature (detached JWS): FILE is its exact body."
    ),
) -> None:
    """Verify the hub's seal over a material: the signature, and that the material matches what was sealed.
    With ``--signature``: verify a signed answer (a lookup) saved byte for byte in FILE."""
    from hub.api.jose import jwks_public_keys, verify_seal
    from materials_store.crypto import load_keyring
    from materials_store.settings import get_settings
    from materials_store.store import canonical_json

    if jwks is not None:
        keys = jwks_public_keys(json.loads(jwks.read_text(encoding="utf-8")))
    else:
        published = load_keyring(get_settings()).published_signing_keys()
        keys = jwks_public_keys({"keys": [key.public_jwk() for key in published]})
    if signature is not None:
        _verify_detached(file.read_bytes(), signature.strip(), keys)
        return
    saved = json.loads(file.read_text(encoding="utf-8"))
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


def _verify_detached(body: bytes, signature: str, keys: dict[str, Any]) -> None:
    from hub.api.jose import verify_seal

    protected, middle, signed = (signature.split(".") + ["", ""])[:3]
    if middle:
        typer.echo("INVALID: the signature is not a detached JWS (protected..signature)", err=True)
        raise typer.Exit(1)
    payload = base64.urlsafe_b64encode(body).rstrip(b"=").decode("ascii")
    try:
        verify_seal(f"{protected}.{payload}.{signed}", keys)
    except ValueError as error:
        typer.echo(f"INVALID: {error}".replace("seal", "signature"), err=True)
        raise typer.Exit(1) from None
    answer = json.loads(body)
    readiness = answer.get("readiness") or {}
    decision = readiness.get("summary", {}).get("decision")
    typer.echo(
        f"valid signature: answer for case {answer.get('case_ref')}" + (f", {decision}" if decision else "")
    )


def register(app: typer.Typer) -> None:
    app.command("verify")(verify)
