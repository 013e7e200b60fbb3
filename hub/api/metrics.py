"""Prometheus metrics: requests and latencies by route, lookups by outcome, pushes."""

from __future__ import annotations

import time

from fastapi import FastAPI, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from starlette.types import ASGIApp, Message, Receive, Scope, Send


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "onecert_requests_total", "HTTP requests", ["method", "route", "status"], registry=self.registry
        )
        self.latency = Histogram(
            "onecert_request_seconds", "HTTP request latency", ["route"], registry=self.registry,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
        )  # fmt: skip
        self.lookups = Counter(
            "onecert_lookups_total", "Lookups by outcome", ["outcome"], registry=self.registry
        )
        self.pushes = Counter(
            "onecert_pushes_total", "Department pushes by status", ["status"], registry=self.registry
        )


class MetricsMiddleware:
    """Plain ASGI middleware (no per-request task group): counts and times every HTTP request."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def capture(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, capture)
        finally:
            # The route template, never the concrete path (paths may carry material ids).
            template = getattr(scope.get("route"), "path", "unmatched")
            method = scope["method"]
            self.metrics.requests.labels(method, template, str(status)).inc()
            self.metrics.latency.labels(template).observe(time.perf_counter() - start)
            if template == "/v1/lookups":
                outcome = {200: "found", 404: "nothing_on_file", 422: "invalid_id"}.get(status, "refused")
                self.metrics.lookups.labels(outcome).inc()
            elif template == "/v1/materials" and method == "POST":
                self.metrics.pushes.labels(str(status)).inc()


def install(app: FastAPI) -> Metrics:
    metrics = Metrics()
    app.add_middleware(MetricsMiddleware, metrics=metrics)

    @app.get("/metrics", include_in_schema=False)
    def metrics_endpoint() -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    return metrics
