"""``onecert bench store``: batch upsert throughput against raw executemany, and lookup latency."""

from __future__ import annotations

import itertools
import random
import resource
import shutil
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table
from sqlalchemy import Engine, MetaData
from sqlalchemy import Table as SqlTable

from contracts import load_catalogue
from hub.bench.synthetic import materials, person_id
from materials_store.crypto import Keyring
from materials_store.db import engine_for_url, session_factory, upgrade
from materials_store.models import MATERIALS, SUBJECTS
from materials_store.store import DriverValues, latest_materials, sync_material_types, upsert_materials


@dataclass(frozen=True)
class StoreBenchResult:
    rows: int
    upsert_seconds: float
    raw_seconds: float
    lookup_p50_ms: float
    lookup_p99_ms: float
    peak_rss_mib: float

    @property
    def upsert_rows_per_second(self) -> float:
        return self.rows / self.upsert_seconds

    @property
    def raw_rows_per_second(self) -> float:
        return self.rows / self.raw_seconds

    @property
    def ratio(self) -> float:
        return self.raw_seconds / self.upsert_seconds


def _raw_tables(engine: Engine) -> tuple[SqlTable, SqlTable]:
    """Copies of the subjects and materials tables (same columns, same indexes) for the baseline."""
    metadata = MetaData()
    subjects = SUBJECTS.to_metadata(metadata, name="bench_raw_subjects")
    raw = MATERIALS.to_metadata(metadata, name="bench_raw_materials")
    for table in (subjects, raw):
        for index in list(table.indexes):
            index.name = f"bench_{index.name}"  # type: ignore[assignment]  # a plain name is fine here
        for constraint in list(table.constraints):
            if constraint.name and not str(constraint.name).startswith("bench_"):
                constraint.name = f"bench_{constraint.name}"
        table.foreign_keys.clear()
        for constraint in [c for c in table.constraints if c.__class__.__name__ == "ForeignKeyConstraint"]:
            table.constraints.discard(constraint)
    metadata.create_all(engine)
    return subjects, raw


def _raw_insert(sessions: Any, source: SqlTable, target: SqlTable, batch: int) -> float:
    """Copy the rows the upsert wrote into ``target`` with the driver's own ``executemany``, values as
    stored; only the inserts are timed. This is the floor: no SQLAlchemy, no encryption, no checks."""
    elapsed = 0.0
    columns = [column.name for column in source.columns]
    with sessions() as reader, sessions() as writer:
        insert_sql = DriverValues(writer).insert_sql(target.name, columns)
        select_sql = f"SELECT {', '.join(columns)} FROM {source.name}"  # noqa: S608 - fixed names
        result = reader.connection().exec_driver_sql(select_sql).yield_per(batch)
        for chunk in result.partitions(batch):
            rows = [tuple(row) for row in chunk]
            start = time.perf_counter()
            writer.connection().exec_driver_sql(insert_sql, rows)
            writer.commit()
            elapsed += time.perf_counter() - start
    return elapsed


def run_store_bench(
    *, rows: int, batch: int = 5000, lookups: int = 2000, database_url: str | None = None
) -> StoreBenchResult:
    """Load ``rows`` synthetic materials with the batch upsert, then the same rows with raw executemany
    into twin tables on the same engine, then time lookups of random subjects."""
    workdir = Path(tempfile.mkdtemp(prefix="onecert-bench-store-"))
    try:
        return _bench(
            database_url or f"sqlite:///{workdir / 'bench.db'}", rows=rows, batch=batch, lookups=lookups
        )
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _bench(database_url: str, *, rows: int, batch: int, lookups: int) -> StoreBenchResult:
    engine = engine_for_url(database_url)
    upgrade(engine)
    sessions = session_factory(engine)
    keyring = Keyring.generate()
    with sessions() as session:
        sync_material_types(session, specs=load_catalogue())
        session.commit()

    upsert_seconds = 0.0
    stream = materials(rows)
    with sessions() as session:
        while chunk := list(itertools.islice(stream, batch)):
            start = time.perf_counter()
            upsert_materials(session, keyring=keyring, items=chunk, source="bench", run_id="bench")
            session.commit()
            upsert_seconds += time.perf_counter() - start

    raw_subjects, raw_materials = _raw_tables(engine)
    raw_seconds = _raw_insert(sessions, SUBJECTS, raw_subjects, batch)
    raw_seconds += _raw_insert(sessions, MATERIALS, raw_materials, batch)

    subjects = max(1, rows // 4)
    rng = random.Random(11)
    timings: list[float] = []
    with sessions() as session:
        for serial in (rng.randrange(subjects) for _ in range(lookups + 200)):
            start = time.perf_counter()
            index = keyring.blind_index(person_id(serial).value)
            found = latest_materials(session, blind_index=index)
            timings.append((time.perf_counter() - start) * 1000)
            assert len(found) == 4
    timings = timings[200:]  # warm-up
    quantiles = statistics.quantiles(timings, n=100)
    engine.dispose()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return StoreBenchResult(rows, upsert_seconds, raw_seconds, quantiles[49], quantiles[98], peak)


def print_store_bench(result: StoreBenchResult, console: Console | None = None) -> None:
    console = console or Console()
    table = Table(title=f"bench store · {result.rows:,} materials")
    table.add_column("figure")
    table.add_column("value", justify="right")
    table.add_column("target", justify="right")
    table.add_row("batch upsert", f"{result.upsert_rows_per_second:,.0f} rows/s", "")
    table.add_row("raw executemany", f"{result.raw_rows_per_second:,.0f} rows/s", "")
    table.add_row("ratio upsert / raw", f"{result.ratio:.2f}", ">= 0.40")
    table.add_row("lookup p50", f"{result.lookup_p50_ms:.3f} ms", "")
    table.add_row("lookup p99", f"{result.lookup_p99_ms:.3f} ms", "< 1 ms")
    table.add_row("peak RSS", f"{result.peak_rss_mib:,.0f} MiB", "")
    console.print(table)
