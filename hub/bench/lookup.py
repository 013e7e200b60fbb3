"""``onecert bench lookup``: signed lookups against a served store of N subjects, from another process,
compared with a trivial unsigned endpoint of the same app in the same run."""

from __future__ import annotations

import itertools
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from rich.console import Console
from rich.table import Table
from sqlalchemy import func, select

from connectors.sandbox import control
from contracts import load_catalogue
from hub.bench.synthetic import materials
from materials_store.models import MATERIALS
from materials_store.runtime import open_store
from materials_store.settings import Settings
from materials_store.store import add_client, sync_material_types, upsert_materials

PER_SUBJECT = 2
SYNC_SOURCE = "police_id_card"


@dataclass(frozen=True)
class LoadFigures:
    requests: int
    errors: int
    seconds: float
    p50_ms: float
    p99_ms: float

    @property
    def per_second(self) -> float:
        return self.requests / self.seconds


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def build_store(settings: Settings, subjects: int, console: Console) -> None:
    """Fill the store with ``subjects`` subjects (two materials each), unless it already holds them."""
    marker = settings.home / f"bench-lookup-{subjects}.done"
    if marker.exists() and settings.database_url is None:
        return
    handle = open_store(settings)
    if settings.database_url is not None:  # the data lives in that database, not beside the marker
        with handle.sessions() as session:
            # Valid ones only: versions an older generator left behind are superseded, not counted.
            valid = select(func.count()).select_from(MATERIALS).where(MATERIALS.c.status == "valid")
            if session.scalar(valid) == subjects * PER_SUBJECT:
                return
    with handle.sessions() as session:
        sync_material_types(session, specs=load_catalogue())
        session.commit()
    stream = materials(subjects * PER_SUBJECT, per_subject=PER_SUBJECT)
    loaded = 0
    with handle.sessions() as session:
        while chunk := list(itertools.islice(stream, 10_000)):
            upsert_materials(session, keyring=handle.keyring, items=chunk, source="bench")
            session.commit()
            loaded += len(chunk)
            if loaded % 200_000 == 0:
                console.print(f"  loaded {loaded:,} materials")
    marker.touch()


def _token(hub: str, handle_settings: Settings) -> str:
    import jwt

    key = ed25519.Ed25519PrivateKey.generate()
    public = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    handle = open_store(handle_settings)
    with handle.sessions() as session:
        client = add_client(session, kind="window", name="bench window", public_key_pem=public.decode())
        session.commit()
    now = int(time.time())
    assertion = jwt.encode({"iss": client.id, "sub": client.id, "aud": f"{hub}/v1/oauth/token", "iat": now,
                            "exp": now + 120, "jti": os.urandom(8).hex()}, key, algorithm="EdDSA")  # fmt: skip
    response = httpx.post(f"{hub}/v1/oauth/token", data={
        "grant_type": "client_credentials", "client_assertion": assertion,
        "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"}, timeout=10)  # fmt: skip
    response.raise_for_status()
    return str(response.json()["access_token"])


def _drive(hub: str, token: str, target: str, subjects: int, concurrency: int, seconds: float) -> LoadFigures:
    output = subprocess.run(  # noqa: S603 - our own module
        [sys.executable, "-m", "hub.bench.load", "--url", hub, "--token", token, "--target", target,
         "--subjects", str(subjects), "--concurrency", str(concurrency), "--seconds", str(seconds)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    if output.returncode != 0:
        raise RuntimeError(f"the load process failed: {output.stderr.strip().splitlines()[-1:]}")
    return LoadFigures(**json.loads(output.stdout.strip().splitlines()[-1]))


def _listeners(port: int) -> int:
    """Sockets listening on ``port``: one per worker of ``onecert serve`` once each has started."""
    import psutil

    return sum(
        1 for c in psutil.net_connections(kind="tcp") if c.status == psutil.CONN_LISTEN and c.laddr.port == port
    )


@contextmanager
def _served(home: Path, workers: int, database_url: str | None = None) -> Iterator[str]:
    """``onecert serve`` on ``home``'s store, on a free loopback port, until the block ends."""
    port = _free_port()
    hub = f"http://127.0.0.1:{port}"
    env = {**os.environ, "ONECERT_HOME": str(home), "ONECERT_PUBLIC_URL": hub, "ONECERT_DEV": "1",
           "ONECERT_RATE_LIMIT_PER_MINUTE": "100000000"}  # fmt: skip
    if database_url:
        env["ONECERT_DATABASE_URL"] = database_url
    server = subprocess.Popen(  # noqa: S603 - our own command
        [sys.executable, "-m", "hub.cli", "serve", "--port", str(port), "--workers", str(workers),
         "--log-level", "warning"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                # Every worker listening, not just the first: connections opened while one worker is
                # still starting all go to the others and stay there (half the throughput, by luck).
                if httpx.get(f"{hub}/healthz", timeout=1).status_code == 200 and _listeners(port) >= workers:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        yield hub
    finally:
        server.terminate()
        server.wait(timeout=30)


def run_lookup_bench(
    *, subjects: int, seconds: float, concurrency: int, workers: int, home: Path, database_url: str | None
) -> tuple[LoadFigures, LoadFigures]:
    settings = Settings(home=home, dev=True, database_url=database_url)
    build_store(settings, subjects, Console())
    with _served(home, workers, database_url) as hub:
        token = _token(hub, Settings(home=home, dev=True, database_url=database_url, public_url=hub))
        lookups = _drive(hub, token, "lookup", subjects, concurrency, seconds)
        trivial = _drive(hub, token, "trivial", subjects, concurrency, seconds)
    return lookups, trivial


@dataclass(frozen=True)
class SyncFigures:
    rows: int
    still_running: bool  # the sync was still loading when the lookups stopped: they ran during it
    sync_seconds: float


#: Seconds the sync gets to start (imports, first page, first validation) before lookups are timed.
SYNC_HEAD_START = 15.0


def run_lookup_during_sync(
    *, subjects: int, rows: int, seconds: float, concurrency: int, workers: int, home: Path, sync_home: Path
) -> tuple[LoadFigures, SyncFigures]:
    """Signed lookups while ``onecert sync`` pulls ``rows`` persons from the sandbox police REST source
    into the same store. The served store is a copy of the bench store (the sync adds rows to it), made
    anew each run; the sandbox data under ``sync_home`` is generated once and reused."""
    console = Console()
    build_store(Settings(home=home, dev=True), subjects, console)
    work = Path(tempfile.mkdtemp(prefix="onecert-bench-during-sync-"))
    try:
        shutil.copytree(home / "keys", work / "keys")
        shutil.copy2(home / "onecert.db", work / "onecert.db")
        control.up(sync_home, size=rows, seed=1)
        try:
            with _served(work, workers) as hub:
                token = _token(hub, Settings(home=work, dev=True, public_url=hub))
                env = {**os.environ, "ONECERT_HOME": str(sync_home), "ONECERT_DEV": "1",
                       "ONECERT_DATABASE_URL": f"sqlite:///{work / 'onecert.db'}",
                       "ONECERT_KEYRING_FILE": str(work / "keys" / "keyring.json")}  # fmt: skip
                started = time.monotonic()
                sync = subprocess.Popen(  # noqa: S603 - our own command
                    [sys.executable, "-m", "hub.cli", "sync", SYNC_SOURCE],
                    env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                )  # fmt: skip
                time.sleep(SYNC_HEAD_START)
                lookups = _drive(hub, token, "lookup", subjects, concurrency, seconds)
                still_running = sync.poll() is None
                _, errors = sync.communicate()
                if sync.returncode != 0:
                    raise RuntimeError(f"the sync failed: {errors.decode(errors='replace').splitlines()[-1:]}")
                sync_seconds = time.monotonic() - started
        finally:
            control.down(sync_home)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return lookups, SyncFigures(rows, still_running, sync_seconds)


def print_during_sync(lookups: LoadFigures, sync: SyncFigures) -> None:
    table = Table(title=f"bench lookup · during a {sync.rows:,}-row sync of {SYNC_SOURCE}")
    table.add_column("figure")
    table.add_column("value", justify="right")
    table.add_column("target", justify="right")
    table.add_row("signed lookups", f"{lookups.per_second:,.0f} /s ({lookups.errors} errors)", "")
    table.add_row("lookup p50", f"{lookups.p50_ms:.1f} ms", "")
    table.add_row("lookup p99", f"{lookups.p99_ms:.1f} ms", "<= 50 ms")
    table.add_row("sync still running when the lookups stopped", "yes" if sync.still_running else "NO", "yes")
    table.add_row("sync wall time", f"{sync.sync_seconds:.0f} s", "")
    Console().print(table)


def print_lookup_bench(subjects: int, lookups: LoadFigures, trivial: LoadFigures) -> None:
    table = Table(title=f"bench lookup · {subjects:,} subjects · signed lookups vs /healthz")
    table.add_column("figure")
    table.add_column("value", justify="right")
    table.add_column("target", justify="right")
    table.add_row("signed lookups", f"{lookups.per_second:,.0f} /s ({lookups.errors} errors)", "")
    table.add_row("lookup p50", f"{lookups.p50_ms:.1f} ms", "")
    table.add_row("lookup p99", f"{lookups.p99_ms:.1f} ms", "<= 25 ms")
    table.add_row("trivial endpoint", f"{trivial.per_second:,.0f} /s (p99 {trivial.p99_ms:.1f} ms)", "")
    table.add_row("ratio lookups / trivial", f"{lookups.per_second / trivial.per_second:.2f}", ">= 0.50")
    Console().print(table)
