"""``onecert caller``: what a window or department needs to call the hub from a shell — a key pair, an
access token from a signed assertion, and a signed push body. (The hub keeps only public keys.)"""

from __future__ import annotations

import json
import os
import time
import uuid
from pathlib import Path

import typer

caller_app = typer.Typer(
    help="Tools for windows and departments calling the hub: keys, tokens, signed pushes."
)


def _private_key(path: Path):  # type: ignore[no-untyped-def]
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    key = load_pem_private_key(path.read_bytes(), None)
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return key, "EdDSA"
    if isinstance(key, ec.EllipticCurvePrivateKey) and isinstance(key.curve, ec.SECP256R1):
        return key, "ES256"
    typer.echo("the key must be Ed25519 or P-256", err=True)
    raise typer.Exit(1)


@caller_app.command("keygen")
def keygen(
    out: Path = typer.Option(..., "--out", help="Folder for private.pem (0600) and public.pem."),
    curve: str = typer.Option("ed25519", "--curve", help="ed25519 or p256"),
) -> None:
    """Generate a client key pair on this machine; register public.pem with `onecert clients add`."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519

    key = (
        ed25519.Ed25519PrivateKey.generate()
        if curve == "ed25519"
        else ec.generate_private_key(ec.SECP256R1())
    )
    out.mkdir(parents=True, exist_ok=True, mode=0o700)
    private = out / "private.pem"
    fd = os.open(private, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))  # fmt: skip
    public = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    (out / "public.pem").write_bytes(public)
    typer.echo(str(out / "public.pem"))


@caller_app.command("token")
def token(
    client_id: str = typer.Option(..., "--client-id"),
    key: Path = typer.Option(..., "--key", exists=True, dir_okay=False, help="The client's private.pem"),
    hub: str = typer.Option("http://127.0.0.1:8000", "--hub", help="The hub's base URL"),
) -> None:
    """Get an access token with a signed client assertion (RFC 7523); prints the token alone."""
    import httpx
    import jwt

    private, algorithm = _private_key(key)
    now = int(time.time())
    endpoint = f"{hub.rstrip('/')}/v1/oauth/token"
    assertion = jwt.encode(
        {"iss": client_id, "sub": client_id, "aud": endpoint, "iat": now, "exp": now + 120, "jti": uuid.uuid4().hex},
        private, algorithm=algorithm,
    )  # fmt: skip
    response = httpx.post(endpoint, data={
        "grant_type": "client_credentials",
        "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
        "client_assertion": assertion,
    }, timeout=10)  # fmt: skip
    if response.status_code != 200:
        typer.echo(
            f"refused ({response.status_code}): {response.json().get('detail', response.text)}", err=True
        )
        raise typer.Exit(1)
    typer.echo(response.json()["access_token"])


@caller_app.command("sign")
def sign(
    file: Path = typer.Argument(..., exists=True, dir_okay=False, help="The JSON material to push"),
    key: Path = typer.Option(..., "--key", exists=True, dir_okay=False, help="The department's private.pem"),
) -> None:
    """Sign a push body: prints the compact JWS to send as application/jose."""
    import jwt

    private, algorithm = _private_key(key)
    payload = json.dumps(json.loads(file.read_text(encoding="utf-8")), ensure_ascii=False).encode("utf-8")
    typer.echo(jwt.api_jws.PyJWS().encode(payload, private, algorithm=algorithm))


def register(app: typer.Typer) -> None:
    app.add_typer(caller_app, name="caller")
