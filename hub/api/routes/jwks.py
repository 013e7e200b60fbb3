"""The hub's public signing keys (current and previous), for verifying its tokens, responses and seals."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Response

from hub.api.deps import KeyringDep

router = APIRouter(tags=["keys"])


@router.get("/.well-known/jwks.json")
def jwks(keyring: KeyringDep, response: Response) -> dict[str, Any]:
    response.headers["Cache-Control"] = "public, max-age=300"
    return {"keys": [key.public_jwk() for key in keyring.published_signing_keys()]}
