"""Alembic environment: the engine comes from ``materials_store.db.upgrade`` (config.attributes)."""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection, Engine

from materials_store import schema

config = context.config
target_metadata = schema.metadata


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
    )
    with connection.begin():
        context.run_migrations()
        if connection.dialect.name == "sqlite":
            broken = connection.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
            if broken:  # the transaction rolls back: the store stays as it was
                raise RuntimeError(f"the migration left {len(broken)} rows whose foreign keys point nowhere")


def run_migrations_online() -> None:
    engine: Engine | None = config.attributes.get("engine")
    if engine is None:
        from materials_store.db import make_engine
        from materials_store.settings import get_settings

        engine = make_engine(get_settings())
    with engine.connect() as connection:
        if connection.dialect.name != "sqlite":
            _run(connection)
            return
        # SQLite rebuilds a table to change a column (a batch migration), and dropping the old table of a
        # store whose foreign keys are enforced would delete its children's parents first. So they are off
        # while the migrations run (the pragma takes effect outside a transaction only), and every foreign
        # key is checked before the migrations commit.
        connection.exec_driver_sql("PRAGMA foreign_keys=OFF")
        connection.commit()
        try:
            _run(connection)
        finally:
            connection.exec_driver_sql("PRAGMA foreign_keys=ON")
            connection.commit()


run_migrations_online()
