"""``POST /v1/oauth/token``: client credentials by signed assertion (RFC 7523), no shared passwords."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form
from pydantic import BaseModel

from hub.api.deps import SessionDep, TokensDep
from hub.api.jose import ASSERTION_TYPE
from hub.api.problems import InvalidClient
from materials_store.errors import DataError
from materials_store.store import record_usage

router = APIRouter(prefix="/v1/oauth", tags=["oauth"])


class TokenResponse(BaseModel):
    access_token: str
    token_type: str = "Bearer"  # noqa: S105 - the OAuth token type, not a secret
    expires_in: int


@router.post("/token")
def token(
    session: SessionDep,
    tokens: TokensDep,
    grant_type: Annotated[str, Form()],
    client_assertion_type: Annotated[str, Form()],
    client_assertion: Annotated[str, Form(max_length=8192)],
) -> TokenResponse:
    """Exchange a signed client assertion for a short-lived access token."""
    if grant_type != "client_credentials":
        raise DataError("grant_type must be client_credentials", error="unsupported_grant_type")
    if client_assertion_type != ASSERTION_TYPE:
        raise InvalidClient(f"client_assertion_type must be {ASSERTION_TYPE}", error="invalid_client")
    client = tokens.authenticate_client(session, client_assertion)
    issued = tokens.issue(client)
    record_usage(session, client_id=client.id, client_kind=client.kind, action="token", outcome="issued")
    session.commit()
    return TokenResponse(access_token=issued.token, expires_in=issued.expires_in)
