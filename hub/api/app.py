"""The app factory: ``create_app(settings)`` builds the hub's FastAPI application."""

from __future__ import annotations

from fastapi import FastAPI
from starlette.types import ASGIApp, Receive, Scope, Send

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
    usage,
)
from materials_store.runtime import open_store
from materials_store.settings import Settings, get_settings


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


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the API: open the store (refusing to start without real keys outside dev mode), then join
    the routers."""
    settings = settings or get_settings()
    handle = open_store(settings)
    app = FastAPI(
        title="OneCert Hub",
        version="0.1.0",
        description="一证通办 · 材料共享复用: one-certificate lookups and material reuse for service windows.",
    )
    app.state.store = handle
    app.state.tokens = TokenService(settings, handle.keyring)
    app.state.rate_limiter = RateLimiter(settings.rate_limit_per_minute)
    problems.install(app)
    metrics.install(app)
    app.add_middleware(BodyLimit, limit=settings.max_body_bytes)
    for module in (health, jwks, oauth, clients, lookups, materials, usage, catalog, promises, cases):
        app.include_router(module.router)
    return app
