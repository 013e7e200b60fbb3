"""A bulk sync's second process: it reads the source, validates each batch and seals it (IDs, GX, hashes,
encryption); the sync's own process loads what it hands over (SQL only), quarantines, saves the cursor and
keeps the run's books. A batch the worker finishes validating while the sync's process has nothing
waiting to load goes over open instead, and that process seals it (see :func:`_work`). So a sync uses two
cores, and everything that commits stays in one process, in batch order: the store and the cursor move
together exactly as an in-process sync moves them.

The worker is started from the run's committed state, sends one message per batch over a pipe, and never
touches the store. A failure there (a source down, a broken page) reaches the sync as the same safe error
text an in-process run would log; a worker that dies says so. Either way the batches it sent and the sync
committed stay, and the cursor covers exactly them.
"""

from __future__ import annotations

import datetime as dt
import gc
import multiprocessing
import os
import pickle
import queue
import resource
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from multiprocessing.connection import Connection
from multiprocessing.synchronize import Event
from pathlib import Path
from typing import Any

from connectors.config import SourceConfig
from materials_store.crypto import Keyring
from materials_store.errors import OneCertError
from materials_store.identity import Identifier, IdentifierKind
from materials_store.store import (
    MaterialInput,
    SealedMaterial,
    SealedQuarantineRow,
    SealedSubject,
    canonical_json_many,
    seal_canonicals,
    seal_materials,
    seal_quarantine,
)

#: The worker's niceness: a sync in office hours gives the hub's workers (lookups) the CPU first. The
#: sync's own process, which holds the store's writer lock while it loads, keeps its priority. ``bench
#: lookup --during-sync`` of a million rows: p99 33.2-33.4 ms at 19, 36.2-37.5 ms at 10; the sync took
#: 127-129 s either way.
WORKER_NICE = 19
#: Rows per batch when a worker prepares them: one batch is validated there while the one before is
#: loaded here, so each process holds one; half the in-process size keeps both under the sync's 1 GiB
#: (``bench ingest``: 340 + 542 MiB; a prototype with 50,000-row batches peaked at 438 + 701 MiB). Larger
#: batches would halve GX's fixed cost a call, but gained nothing as a whole: with 50,000 rows, 20,300
#: records/s against 21,118 and peaks of 461 + 715 MiB (2026-11-24).
WORKER_BATCH_ROWS = 25_000
#: The garbage collector's thresholds in a sync's worker until its first batch is sent (GX imported and
#: its suite built); after that, it collects between batches only. At Python's default (700, 10, 10) the
#: worker collected its young objects some 14,000 times a million rows, at these 381 times.
BULK_GC_THRESHOLDS = (20_000, 10, 10)


class SyncWorkerError(OneCertError):
    """The sync's worker process failed (its error, in words fit for the run log) or died."""


@dataclass
class SealedBatch:
    """A batch validated and sealed by a worker, ready for :func:`connectors.pipeline.load_batch`."""

    extracted: int
    materials: list[SealedMaterial]
    bad: list[SealedQuarantineRow]
    quarantined_ids: list[str]
    commits: list[tuple[str, str]]


# What crosses the pipe: flat tuples pickle about ten times faster than the nested records (measured on
# 50,000-row batches when they were dataclasses: 3 + 2 µs a row against 22 + 25). The payload itself
# stays behind: it travels as its ciphertext (or, in a batch handed over open, its canonical JSON), and
# loading needs only its hash.
_Flat = tuple[
    str, str, str, str, dt.date, dt.date | None, str, str | None,  # type, kind, value, record, dates, issuer, sig
    str, bytes, bytes | None, str,  # the subject sealed: index, id, name, key
    str, str, bytes, str,  # sha, id, ciphertext, key
]  # fmt: skip


def _flat(sealed: SealedMaterial) -> _Flat:
    item, subject = sealed.item, sealed.subject
    return (
        item.type_code, item.subject.kind.value, item.subject.value, item.source_record_id, item.issued_at,
        item.valid_until, item.issuer, item.issuer_signature,
        subject.blind_index, subject.id_blob, subject.name_blob, subject.key_id,
        sealed.sha, sealed.id, sealed.ciphertext, sealed.key_id,
    )  # fmt: skip


def _sealed(flat: _Flat) -> SealedMaterial:
    (type_code, kind, value, record_id, issued_at, valid_until, issuer, signature,
     index, id_blob, name_blob, subject_key, sha, material_id, ciphertext, key_id) = flat  # fmt: skip
    item = MaterialInput(
        type_code,
        Identifier(_KINDS[kind], value),
        record_id,
        issued_at,
        valid_until,
        {},
        issuer,
        None,
        signature,
    )
    subject = SealedSubject(index, kind, id_blob, name_blob, subject_key)
    return SealedMaterial(item, subject, sha, material_id, ciphertext, key_id)


# A batch handed over open, for the sync's process to seal: each material as its fields and its payload's
# canonical JSON (which pickles as fast as the ciphertext it replaces).
_Open = tuple[
    str, str, str, str, dt.date, dt.date | None, str, str | None,  # type, kind, value, record, dates, issuer, sig
    str | None, bytes,  # the subject's name, the canonical payload
]  # fmt: skip


def _open(item: MaterialInput, canonical: bytes) -> _Open:
    return (
        item.type_code, item.subject.kind.value, item.subject.value, item.source_record_id, item.issued_at,
        item.valid_until, item.issuer, item.issuer_signature, item.subject_name, canonical,
    )  # fmt: skip


def _seal_opened(keyring: Keyring, opened: list[_Open]) -> list[SealedMaterial]:
    """What the worker would have sealed, sealed here: the same subjects, hashes and ciphertexts."""
    items = [
        MaterialInput(type_code, Identifier(_KINDS[kind], value), record_id, issued_at, valid_until, {},
                      issuer, name, signature)
        for (type_code, kind, value, record_id, issued_at, valid_until, issuer, signature, name, _) in opened
    ]  # fmt: skip
    return seal_canonicals(keyring, items, [entry[9] for entry in opened])


_KINDS = {kind.value: kind for kind in IdentifierKind}  # a dict: the enum's own lookup takes longer


class SyncWorker:
    """A worker reading ``source`` after ``state`` (the run's committed streams), started at once.

    Use as a context manager: leaving it stops the worker, at once if it is still reading.
    """

    def __init__(
        self, source: str, *, config: SourceConfig, keyring: Keyring, state: dict[str, str], batch_rows: int
    ) -> None:
        context = multiprocessing.get_context("spawn")  # a fresh interpreter: no threads, locks or sockets
        self.pipe, sent = context.Pipe(duplex=False)
        # The worker gets the keys that seal (blind index, data keys), never the hub's signing keys.
        self.keyring = Keyring(keyring.blind_index_key, dict(keyring.data_keys), keyring.current_data_key_id)
        #: Set while no batch is waiting here beyond the one being loaded: the worker then hands the next
        #: one over open.
        self.idle = context.Event()
        self.process = context.Process(
            target=_work, args=(sent, source, config, self.keyring, state, batch_rows, self.idle),
            name=f"onecert-sync-{source}", daemon=True,
        )  # fmt: skip
        with main_module_left_behind():
            self.process.start()
        sent.close()
        #: The worker's peak resident memory, once it has read everything.
        self.peak_rss_mib: float | None = None
        # A thread takes each message off the pipe as soon as it is sent, so the worker goes on with
        # the next batch while this process loads; it holds at most one message not yet taken.
        self._received: queue.Queue[bytes | None] = queue.Queue()
        self._room = threading.Semaphore(1)
        self._closing = threading.Event()
        self._receiver = threading.Thread(
            target=self._receive, name=f"onecert-sync-{source}-pipe", daemon=True
        )
        self._receiver.start()

    def _receive(self) -> None:
        try:
            while True:
                self._room.acquire()
                if self._closing.is_set():
                    return
                data = self.pipe.recv_bytes()
                self.idle.clear()  # before it is there to take: see batches()
                self._received.put(data)
        except (EOFError, OSError):  # the worker has exited (or died): batches() says which
            self._received.put(None)

    def batches(self) -> Iterator[SealedBatch]:
        """The worker's batches in order, until it has read everything.

        Raises:
            SyncWorkerError: the worker failed (with its error's run-log text) or died.
        """
        while True:
            data = self._received.get()
            self.idle.set()  # nothing more is waiting here (the receiver holds one message at most)
            if data is None:
                self.process.join(timeout=5)
                raise SyncWorkerError(
                    f"the sync's worker process stopped without finishing (exit code {self.process.exitcode})"
                )
            message = pickle.loads(data)  # noqa: S301 - our own child, over its pipe
            del data
            self._room.release()
            kind = message[0]
            if kind == "error":
                raise SyncWorkerError(message[1])
            if kind == "done":
                self.peak_rss_mib = message[1]
                return
            _, extracted, flats, bad, quarantined_ids, commits = message
            if kind == "open":
                materials = _seal_opened(self.keyring, flats)
            else:
                materials = [_sealed(flat) for flat in flats]
            del message, flats  # not held while the batch loads
            yield SealedBatch(extracted, materials, bad, quarantined_ids, commits)
            del materials

    def __enter__(self) -> SyncWorker:
        return self

    def __exit__(self, *exc: object) -> None:
        self._closing.set()
        self._room.release()  # a receiver waiting for room wakes, and stops
        if self.process.is_alive():
            self.process.terminate()
        self.process.join(timeout=10)
        if self.process.is_alive():
            self.process.kill()
            self.process.join()
        self._receiver.join(timeout=10)  # the worker gone, its pipe ends: the receiver stops
        self.pipe.close()


def _work(
    pipe: Connection,
    source: str,
    config: SourceConfig,
    keyring: Keyring,
    state: dict[str, str],
    batch_rows: int,
    idle: Event,
) -> None:
    """The worker's main: read, validate, seal and send each batch; then "done", or "error" and its text.

    A batch validated while nothing waits to be loaded after the sync's current one (``idle``) goes over
    open, for that process to seal: it would only wait for this one to. So the two share the sealing as
    their speeds let them: a load into a small store is quicker than a batch's validation and sealing,
    into a large one it is not."""
    from connectors.pipeline import _batches, _safe_error, prefetch, prepare_batch
    from connectors.registry import get_connector
    from contracts import load_contract

    os.nice(WORKER_NICE)
    gc.set_threshold(*BULK_GC_THRESHOLDS)
    connector = None
    frozen = False
    try:
        contract = load_contract(source)
        connector_class = get_connector(source)
        connector = connector_class(config)
        for batch in _batches(prefetch(connector.pages(state)), batch_rows):
            prepared = prepare_batch(contract, name_field=connector_class.subject_name_field, rows=batch.rows)
            extracted, commits = len(batch.rows), batch.commits
            del batch  # free the raw rows while sealing
            materials = prepared.materials
            flats: list[_Open] | list[_Flat]
            if idle.is_set():
                canonicals = canonical_json_many([item.payload for item in materials])
                kind, flats = "open", [_open(*pair) for pair in zip(materials, canonicals, strict=True)]
                del canonicals
            else:
                kind, flats = "batch", [_flat(sealed) for sealed in seal_materials(keyring, materials)]
            del materials
            bad = seal_quarantine(keyring, source=source, rows=prepared.bad)
            message = (kind, extracted, flats, bad, prepared.quarantined_ids, commits)
            del prepared, flats
            pipe.send_bytes(pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL))
            del message
            if not frozen:  # GX is loaded and its suite built: see :func:`connectors.pipeline.bulk_gc`
                gc.collect()
                gc.freeze()
                frozen = True
                gc.disable()  # from now on collected here, between batches
            else:
                # What this batch left in reference cycles (GX's validation: a few hundred objects), with
                # only the next pages alive besides: a few milliseconds. The automatic collector walked
                # each batch's rows and materials while they were alive, 2.5 s a million rows.
                gc.collect()
        pipe.send_bytes(pickle.dumps(("done", _peak_rss_mib())))
    except Exception as error:  # noqa: BLE001 - handed to the sync, which fails the run with it
        pipe.send_bytes(pickle.dumps(("error", _safe_error(error))))
    finally:
        close = getattr(connector, "close", None)
        if close:
            close()
        pipe.close()


@contextmanager
def main_module_left_behind() -> Iterator[None]:
    """Processes spawned in the block do not run this process's main module again.

    A spawned child runs its parent's ``__main__`` (by path or by module name) before its target, so
    that what the main module defines can be unpickled there. The worker needs nothing from it: its
    target and its arguments' classes live in the project's own modules, imported by name. And the
    ``onecert`` script's main imports the whole CLI: 0.45 s of every worker's start went on that.
    """
    main = sys.modules.get("__main__")
    if main is None:
        yield
        return
    saved: dict[str, Any] = {
        key: main.__dict__[key] for key in ("__file__", "__spec__") if key in main.__dict__
    }
    main.__dict__.pop("__file__", None)
    main.__spec__ = None
    try:
        yield
    finally:
        main.__dict__.update(saved)


def _peak_rss_mib() -> float:
    """This process's peak resident memory. Linux's ``VmHWM`` is this interpreter's own: ``ru_maxrss``
    carries over exec the peak of the process that spawned it (the sync's, at the moment it started
    the worker)."""
    peak = peak_mib(Path("/proc/self/status"))
    return peak if peak is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def peak_mib(status: Path) -> float | None:
    """A process's peak resident memory so far (``VmHWM`` in its ``/proc/.../status``), in MiB; None if
    it cannot be read (the process is gone, or this is not Linux)."""
    try:
        lines = status.read_text().splitlines()
    except OSError:
        return None
    return next((int(line.split()[1]) / 1024 for line in lines if line.startswith("VmHWM:")), None)
