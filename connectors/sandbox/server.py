"""One sandbox REST system as a real process: ``python -m connectors.sandbox.server --system police ...``.

- police (公安): ``GET /v1/persons`` and ``GET /v1/households``, cursor pagination (``cursor``, ``limit``),
  incremental by ``updated_since`` (inclusive), header ``X-API-Key``. Answers
  ``{"items": [...], "next_cursor": "..." | null}``. A page never ends inside a run of rows that share
  one ``updated_at``.
- health (卫健): ``GET /v1/births``, the same style.
- tax (税务): ``GET /api/wszm?page=1&size=500&gxsj_start=...``, page/size pagination with ``total``, its own
  field names, header ``Authorization: Bearer <key>``.
- By subject (for the hub's on-demand freshness pulls): ``POST /v1/{dataset}/by-subject`` with
  ``{"subject_id": ...}`` (tax: ``POST /api/wszm/by-subject`` with ``{"nsrsbh": ...}``) answers that subject's
  records like a page. The ID travels in the body, never in a URL.

Fault switches (``POST /_sandbox/fault`` with ``{"mode", "times", "delay"}``, same key): ``error500``,
``timeout`` (answers after ``delay`` seconds), ``drop`` (closes the connection in the middle of the body),
``rate_limit`` (429 with Retry-After), ``none``.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hmac
import json
import sqlite3
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

MAX_LIMIT = 10_000
DATASETS = {"police": ("persons", "households"), "health": ("births",), "tax": ("wszm",)}


@dataclass
class Fault:
    mode: str = "none"
    times: int | None = None
    delay: float = 30.0

    def take(self) -> str:
        """The fault to apply to this request, counting down ``times``."""
        if self.mode == "none":
            return "none"
        if self.times is not None:
            if self.times <= 0:
                self.mode = "none"
                return "none"
            self.times -= 1
        return self.mode


class Store:
    """Read-only access to the system's SQLite file, one connection per thread."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.local = threading.local()

    def connection(self) -> sqlite3.Connection:
        connection = getattr(self.local, "connection", None)
        if connection is None:
            connection = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, check_same_thread=False)
            self.local.connection = connection
        return connection

    def page_after(
        self, dataset: str, since: str | None, after: tuple[str, int] | None, limit: int
    ) -> list[Any]:
        """Up to ``limit`` rows after the position, extended so no run of equal ``updated_at`` is split."""
        db = self.connection()
        where: list[str] = ["dataset = ?"]
        params: list[Any] = [dataset]
        if after:
            # The leading ``updated_at >= ?`` lets the index seek to the position; the OR alone made
            # SQLite walk the index from the dataset's first row on every page (a million-row export
            # slowed to a fifth by its end). One lower bound only, the later of ``since`` and the
            # position: given both, SQLite seeks to the first and walks from there on every page.
            lower = max(since, after[0]) if since else after[0]
            where.append("updated_at >= ? AND (updated_at > ? OR row_seq > ?)")
            params.extend([lower, after[0], after[1]])
        elif since:
            where.append("updated_at >= ?")
            params.append(since)
        sql = f"SELECT row_seq, updated_at, body FROM records WHERE {' AND '.join(where)} "  # noqa: S608
        rows = db.execute(sql + "ORDER BY updated_at, row_seq LIMIT ?", [*params, limit + 1]).fetchall()
        if len(rows) > limit:
            rows = rows[:limit]
            last_seq, last_at = rows[-1][0], rows[-1][1]
            ties = db.execute(
                "SELECT row_seq, updated_at, body FROM records WHERE dataset = ? AND updated_at = ? AND row_seq > ? "
                "ORDER BY row_seq",
                (dataset, last_at, last_seq),
            ).fetchall()
            rows.extend(ties)
            more = True
        else:
            more = False
        return [rows, more]

    def of_subject(self, dataset: str, field: str, subject_id: str) -> list[str]:
        """Every row of one subject (by its ID field in the body), in cursor order."""
        rows = self.connection().execute(
            "SELECT body FROM records WHERE dataset = ? AND json_extract(body, ?) = ? ORDER BY updated_at, row_seq",
            (dataset, f"$.{field}", subject_id),
        ).fetchall()
        return [row[0] for row in rows]

    def page_offset(self, dataset: str, since: str | None, offset: int, size: int) -> tuple[list[str], int]:
        db = self.connection()
        where, params = "dataset = ?", [dataset]
        if since:
            where += " AND updated_at >= ?"
            params.append(since)
        total = db.execute(f"SELECT count(*) FROM records WHERE {where}", params).fetchone()[0]  # noqa: S608
        rows = db.execute(
            f"SELECT body FROM records WHERE {where} ORDER BY updated_at, row_seq LIMIT ? OFFSET ?",  # noqa: S608
            [*params, size, offset],
        ).fetchall()
        return [row[0] for row in rows], int(total)


def _encode_cursor(updated_at: str, row_seq: int) -> str:
    return base64.urlsafe_b64encode(f"{updated_at}|{row_seq}".encode()).decode()


def _decode_cursor(token: str) -> tuple[str, int]:
    updated_at, _, row_seq = base64.urlsafe_b64decode(token.encode()).decode().partition("|")
    return updated_at, int(row_seq)


class DroppedConnection(Exception):
    """Raised after half a body was sent: uvicorn then closes the connection."""


async def _drop_mid_body(scope: Scope, receive: Receive, send: Send) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"100000")]})
    await send({"type": "http.response.body", "body": b'{"items": [{"record_id": "', "more_body": True})
    raise DroppedConnection


def build_app(system: str, database: Path, api_key: str) -> Starlette:
    store = Store(database)
    fault = Fault()

    def authorised(request: Request) -> bool:
        given = request.headers.get("x-api-key", "")
        if system == "tax":
            given = request.headers.get("authorization", "").removeprefix("Bearer ")
        return hmac.compare_digest(given.encode(), api_key.encode())

    async def apply_fault(request: Request) -> Response | None:
        mode = fault.take()
        if mode == "error500":
            return JSONResponse({"error": "internal error"}, status_code=500)
        if mode == "rate_limit":
            return JSONResponse({"error": "slow down"}, status_code=429, headers={"Retry-After": "1"})
        if mode == "timeout":
            await asyncio.sleep(fault.delay)
        if mode == "drop":
            return _DropResponse()
        return None

    def limit_of(request: Request, name: str, default: int) -> int:
        try:
            return max(1, min(MAX_LIMIT, int(request.query_params.get(name, default))))
        except ValueError:
            return default

    async def cursor_page(request: Request) -> Response:
        if not authorised(request):
            return JSONResponse({"error": "unauthorised"}, status_code=401)
        if (faulty := await apply_fault(request)) is not None:
            return faulty
        dataset = request.path_params["dataset"]
        if dataset not in DATASETS[system]:
            return JSONResponse({"error": "no such dataset"}, status_code=404)
        token = request.query_params.get("cursor")
        try:
            after = _decode_cursor(token) if token else None
        except (ValueError, UnicodeDecodeError):
            return JSONResponse({"error": "bad cursor"}, status_code=400)
        rows, more = await asyncio.to_thread(
            store.page_after,
            dataset,
            request.query_params.get("updated_since"),
            after,
            limit_of(request, "limit", 1000),
        )
        next_cursor = json.dumps(_encode_cursor(rows[-1][1], rows[-1][0])) if more and rows else "null"
        body = '{"items":[' + ",".join(row[2] for row in rows) + '],"next_cursor":' + next_cursor + "}"
        return Response(body, media_type="application/json")

    async def tax_page(request: Request) -> Response:
        if not authorised(request):
            return JSONResponse({"code": 401, "msg": "未授权"}, status_code=401)
        if (faulty := await apply_fault(request)) is not None:
            return faulty
        size = limit_of(request, "size", 500)
        try:
            page = max(1, int(request.query_params.get("page", 1)))
        except ValueError:
            page = 1
        bodies, total = await asyncio.to_thread(
            store.page_offset, "wszm", request.query_params.get("gxsj_start"), (page - 1) * size, size
        )
        body = (
            f'{{"code":0,"msg":"成功","page":{page},"size":{size},"total":{total},"data":['
            + ",".join(bodies)
            + "]}"
        )
        return Response(body, media_type="application/json")

    async def by_subject(request: Request) -> Response:
        """One subject's records (the ID in a POST body, never a URL), answered like a page."""
        if not authorised(request):
            return JSONResponse({"error": "unauthorised"}, status_code=401)
        if (faulty := await apply_fault(request)) is not None:
            return faulty
        dataset = request.path_params.get("dataset", "wszm")
        if dataset not in DATASETS[system]:
            return JSONResponse({"error": "no such dataset"}, status_code=404)
        field = "nsrsbh" if system == "tax" else "subject_id"
        try:
            subject_id = str((await request.json())[field])
        except (ValueError, KeyError, TypeError):
            return JSONResponse({"error": f"the body must be {{{field!r}: ...}}"}, status_code=400)
        bodies = await asyncio.to_thread(store.of_subject, dataset, field, subject_id)
        key = "data" if system == "tax" else "items"
        return Response(f'{{"{key}":[' + ",".join(bodies) + "]}", media_type="application/json")

    async def set_fault(request: Request) -> Response:
        if not authorised(request):
            return JSONResponse({"error": "unauthorised"}, status_code=401)
        payload = await request.json()
        fault.mode = str(payload.get("mode", "none"))
        fault.times = payload.get("times")
        fault.delay = float(payload.get("delay", 30.0))
        return JSONResponse({"mode": fault.mode, "times": fault.times})

    async def health(request: Request) -> Response:
        return JSONResponse({"system": system, "status": "ok"})

    routes = [Route("/healthz", health), Route("/_sandbox/fault", set_fault, methods=["POST"])]
    if system == "tax":
        routes.append(Route("/api/wszm/by-subject", by_subject, methods=["POST"]))
        routes.append(Route("/api/wszm", tax_page))
    else:
        routes.append(Route("/v1/{dataset}/by-subject", by_subject, methods=["POST"]))
        routes.append(Route("/v1/{dataset}", cursor_page))
    return Starlette(routes=routes)


class _DropResponse(Response):
    def __init__(self) -> None:
        super().__init__()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await _drop_mid_body(scope, receive, send)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--system", choices=sorted(DATASETS), required=True)
    parser.add_argument("--database", type=Path, required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--key-file", type=Path, required=True, help="file holding the API key (not argv)")
    arguments = parser.parse_args()
    api_key = arguments.key_file.read_text(encoding="utf-8").strip()
    app = build_app(arguments.system, arguments.database, api_key)
    uvicorn.run(app, host="127.0.0.1", port=arguments.port, log_level="warning", access_log=False)


if __name__ == "__main__":
    main()
