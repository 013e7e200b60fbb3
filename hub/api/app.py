"""The app factory: ``create_app(settings)`` builds the hub's FastAPI application."""

from __future__ import annotations

from fastapi import FastAPI, Request
from starlette.middleware.base import BaseHTTPMiddleware, RequestResponseEndpoint
from starlette.responses import Response

from hub.api import metrics, problems
from hub.api.jose import TokenService
from hub.api.ratelimit import RateLimiter
from hub.api.routes import clients, health, jwks, lookups, materials, oauth, usage
from materials_store.runtime import open_store
from materials_store.settings import Settings, get_settings


class BodyLimit(BaseHTTPMiddleware):
    """Refuse bodies over the configured size before reading them (413)."""

    def __init__(self, app: object, limit: int) -> None:
        super().__init__(app)  # type: ignore[arg-type]
        self.limit = limit

    async def dispatch(self, request: Request, call_next: RequestResponseEndpoint) -> Response:
        length = request.headers.get("content-length")
        if length is not None and (not length.isdigit() or int(length) > self.limit):
            return problems.problem(
                413, problems.PayloadTooLarge.problem_type, "Payload too large",
                f"request bodies are limited to {self.limit} bytes",
            )  # fmt: skip
        return await call_next(request)


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
    for module in (health, jwks, oauth, clients, lookups, materials, usage):
        app.include_router(module.router)
    return app
