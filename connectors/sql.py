"""SQL transport: keyset reads ``cursor >= last`` with a primary-key tie-break, so rows sharing one
``updated_at`` across a page boundary are neither skipped nor read twice. Resume state: ``updated_at|pk``."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, ClassVar

from sqlalchemy import create_engine, text
from sqlalchemy.exc import OperationalError

from connectors.base import DEFAULT_STREAM, Connector, Page, tie_complete
from materials_store.errors import FatalError, RetriableError


class SqlConnector(Connector):
    """A SQL source: declare ``table`` and ``table_key`` (the table's own primary key)."""

    table: ClassVar[str]
    table_key: ClassVar[str] = "row_id"

    def __init__(self, config: Any) -> None:
        super().__init__(config)
        if not config.database_url:
            raise FatalError(f"source {self.name} has no database URL configured")
        url = config.database_url
        if url.startswith("sqlite:///"):
            url = f"sqlite:///file:{url.removeprefix('sqlite:///')}?mode=ro&uri=true"
        self.engine = create_engine(url)

    def _read(self, after: tuple[str, int] | None) -> Iterator[list[dict[str, Any]]]:
        size = self.config.page_size
        cursor, key = self.cursor_field, self.table_key
        base = f"SELECT * FROM {self.table}"  # noqa: S608 - class attributes, not input
        while True:
            if after is None:
                sql = f"{base} ORDER BY {cursor}, {key} LIMIT :size"
                params: dict[str, Any] = {"size": size}
            else:
                sql = (
                    f"{base} WHERE {cursor} >= :last AND ({cursor} > :last OR {key} > :key) "
                    f"ORDER BY {cursor}, {key} LIMIT :size"
                )
                params = {"last": after[0], "key": after[1], "size": size}
            try:
                with self.engine.connect() as connection:
                    rows = [dict(row._mapping) for row in connection.execute(text(sql), params)]
            except OperationalError as error:
                raise RetriableError(
                    f"{self.name}: database unavailable ({type(error.orig).__name__})"
                ) from None
            if not rows:
                return
            after = (rows[-1][cursor], rows[-1][key])
            yield rows
            if len(rows) < size:
                return

    def pages(self, state: dict[str, str]) -> Iterator[Page]:
        saved = state.get(DEFAULT_STREAM)
        after = None
        if saved:
            last, _, key = saved.rpartition("|")
            after = (last, int(key))
        for rows in tie_complete(self._read(after), self.cursor_field):
            tail = rows[-1]
            commits = [(DEFAULT_STREAM, f"{tail[self.cursor_field]}|{tail[self.table_key]}")]
            yield Page(rows=[self.map_row(row) for row in rows], commits=commits)

    def map_row(self, row: dict[str, Any]) -> dict[str, Any]:
        mapped = super().map_row(row)
        mapped.pop(self.table_key, None)
        return mapped
