"""Dependencies, in one place: the store session, the keyring, the token service, the verified caller.

Dependencies that do no I/O are ``async``: FastAPI runs a plain ``def`` dependency in the thread pool,
and each such hop costs more than the work. The access token is verified in the event loop (once per
token: see :meth:`TokenService.verify`); the database check of the client is the only part that needs a
thread, and :func:`caller_in_session` lets a route do it in the same hop as its own work.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from functools import partial
from typing import Annotated, Any

from fastapi import Depends, Request
from sqlalchemy.orm import Session

from hub.api.jose import TokenService
from hub.api.problems import Forbidden, Unauthorized
from materials_store.crypto import Keyring
from materials_store.models import Client
from materials_store.runtime import StoreHandle
from materials_store.store import PendingUsage, client_status, get_client


async def get_handle(request: Request) -> StoreHandle:
    handle: StoreHandle = request.app.state.store
    return handle


HandleDep = Annotated[StoreHandle, Depends(get_handle)]


async def get_session(handle: HandleDep) -> AsyncIterator[Session]:
    """A session for the request. Opening one does no I/O; it connects on first use, in the route."""
    with handle.sessions() as session:
        yield session


async def get_keyring(handle: HandleDep) -> Keyring:
    return handle.keyring


async def get_tokens(request: Request) -> TokenService:
    tokens: TokenService = request.app.state.tokens
    return tokens


SessionDep = Annotated[Session, Depends(get_session)]
KeyringDep = Annotated[Keyring, Depends(get_keyring)]
TokensDep = Annotated[TokenService, Depends(get_tokens)]


async def get_claims(request: Request) -> dict[str, Any]:
    """The claims of the request's bearer access token, verified (401 for a missing or bad token)."""
    return bearer_claims(request)


def bearer_claims(request: Request) -> dict[str, Any]:
    """:func:`get_claims`, called directly (no I/O: a token is verified once, then its claims are kept)."""
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise Unauthorized("a bearer access token is required")
    tokens: TokenService = request.app.state.tokens
    return tokens.verify(token.strip())


ClaimsDep = Annotated[dict[str, Any], Depends(get_claims)]


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


def caller_in_session(request: Request, session: Session, claims: dict[str, Any]) -> Caller:
    """The caller of verified ``claims``, once the store says its client is still active (401 if not),
    charged against its rate limit (429).

    A client's registration never changes but its status may (``clients disable``): the row is kept
    per process, the status is read from the store on every request.
    """
    return known_caller(
        request, claims,
        load=lambda client_id: get_client(session, client_id=client_id),
        status=lambda client_id: client_status(session, client_id=client_id),
    )  # fmt: skip


def kept_client(request: Request, client_id: str) -> Client | None:
    """The client's registration if this process has loaded it (:func:`process_client`)."""
    known: dict[str, Client] = request.app.state.__dict__.get("clients", {})
    return known.get(client_id)


def process_client(
    request: Request, client_id: str, *, load: Callable[[str], Client | None]
) -> Client | None:
    """The client's registration, loaded once per process (``load``) and kept while it was active when
    loaded; None for an unknown client. Its status may change since: :func:`admitted` takes it as read."""
    known: dict[str, Client] = request.app.state.__dict__.setdefault("clients", {})
    client = known.get(client_id)
    if client is None:
        client = load(client_id)
        if client is not None and client.status == "active":
            known[client_id] = client
    return client


def load_client(handle: StoreHandle, client_id: str) -> Client | None:
    """A :func:`process_client` load through a Session of its own."""
    with handle.sessions() as session:
        return get_client(session, client_id=client_id)


def admitted(request: Request, claims: dict[str, Any], client: Client | None, status: str | None) -> Caller:
    """The caller of ``claims``, whose client's status the store has just given: 401 for an unknown or
    disabled client, 429 over its rate."""
    if client is None or status != "active":
        raise Unauthorized("the client is unknown or disabled")
    request.app.state.rate_limiter.check(client.id)
    return Caller(client, frozenset(str(claims["scope"]).split()))


def known_caller(
    request: Request,
    claims: dict[str, Any],
    *,
    load: Callable[[str], Client | None],
    status: Callable[[str], str | None],
) -> Caller:
    """The caller of ``claims``: its client row loaded once per process (``load``), its status read on
    every request (``status``; the row's own when it has just been loaded)."""
    client_id = str(claims["sub"])
    kept = kept_client(request, client_id)
    if kept is not None:
        return admitted(request, claims, kept, status(client_id))
    client = process_client(request, client_id, load=load)
    return admitted(request, claims, client, client.status if client else None)


def get_caller(request: Request, session: SessionDep, claims: ClaimsDep) -> Caller:
    """Verify the bearer token and that its client is still active."""
    return caller_in_session(request, session, claims)


CallerDep = Annotated[Caller, Depends(get_caller)]


async def durable(pending: list[PendingUsage]) -> None:
    """Wait, without holding a thread, until the usage records in ``pending`` have committed.

    Raises:
        Conflict: a record could not be appended (the chain stayed too busy).
    """
    loop = asyncio.get_running_loop()
    for item in pending:
        if not item.done.is_set():
            done: asyncio.Future[None] = loop.create_future()
            item.on_done(partial(loop.call_soon_threadsafe, _resolve, done))
            await done
        if item.error is not None:
            raise item.error


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


def check_scope(caller: Caller, scope: str) -> Caller:
    """``caller``, if its token carries ``scope`` (403 otherwise)."""
    if scope not in caller.scopes:
        raise Forbidden(f"this needs the {scope!r} scope")
    return caller


def require_scope(scope: str) -> Callable[[Caller], Awaitable[Caller]]:
    """A dependency that lets through only callers whose token carries ``scope``."""

    async def gate(caller: CallerDep) -> Caller:
        return check_scope(caller, scope)

    return gate
