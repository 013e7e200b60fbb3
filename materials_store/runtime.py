"""Opening the store for a process: keys first (refusing to start without real ones), then the database."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from materials_store.crypto import Keyring, load_keyring
from materials_store.db import make_engine, session_factory, upgrade
from materials_store.settings import Settings


@dataclass(frozen=True, slots=True)
class StoreHandle:
    settings: Settings
    engine: Engine
    sessions: sessionmaker[Session]
    keyring: Keyring


def open_store(settings: Settings, *, migrate: bool = True) -> StoreHandle:
    """Load the keyring, connect, and (by default) migrate to the newest schema.

    Raises:
        ConfigurationError: no keyring or placeholder keys outside dev mode.
    """
    keyring = load_keyring(settings)
    engine = make_engine(settings)
    if migrate:
        upgrade(engine)
    return StoreHandle(settings, engine, session_factory(engine), keyring)
