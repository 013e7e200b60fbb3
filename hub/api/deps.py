"""Dependencies, in one place: the store session, the keyring, the token service, the verified caller."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.orm import Session

from hub.api.jose import TokenService
from hub.api.problems import Forbidden, Unauthorized
from materials_store.crypto import Keyring
from materials_store.models import Client
from materials_store.runtime import StoreHandle
from materials_store.store import get_client


def get_handle(request: Request) -> StoreHandle:
    handle: StoreHandle = request.app.state.store
    return handle


def get_session(handle: Annotated[StoreHandle, Depends(get_handle)]) -> Iterator[Session]:
    with handle.sessions() as session:
        yield session


def get_keyring(handle: Annotated[StoreHandle, Depends(get_handle)]) -> Keyring:
    return handle.keyring


def get_tokens(request: Request) -> TokenService:
    tokens: TokenService = request.app.state.tokens
    return tokens


SessionDep = Annotated[Session, Depends(get_session)]
KeyringDep = Annotated[Keyring, Depends(get_keyring)]
TokensDep = Annotated[TokenService, Depends(get_tokens)]


@dataclass(frozen=True)
class Caller:
    """The client behind a verified access token."""

    client: Client
    scopes: frozenset[str]

    @property
    def id(self) -> str:
        return self.client.id

    @property
    def kind(self) -> str:
        return self.client.kind


def get_caller(request: Request, session: SessionDep, tokens: TokensDep) -> Caller:
    """Verify the bearer token and that its client is still active."""
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise Unauthorized("a bearer access token is required")
    claims = tokens.verify(token.strip())
    client = get_client(session, client_id=str(claims["sub"]))
    if client is None or client.status != "active":
        raise Unauthorized("the client is unknown or disabled")
    request.app.state.rate_limiter.check(client.id)
    return Caller(client, frozenset(str(claims["scope"]).split()))


CallerDep = Annotated[Caller, Depends(get_caller)]


def require_scope(scope: str) -> Callable[[Caller], Caller]:
    """A dependency that lets through only callers whose token carries ``scope``."""

    def gate(caller: CallerDep) -> Caller:
        if scope not in caller.scopes:
            raise Forbidden(f"this needs the {scope!r} scope")
        return caller

    return gate
