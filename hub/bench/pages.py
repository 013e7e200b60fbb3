"""``onecert bench pages``: how long the browser pages take to render on a store of N subjects.

The store is the lookup bench's (``var/bench-lookup``, built once); the hub is served in its own process.
Each page is requested by a signed-in browser session over loopback, so a figure is the server's render
time plus a loopback round trip (an upper bound). Target: every page under 300 ms.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from rich.console import Console
from rich.table import Table

from hub.bench.lookup import _free_port, build_store
from hub.bench.synthetic import person_id
from materials_store.runtime import open_store
from materials_store.settings import Settings
from materials_store.store import add_client
from materials_store.web_sessions import issue_link

BUDGET_MS = 300.0


@dataclass(frozen=True)
class PageFigures:
    page: str
    samples: int
    p50_ms: float
    p99_ms: float
    max_ms: float


def _client(settings: Settings, kind: str, **fields: str) -> str:
    """Register a client and return a one-time sign-in token for it."""
    public = ed25519.Ed25519PrivateKey.generate().public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    handle = open_store(settings)
    with handle.sessions() as session:
        client = add_client(session, kind=kind, name=f"bench {kind}", public_key_pem=public.decode(), **fields)
        session.commit()
        token = issue_link(session, client_id=client.id, person="bench")
        session.commit()
    handle.engine.dispose()
    return token


def _browser(hub: str, token: str) -> httpx.Client:
    http = httpx.Client(base_url=hub, timeout=30)
    http.get(f"/signin?token={token}")  # sets the session cookie
    return http


def _csrf(page: str) -> str:
    marker = 'name="csrf" value="'
    start = page.index(marker) + len(marker)
    return page[start : page.index('"', start)]


def _time(name: str, samples: int, request: object) -> PageFigures:
    timings = []
    for _ in range(samples):
        started = time.perf_counter()
        response = request()  # type: ignore[operator]
        timings.append((time.perf_counter() - started) * 1000)
        if response.status_code != 200:
            raise RuntimeError(f"{name} answered {response.status_code}")
    timings.sort()
    return PageFigures(name, samples, statistics.median(timings), timings[int(len(timings) * 0.99) - 1], timings[-1])


def run_pages_bench(*, subjects: int, samples: int, home: Path) -> list[PageFigures]:
    port = _free_port()
    hub = f"http://127.0.0.1:{port}"
    settings = Settings(home=home, dev=True, public_url=hub)
    build_store(settings, subjects, Console())
    env = {**os.environ, "ONECERT_HOME": str(home), "ONECERT_PUBLIC_URL": hub, "ONECERT_DEV": "1",
           "ONECERT_RATE_LIMIT_PER_MINUTE": "100000000"}  # fmt: skip
    server = subprocess.Popen(  # noqa: S603 - our own command
        [sys.executable, "-m", "hub.cli", "serve", "--port", str(port), "--log-level", "warning"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{hub}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        someone = person_id(subjects // 2).value
        window = _browser(hub, _client(settings, "window", org="bench-centre"))
        steward = _browser(hub, _client(settings, "steward"))
        index = open_store(settings, migrate=False).keyring.blind_index(someone)
        citizen = _browser(hub, _client(settings, "citizen", subject_index=index))
        csrf = _csrf(window.get("/console").text)
        serial = iter(range(10**9))

        def lookup() -> httpx.Response:
            number = next(serial)  # the first lookup is the citizen's, so /me has a record to show
            return window.post("/console/lookup", data={
                "id": someone if number == 0 else person_id(number * 7919 % subjects).value, "case_ref": "BENCH-1",
                "purpose": "bench", "plan": "bundle:life.newborn", "csrf": csrf})  # fmt: skip

        figures = [
            _time("/console (form)", samples, lambda: window.get("/console")),
            _time("/console/lookup (newborn bundle checklist)", samples, lookup),
            _time("/console/cases/…/receipt", samples, lambda: window.get("/console/cases/BENCH-1/receipt")),
            _time("/me (usage records)", samples, lambda: citizen.get("/me")),
            _time("/steward (dashboard)", samples, lambda: steward.get("/steward")),
        ]
    finally:
        server.terminate()
        server.wait(timeout=30)
    return figures


def print_pages_bench(subjects: int, figures: list[PageFigures]) -> None:
    table = Table(title=f"bench pages · {subjects:,} subjects · server render + loopback, budget {BUDGET_MS:.0f} ms")
    for column in ("page", "samples", "p50 ms", "p99 ms", "max ms", "p99 / budget"):
        table.add_column(column, justify="left" if column == "page" else "right")
    for f in figures:
        table.add_row(f.page, str(f.samples), f"{f.p50_ms:.1f}", f"{f.p99_ms:.1f}", f"{f.max_ms:.1f}",
                      f"{f.p99_ms / BUDGET_MS:.2f}")  # fmt: skip
    Console().print(table)
