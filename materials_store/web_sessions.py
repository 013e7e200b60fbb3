"""Browser sign-in without passwords: an administrator issues a one-time link for a registered client
(a window, a steward, a citizen) and a named person; opening it starts a session. The hub keeps only
SHA-256 hashes of links and session ids; the browser holds the session id in an HttpOnly cookie.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
from dataclasses import dataclass

from sqlalchemy.orm import Session

from materials_store.errors import DataError, NotFound
from materials_store.models import Client, WebSession, utcnow

LINK_MINUTES = 15
SESSION_HOURS = 10


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode("ascii", "replace")).hexdigest()


def issue_link(session: Session, *, client_id: str, person: str, minutes: int = LINK_MINUTES) -> str:
    """A one-time sign-in token for ``person`` acting as the client (shown once; only its hash is kept).

    Raises:
        NotFound: no such client. DataError: the client is disabled.
    """
    client = session.get(Client, client_id)
    if client is None:
        raise NotFound("no such client", client_id=client_id)
    if client.status != "active":
        raise DataError("the client is disabled")
    token = secrets.token_urlsafe(32)
    session.add(
        WebSession(
            token_sha256=_digest(token), kind="link", client_id=client_id, person=person[:128],
            csrf=secrets.token_urlsafe(24), expires_at=utcnow() + dt.timedelta(minutes=minutes),
        )  # fmt: skip
    )
    return token


@dataclass(frozen=True)
class SignedIn:
    """A live browser session: who, acting as which client, and the form token its posts must carry."""

    client: Client
    person: str
    csrf: str


def redeem_link(session: Session, *, token: str) -> tuple[str, SignedIn]:
    """Exchange a one-time link for a new session id. A link works once, before it expires.

    Raises:
        NotFound: unknown, used or expired link (one message for all three).
    """
    link = session.get(WebSession, _digest(token), with_for_update=True)
    now = utcnow()
    if link is None or link.kind != "link" or link.used_at is not None or link.expires_at < now:
        raise NotFound("this sign-in link is not valid (used, expired or unknown); ask for a new one")
    link.used_at = now
    session_id = secrets.token_urlsafe(32)
    row = WebSession(
        token_sha256=_digest(session_id), kind="session", client_id=link.client_id, person=link.person,
        csrf=secrets.token_urlsafe(24), expires_at=now + dt.timedelta(hours=SESSION_HOURS),
    )  # fmt: skip
    session.add(row)
    client = session.get(Client, link.client_id)
    assert client is not None
    return session_id, SignedIn(client, row.person, row.csrf)


def current(session: Session, *, session_id: str | None) -> SignedIn | None:
    """The signed-in client for a session cookie, or None (expired, signed out, client disabled)."""
    if not session_id:
        return None
    row = session.get(WebSession, _digest(session_id))
    if row is None or row.kind != "session" or row.used_at is not None or row.expires_at < utcnow():
        return None
    client = session.get(Client, row.client_id)
    if client is None or client.status != "active":
        return None
    return SignedIn(client, row.person, row.csrf)


def end(session: Session, *, session_id: str | None) -> None:
    """Sign out: the session id stops working at once."""
    if session_id:
        row = session.get(WebSession, _digest(session_id))
        if row is not None:
            row.used_at = utcnow()
