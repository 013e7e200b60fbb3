"""``onecert bench ingest``: a sync of the sandbox police REST source into a fresh store, with validation."""

from __future__ import annotations

import multiprocessing
import os
import resource
import shutil
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console
from rich.table import Table

from connectors.pipeline import run_sync
from connectors.sandbox import control
from connectors.worker import peak_mib
from hub.bench.store import _raw_insert, _raw_tables
from materials_store.models import MATERIALS
from materials_store.runtime import open_store
from materials_store.settings import Settings

SOURCE = "police_id_card"


@dataclass(frozen=True)
class IngestBenchResult:
    rows: int
    loaded: int
    quarantined: int
    seconds: float
    raw_seconds: float
    peak_rss_mib: float
    server_peak_rss_mib: float
    peak_anon_mib: float
    cpu_seconds: float
    worker_peak_rss_mib: float | None  # the sync's worker process, when it had one
    worker_cpu_seconds: float

    @property
    def sync_peak_rss_mib(self) -> float:
        """Both processes' peaks together (an upper bound: they need not peak at the same moment)."""
        return self.peak_rss_mib + (self.worker_peak_rss_mib or 0.0)

    @property
    def records_per_second(self) -> float:
        return self.rows / self.seconds

    @property
    def raw_rows_per_second(self) -> float:
        return self.loaded / self.raw_seconds

    @property
    def ratio(self) -> float:
        return self.records_per_second / self.raw_rows_per_second


class _AnonPeak:
    """Samples the process's anonymous resident memory (heap, not file pages SQLite maps) while open."""

    def __init__(self, interval: float = 0.1) -> None:
        self.interval = interval
        self.peak_mib = 0.0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._sample, name="bench-memory", daemon=True)

    def _sample(self) -> None:
        status = Path("/proc/self/status")
        while not self.stop.wait(self.interval):
            if not status.exists():
                return
            for line in status.read_text().splitlines():
                if line.startswith("RssAnon:"):
                    self.peak_mib = max(self.peak_mib, int(line.split()[1]) / 1024)

    def __enter__(self) -> _AnonPeak:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join()


def run_ingest_bench(
    *, rows: int, batch: int = 50_000, page: int = 5000, home: Path | None = None
) -> IngestBenchResult:
    """Generate ``rows`` persons in the sandbox, sync police_id_card end to end into a fresh store, then
    time the store's raw batch insert of the same materials on the same engine.

    Args:
        home: where the sandbox data is kept; generated data of the same size is reused across runs (a
            million rows take minutes to generate). Without it the data goes in a temporary folder,
            removed at the end. The store is always new, in a temporary folder, removed at the end.
    """
    owned_home = home is None  # the bench's own sandbox data goes with it: a million rows' take 1.6 GB
    home = home or Path(tempfile.mkdtemp(prefix="onecert-bench-ingest-"))
    store_dir = Path(tempfile.mkdtemp(prefix="onecert-bench-ingest-store-"))
    try:
        return _bench(home, store_dir, rows=rows, batch=batch, page=page)
    finally:
        shutil.rmtree(store_dir, ignore_errors=True)
        if owned_home:
            shutil.rmtree(home, ignore_errors=True)


def _bench(home: Path, store_dir: Path, *, rows: int, batch: int, page: int) -> IngestBenchResult:
    os.environ[f"ONECERT_SOURCE_{SOURCE.upper()}_PAGE_SIZE"] = str(page)
    settings = Settings(home=home, dev=True, database_url=f"sqlite:///{store_dir / 'onecert.db'}")
    # The data is generated in a process of its own: a million rows grow a heap this one would keep, and
    # count, as the sync's.
    generating = multiprocessing.get_context("spawn").Process(
        target=control.ensure_data,
        args=(home,),
        kwargs={"size": rows, "seed": 1},
        name="onecert-bench-generate",
    )
    generating.start()
    generating.join()
    if generating.exitcode != 0:
        raise RuntimeError(f"generating the sandbox's data failed (exit code {generating.exitcode})")
    control.up(home, size=rows, seed=1)
    try:
        handle = open_store(settings)
        sampler = _AnonPeak()
        children_cpu = _children_cpu()  # the sandbox's servers are not reaped before the end: the worker's
        start, cpu_start = time.perf_counter(), time.process_time()
        with sampler:
            report = run_sync(SOURCE, handle=handle, batch_rows=batch)
        seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu_start
        worker_cpu_seconds = _children_cpu() - children_cpu
        # The peaks of the sync, before the baseline below reads and writes the same rows again.
        self_peak = peak_mib(Path("/proc/self/status")) or 0.0
        server_peak = sum(
            peak_mib(Path(f"/proc/{entry['pid']}/status")) or 0.0
            for entry in control.load_state(home)["systems"].values()
            if entry.get("pid")
        )
        if report.state != "success":
            raise RuntimeError(f"the benchmark sync failed: {report.error}")
        _, raw_materials = _raw_tables(handle.engine)
        raw_seconds = _raw_insert(handle.sessions, MATERIALS, raw_materials, batch)
        handle.engine.dispose()
    finally:
        control.down(home)
    return IngestBenchResult(
        report.extracted, report.loaded, report.quarantined, seconds, raw_seconds, self_peak, server_peak,
        sampler.peak_mib, cpu_seconds, report.worker_peak_rss_mib, worker_cpu_seconds,
    )  # fmt: skip


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def print_ingest_bench(result: IngestBenchResult, console: Console | None = None) -> None:
    console = console or Console()
    table = Table(title=f"bench ingest · {result.rows:,} records from the police REST sandbox")
    table.add_column("figure")
    table.add_column("value", justify="right")
    table.add_column("target", justify="right")
    table.add_row(
        "end to end (fetch, map, IDs, GX, load)", f"{result.records_per_second:,.0f} records/s", ">= 30,000"
    )
    table.add_row("loaded / quarantined", f"{result.loaded:,} / {result.quarantined:,}", "")
    table.add_row("store raw batch insert, same rows", f"{result.raw_rows_per_second:,.0f} rows/s", "")
    table.add_row("ratio ingest / raw insert", f"{result.ratio:.2f}", "")
    table.add_row("CPU time, sync process", f"{result.cpu_seconds:,.1f} s", "")
    if result.worker_peak_rss_mib is not None:
        table.add_row("CPU time, its worker process", f"{result.worker_cpu_seconds:,.1f} s", "")
        table.add_row("peak memory, sync process (RSS)", f"{result.peak_rss_mib:,.0f} MiB", "")
        table.add_row("peak memory, its worker process (RSS)", f"{result.worker_peak_rss_mib:,.0f} MiB", "")
    table.add_row(
        "peak memory, the sync (RSS, processes summed)", f"{result.sync_peak_rss_mib:,.0f} MiB", "< 1024 MiB"
    )
    table.add_row("peak anonymous memory, sync process", f"{result.peak_anon_mib:,.0f} MiB", "")
    table.add_row("peak memory, sandbox servers (summed)", f"{result.server_peak_rss_mib:,.0f} MiB", "")
    console.print(table)
