"""File-drop transport: CSV in the encoding the contract declares, and XLSX. Each file is processed once,
known by the SHA-256 of its content (saved as stream ``file:<sha>`` with the rows it held), then moved to
the ``archive`` folder beside the inbox."""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from connectors.base import Connector, Page
from contracts import load_contract
from materials_store.errors import DataError, RetriableError

ROWS_PER_PAGE = 50_000


def _digest(path: Path) -> str:
    sha = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            sha.update(block)
    return sha.hexdigest()


def _cell(value: Any) -> Any:
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    return value


class FileDropConnector(Connector):
    """Reads every new file in the source's inbox."""

    def inbox(self) -> Path:
        if self.config.inbox is None or not self.config.inbox.is_dir():
            raise RetriableError(f"{self.name}: the drop folder is unavailable", source=self.name)
        return Path(self.config.inbox)

    def _rows(self, path: Path) -> Iterator[list[dict[str, Any]]]:
        if path.suffix == ".xlsx":
            from openpyxl import load_workbook  # only a drop with an XLSX file needs it

            workbook = load_workbook(path, read_only=True, data_only=True)
            try:
                sheet = workbook.worksheets[0]
                values = sheet.iter_rows(values_only=True)
                header = [str(h) for h in next(values)]
                batch: list[dict[str, Any]] = []
                for row in values:
                    batch.append(self.map_row(dict(zip(header, (_cell(v) for v in row), strict=False))))
                    if len(batch) >= ROWS_PER_PAGE:
                        yield batch
                        batch = []
                yield batch
            finally:
                workbook.close()
            return
        encoding = load_contract(self.name).encoding
        try:
            with path.open(encoding=encoding, newline="") as handle:
                reader = csv.DictReader(handle)
                batch = []
                for row in reader:
                    batch.append(self.map_row({k: (v if v != "" else None) for k, v in row.items()}))
                    if len(batch) >= ROWS_PER_PAGE:
                        yield batch
                        batch = []
                yield batch
        except UnicodeDecodeError:
            raise DataError(
                f"{self.name}: {path.name} is not in the declared encoding {encoding}", source=self.name
            ) from None

    def finalise(self, commits: list[tuple[str, str]]) -> None:
        """Archive the files a staged run committed (a later read would archive them anyway)."""
        inbox = self.inbox()
        archive = inbox.parent / "archive"
        for stream, name in commits:
            path = inbox / name
            if stream.startswith("file:") and path.is_file() and _digest(path) == stream[len("file:") :]:
                archive.mkdir(exist_ok=True)
                shutil.move(str(path), archive / path.name)

    def pages(self, state: dict[str, str]) -> Iterator[Page]:
        inbox = self.inbox()
        archive = inbox.parent / "archive"
        for path in sorted(p for p in inbox.iterdir() if p.suffix in (".csv", ".xlsx")):
            digest = _digest(path)
            stream = f"file:{digest}"

            def archive_file(path: Path = path) -> None:
                archive.mkdir(exist_ok=True)
                shutil.move(str(path), archive / path.name)

            if stream in state:  # seen before (e.g. the archive step was interrupted): just archive it
                archive_file()
                continue
            # A file larger than one page commits in several batches; only its last page marks it done,
            # so a crash mid-file rereads it, and the rows already committed come back unchanged.
            pending: list[dict[str, Any]] | None = None
            for rows in self._rows(path):
                if pending is not None:
                    yield Page(rows=pending)
                pending = rows
            yield Page(rows=pending or [], commits=[(stream, path.name)], after_commit=[archive_file])
