"""Opening the store for a process: keys first (refusing to start without real ones), then the database."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

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

    @property
    def embedded(self) -> bool:
        """True for the embedded SQLite store (no network between the hub and its data)."""
        return self.engine.dialect.name == "sqlite"


def open_store(settings: Settings, *, migrate: bool = True, **engine_options: Any) -> StoreHandle:
    """Load the keyring, connect, and (by default) migrate to the newest schema.

    Args:
        engine_options: passed to ``create_engine`` (the API sizes its connection pool this way).

    Raises:
        ConfigurationError: no keyring or placeholder keys outside dev mode.
    """
    keyring = load_keyring(settings)
    engine = make_engine(settings, **engine_options)
    if migrate:
        upgrade(engine)
    return StoreHandle(settings, engine, session_factory(engine), keyring)
