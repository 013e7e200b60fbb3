"""The load generator of ``onecert bench lookup``: a separate process driving one endpoint at a fixed
concurrency for a fixed time over keep-alive HTTP/1.1 connections (raw asyncio streams, so the generator
is not the bottleneck). Prints one JSON line: requests, errors, seconds, p50 and p99 in ms."""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import time
from urllib.parse import urlsplit

from hub.bench.synthetic import person_id


class Connection:
    """One keep-alive HTTP/1.1 connection; requests in sequence, bodies by Content-Length. A response
    with ``Connection: close`` ends it, and the next request opens another (as a hub worker holding
    more than its share of connections asks: :mod:`hub.api.balance`)."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def request(
        self, method: str, path: str, headers: dict[str, str], body: bytes = b""
    ) -> tuple[int, dict[str, str]]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        assert self.reader is not None
        lines = [
            f"{method} {path} HTTP/1.1",
            f"Host: {self.host}:{self.port}",
            f"Content-Length: {len(body)}",
        ]
        lines += [f"{k}: {v}" for k, v in headers.items()]
        self.writer.write(("\r\n".join(lines) + "\r\n\r\n").encode() + body)
        head = await self.reader.readuntil(b"\r\n\r\n")
        status_line, *header_lines = head.decode("latin-1").split("\r\n")
        response_headers = {}
        for line in header_lines:
            if ":" in line:
                name, _, value = line.partition(":")
                response_headers[name.strip().lower()] = value.strip()
        await self.reader.readexactly(int(response_headers.get("content-length", "0")))
        if response_headers.get("connection", "").lower() == "close":  # the next request reconnects
            self.writer.close()
            self.reader = self.writer = None
        return int(status_line.split()[1]), response_headers


async def _worker(
    args: argparse.Namespace, deadline: float, seed: int, timings: list[float], errors: list[int]
) -> None:
    url = urlsplit(args.url)
    connection = Connection(url.hostname or "127.0.0.1", url.port or 80)
    rng = random.Random(seed)
    auth = {"Authorization": f"Bearer {args.token}"}
    while time.perf_counter() < deadline:
        start = time.perf_counter()
        if args.target == "lookup":
            body = json.dumps({"id": person_id(rng.randrange(args.subjects)).value, "case_ref": f"B-{seed}",
                               "purpose": "bench"}).encode()  # fmt: skip
            status, headers = await connection.request(
                "POST", "/v1/lookups", {**auth, "Content-Type": "application/json"}, body
            )
            ok = status == 200 and "x-signature" in headers
        else:
            status, _ = await connection.request("GET", "/healthz", {})
            ok = status == 200
        timings.append((time.perf_counter() - start) * 1000)
        if not ok:
            errors.append(status)


async def run(args: argparse.Namespace) -> dict[str, float]:
    timings: list[float] = []
    errors: list[int] = []
    warmup = time.perf_counter() + min(2.0, args.seconds / 5)
    await asyncio.gather(*(_worker(args, warmup, i, [], []) for i in range(args.concurrency)))
    start = time.perf_counter()
    deadline = start + args.seconds
    await asyncio.gather(
        *(_worker(args, deadline, 1000 + i, timings, errors) for i in range(args.concurrency))
    )
    elapsed = time.perf_counter() - start
    quantiles = statistics.quantiles(timings, n=100) if len(timings) > 100 else [0.0] * 99
    return {"requests": len(timings), "errors": len(errors), "seconds": elapsed,
            "p50_ms": quantiles[49], "p99_ms": quantiles[98]}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    parser.add_argument("--token", default="")
    parser.add_argument("--target", choices=("lookup", "trivial"), required=True)
    parser.add_argument("--subjects", type=int, default=1)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=20.0)
    print(json.dumps(asyncio.run(run(parser.parse_args()))))


if __name__ == "__main__":
    main()
