"""The app factory: ``create_app(settings)`` builds the hub's FastAPI application."""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from anyio import to_thread
from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles
from starlette.types import ASGIApp, Receive, Scope, Send

from contracts.data_docs import site_dir
from hub.api import metrics, problems
from hub.api.jose import TokenService
from hub.api.ratelimit import RateLimiter
from hub.api.routes import (
    cases,
    catalog,
    clients,
    health,
    jwks,
    lookups,
    materials,
    oauth,
    promises,
    quarantine,
    sources,
    usage,
)
from materials_store.driver_reads import LoopReads, driver_reads
from materials_store.identity import load_division_codes
from materials_store.runtime import StoreHandle, open_store
from materials_store.settings import Settings, get_settings
from materials_store.store import usage_appender


class BodyLimit:
    """Refuse bodies over the configured size before reading them (413). Plain ASGI middleware."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            length = dict(scope["headers"]).get(b"content-length")
            if length is not None and (not length.isdigit() or int(length) > self.limit):
                response = problems.problem(
                    413, problems.PayloadTooLarge.problem_type, "Payload too large",
                    f"request bodies are limited to {self.limit} bytes",
                )  # fmt: skip
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


#: Threads running store work (sync routes and dependencies) per worker process. More threads only
#: contend for the GIL: the work is CPU, the waits (a usage record's group commit) are short.
STORE_THREADS = 4


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    to_thread.current_default_thread_limiter().total_tokens = STORE_THREADS
    load_division_codes()  # before the first request, not during it (about a second per worker)
    # Everything alive now (modules, the catalogue, division codes) lives as long as the worker: move it
    # out of the collector's sight, or each full collection walks it all and stalls every request in
    # flight (100-160 ms each, several a minute under load; about nothing once frozen).
    gc.collect()
    gc.freeze()
    handle: StoreHandle = app.state.store
    if not handle.embedded:  # PostgreSQL: plain lookups await their reads on this loop
        app.state.loop_reads = LoopReads(handle.engine)
    yield
    gc.unfreeze()
    if not handle.embedded:
        await app.state.loop_reads.close()
        await usage_appender(handle.engine).close_on_loop()
    driver_reads(handle.engine).close()


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the API: open the store (refusing to start without real keys outside dev mode), then join
    the routers."""
    settings = settings or get_settings()
    # A connection for every thread that may hold one (and the usage appender), so none is opened and
    # closed per request when requests pile up.
    handle = open_store(settings, pool_size=STORE_THREADS + 4, max_overflow=8)
    app = FastAPI(
        title="OneCert Hub",
        version="0.1.0",
        description="一证通办 · 材料共享复用: one-certificate lookups and material reuse for service windows.",
        lifespan=_lifespan,
    )
    app.state.store = handle
    app.state.tokens = TokenService(settings, handle.keyring)
    app.state.rate_limiter = RateLimiter(settings.rate_limit_per_minute)
    problems.install(app)
    metrics.install(app)
    app.add_middleware(BodyLimit, limit=settings.max_body_bytes)
    for module in (
        health,
        jwks,
        oauth,
        clients,
        lookups,
        materials,
        usage,
        sources,
        quarantine,
        catalog,
        promises,
        cases,
    ):
        app.include_router(module.router)
    app.mount("/data-docs", _data_docs(settings), name="data-docs")
    from hub.web.pages import install as install_pages

    install_pages(app)
    return app


def _data_docs(settings: Settings) -> StaticFiles:
    """The Great Expectations Data Docs site the ``data_docs`` DAG builds (counts and rules only)."""
    site = site_dir(settings.home)
    site.mkdir(parents=True, exist_ok=True)
    index = site / "index.html"
    if not index.exists():
        index.write_text(
            "<!doctype html><meta charset=utf-8><title>Data Docs</title>"
            "<p>No Data Docs yet: they are built by the Airflow DAG <code>data_docs</code> after a sync.</p>",
            encoding="utf-8",
        )
    return StaticFiles(directory=site, html=True, check_dir=False)
