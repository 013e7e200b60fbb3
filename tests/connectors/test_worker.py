"""A bulk sync's worker process (:mod:`connectors.worker`): when a sync uses one, and what a worker that
dies leaves behind. The shared suite runs every connector both ways."""

from __future__ import annotations

import gc
import multiprocessing
import os
import signal
import weakref
from pathlib import Path

import pytest

import connectors.pipeline as pipeline
from connectors.pipeline import SyncReport, run_sync
from connectors.sandbox.generate import drop_inbox
from materials_store.runtime import StoreHandle, open_store
from materials_store.settings import Settings
from materials_store.store import get_cursor
from tests.connectors.test_shared_suite import _counts as stored_rows
from tests.connectors.test_shared_suite import _expected as expected_rows


def _expected(home: Path, source: str) -> tuple[int, int]:
    """(good rows, distinct bad records) the sandbox seeded for ``source``."""
    bad, good = expected_rows(home, source)
    return good, len(bad)


def _stored(store: StoreHandle, source: str) -> tuple[int, int, int]:
    """(distinct records loaded, material versions, distinct records quarantined)."""
    loaded, quarantined, versions = stored_rows(store, source)
    return len(loaded), versions, len(quarantined)


def test_a_source_with_more_rows_than_the_read_ahead_goes_on_in_a_worker(
    sandbox: Path, store: StoreHandle, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(pipeline, "PARALLEL_AFTER_ROWS", 100)
    thresholds = gc.get_threshold()
    big = run_sync("police_id_card", handle=store, batch_rows=50)  # 300 persons and their defects
    assert big.state == "success", big.error
    # The collector is as the sync found it: the heap it kept from it is given back, its thresholds too.
    assert gc.get_freeze_count() == 0
    assert gc.get_threshold() == thresholds
    assert gc.isenabled()
    assert big.worker_peak_rss_mib is not None and big.worker_peak_rss_mib > 0
    good, bad = _expected(sandbox, "police_id_card")
    # The rows read ahead here were let go: the worker read them again, and nothing counts twice.
    assert (big.loaded, big.unchanged) == (good, 0)
    assert big.extracted == big.loaded + big.quarantined
    assert _stored(store, "police_id_card") == (good, good, bad)

    small = run_sync("market_licences", handle=store, batch_rows=50)  # 30 companies: read ahead, done here
    assert small.state == "success", small.error
    assert small.worker_peak_rss_mib is None
    assert small.loaded == _expected(sandbox, "market_licences")[0]


class _Node:
    partner: _Node | None = None


def _cycle() -> weakref.ref[_Node]:
    """Two objects that only the garbage collector can free, and a way to see whether it has."""
    first, second = _Node(), _Node()
    first.partner, second.partner = second, first
    return weakref.ref(first)


def test_a_bulk_sync_collects_between_batches_and_gives_the_collector_back() -> None:
    assert gc.isenabled()
    with pipeline.bulk_gc(collect_every=3) as between_batches:
        assert not gc.isenabled()  # no collection walks a batch while it is alive
        garbage = _cycle()
        between_batches()
        between_batches()
        assert garbage() is not None
        between_batches()  # the third batch: collected
        assert garbage() is None
    assert gc.isenabled()
    assert gc.get_freeze_count() == 0

    with pytest.raises(RuntimeError), pipeline.bulk_gc():  # a failed sync gives it back too
        raise RuntimeError("the source went down")
    assert gc.isenabled()
    assert gc.get_freeze_count() == 0


def test_a_workers_peak_memory_is_its_own_not_that_of_the_process_that_started_it(
    sandbox: Path, store: StoreHandle, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The sync's process peaks at 1 GiB before it starts the worker (as ``bench ingest``'s did while it
    # generated the sandbox's data): the worker, which only ever holds a few batches, must not report it.
    peak = bytearray(1024 * 1024 * 1024)
    peak[::4096] = b"\1" * len(range(0, len(peak), 4096))
    del peak
    monkeypatch.setattr(pipeline, "PARALLEL_AFTER_ROWS", 100)
    report = run_sync("police_id_card", handle=store, batch_rows=50)
    assert report.state == "success", report.error
    assert report.worker_peak_rss_mib is not None and 50 < report.worker_peak_rss_mib < 700


def test_a_worker_syncing_a_file_drop_archives_each_file_once_its_rows_are_committed(
    sandbox: Path, store: StoreHandle
) -> None:
    source = "hrss_social_insurance"
    inbox = drop_inbox(sandbox, source)
    files = sorted(path.name for path in inbox.iterdir())
    assert files
    report = run_sync(source, handle=store, batch_rows=50, parallel=True)
    assert report.state == "success", report.error
    assert not list(inbox.iterdir())
    assert sorted(path.name for path in (inbox.parent / "archive").iterdir()) == files


def _kill_the_worker(report: SyncReport) -> None:
    """After the first committed batch: the worker is killed, as the kernel's OOM killer would."""
    if report.batches == 1:
        (worker,) = [
            child for child in multiprocessing.active_children() if child.name.startswith("onecert-sync-")
        ]
        assert worker.pid is not None
        os.kill(worker.pid, signal.SIGKILL)


def test_a_worker_that_dies_fails_the_run_and_the_rerun_loses_and_doubles_nothing(
    sandbox: Path, store: StoreHandle, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = "police_id_card"
    monkeypatch.setenv("ONECERT_SOURCE_POLICE_ID_CARD_PAGE_SIZE", "5")
    monkeypatch.setattr(pipeline, "LOAD_COMMIT_ROWS", 1)  # each batch committed
    killed = run_sync(source, handle=store, batch_rows=5, parallel=True, after_batch=_kill_the_worker)
    assert killed.state == "failed"
    assert killed.error is not None and "worker process stopped without finishing" in killed.error
    assert 1 <= killed.batches < 60
    with store.sessions() as session:
        cursor = get_cursor(session, source=source)
    assert cursor == killed.cursor is not None  # the cursor covers exactly the committed batches

    finished = run_sync(source, handle=store, batch_rows=5, parallel=True)
    assert finished.state == "success", finished.error
    good, bad = _expected(sandbox, source)
    assert _stored(store, source) == (good, good, bad)
    assert killed.loaded + finished.loaded == good


@pytest.mark.postgres
@pytest.mark.parametrize("parallel", [False, True], ids=["in-process", "worker"])
def test_a_sync_into_postgresql_loads_every_good_row_once(
    parallel: bool, sandbox: Path, postgres_url: str
) -> None:
    from tests.store.conftest import _fresh_postgres

    store = open_store(Settings(home=sandbox, dev=True, database_url=_fresh_postgres(postgres_url)))
    try:
        first = run_sync("police_id_card", handle=store, batch_rows=50, parallel=parallel)
        assert first.state == "success", first.error
        good, bad = _expected(sandbox, "police_id_card")
        assert first.loaded == good
        assert _stored(store, "police_id_card") == (good, good, bad)
        with store.sessions() as session:
            assert get_cursor(session, source="police_id_card") == first.cursor is not None
        again = run_sync("police_id_card", handle=store, batch_rows=50, parallel=parallel)
        assert (again.state, again.extracted) == ("success", 0)
    finally:
        store.engine.dispose()


def test_a_batch_handed_over_open_is_sealed_by_the_sync_as_the_worker_would_have() -> None:
    """When the sync's process has nothing to load, the worker sends the next batch open (fields and
    canonical payloads) and the sync seals it: the same subjects, hashes and payloads as a sealed batch."""
    import datetime as dt

    from connectors.worker import _open, _seal_opened
    from materials_store.crypto import Keyring
    from materials_store.identity import parse_identifier
    from materials_store.store import MaterialInput, canonical_json_many, seal_materials
    from tests.store.conftest import person

    keyring = Keyring.generate()
    items = [
        MaterialInput(
            "police.id_card", person(serial), f"R{serial}", dt.date(2020, 1, serial + 1),
            dt.date(2040, 1, 1) if serial % 2 else None, {"name": f"名{serial}", "serial": serial}, "police",
            f"姓名{serial}" if serial % 3 else None, None,
        )
        for serial in range(6)
    ]  # fmt: skip
    canonicals = canonical_json_many([item.payload for item in items])
    by_worker = seal_materials(keyring, items)
    by_sync = _seal_opened(
        keyring, [_open(item, canonical) for item, canonical in zip(items, canonicals, strict=True)]
    )
    assert len(by_sync) == len(items)
    for item, canonical, worker, sync in zip(items, canonicals, by_worker, by_sync, strict=True):
        assert sync.item._replace(payload=item.payload) == item
        assert sync.sha == worker.sha
        assert keyring.decrypt(sync.key_id, sync.ciphertext, aad=b"material:" + sync.id.encode()) == canonical
        assert sync.subject.blind_index == worker.subject.blind_index
        aad = b"subject:" + sync.subject.blind_index.encode()
        assert (
            parse_identifier(keyring.decrypt(sync.subject.key_id, sync.subject.id_blob, aad=aad).decode())
            == item.subject
        )
        if item.subject_name:
            assert sync.subject.name_blob is not None
            name = keyring.decrypt(sync.subject.key_id, sync.subject.name_blob, aad=aad + b":name").decode()
            assert name == item.subject_name
        else:
            assert sync.subject.name_blob is None


@pytest.mark.parametrize("left_behind", [True, False], ids=["worker", "plain-spawn"])
def test_a_worker_does_not_run_the_main_script_that_started_it(left_behind: bool, tmp_path: Path) -> None:
    """A spawned child runs its parent's main script first (the ``onecert`` script imports the whole
    CLI); a sync's worker is started without it."""
    import subprocess
    import sys
    import textwrap

    marker = tmp_path / "main-ran-in-child"
    script = tmp_path / "main_script.py"
    script.write_text(
        textwrap.dedent(
            f"""
            import multiprocessing, time
            from connectors.worker import main_module_left_behind
            if __name__ == "__mp_main__":
                open({str(marker)!r}, "w").close()
            if __name__ == "__main__":
                child = multiprocessing.get_context("spawn").Process(target=time.sleep, args=(0,))
                if {left_behind!r}:
                    with main_module_left_behind():
                        child.start()
                else:
                    child.start()
                child.join()
                assert child.exitcode == 0
                assert __file__.endswith("main_script.py")  # put back once the child has started
            """
        )
    )
    subprocess.run([sys.executable, str(script)], check=True, timeout=60)
    assert marker.exists() is not left_behind
