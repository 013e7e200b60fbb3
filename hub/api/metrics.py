"""Prometheus metrics: requests and latencies by route, lookups by outcome, pushes."""

from __future__ import annotations

import time

from fastapi import FastAPI, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from starlette.middleware.base import BaseHTTPMiddleware, RequestResponseEndpoint


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


class MetricsMiddleware(BaseHTTPMiddleware):
    def __init__(self, app: object, metrics: Metrics) -> None:
        super().__init__(app)  # type: ignore[arg-type]
        self.metrics = metrics

    async def dispatch(self, request: Request, call_next: RequestResponseEndpoint) -> Response:
        start = time.perf_counter()
        response = await call_next(request)
        route = request.scope.get("route")
        # The route template, never the concrete path (paths may carry material ids).
        template = getattr(route, "path", "unmatched")
        self.metrics.requests.labels(request.method, template, str(response.status_code)).inc()
        self.metrics.latency.labels(template).observe(time.perf_counter() - start)
        if template == "/v1/lookups":
            outcome = {200: "found", 404: "nothing_on_file", 422: "invalid_id"}.get(
                response.status_code, "refused"
            )
            self.metrics.lookups.labels(outcome).inc()
        elif template == "/v1/materials" and request.method == "POST":
            self.metrics.pushes.labels(str(response.status_code)).inc()
        return response


def install(app: FastAPI) -> Metrics:
    metrics = Metrics()
    app.add_middleware(MetricsMiddleware, metrics=metrics)

    @app.get("/metrics", include_in_schema=False)
    def metrics_endpoint() -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    return metrics
