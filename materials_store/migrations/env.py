"""Alembic environment: the engine comes from ``materials_store.db.upgrade`` (config.attributes)."""

from __future__ import annotations

from alembic import context
from sqlalchemy import Engine

from materials_store import schema

config = context.config
target_metadata = schema.metadata


def run_migrations_online() -> None:
    engine: Engine | None = config.attributes.get("engine")
    if engine is None:
        from materials_store.db import make_engine
        from materials_store.settings import get_settings

        engine = make_engine(get_settings())
    with engine.begin() as connection:
        context.configure(
            connection=connection,
            target_metadata=target_metadata,
            render_as_batch=connection.dialect.name == "sqlite",
        )
        context.run_migrations()


run_migrations_online()
