"""The load generator of ``onecert bench lookup``: a separate process driving one endpoint at a fixed
concurrency for a fixed time. Prints one JSON line: requests, errors, seconds, p50 and p99 in ms."""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import time

import httpx

from hub.bench.synthetic import person_id


async def _worker(client: httpx.AsyncClient, args: argparse.Namespace, deadline: float, seed: int,
                  timings: list[float], errors: list[int]) -> None:  # fmt: skip
    rng = random.Random(seed)
    headers = {"Authorization": f"Bearer {args.token}"}
    while time.perf_counter() < deadline:
        start = time.perf_counter()
        if args.target == "lookup":
            body = {
                "id": person_id(rng.randrange(args.subjects)).value,
                "case_ref": f"B-{seed}",
                "purpose": "bench",
            }
            response = await client.post("/v1/lookups", json=body, headers=headers)
            ok = response.status_code == 200 and "X-Signature" in response.headers
        else:
            response = await client.get("/healthz")
            ok = response.status_code == 200
        timings.append((time.perf_counter() - start) * 1000)
        if not ok:
            errors.append(response.status_code)


async def run(args: argparse.Namespace) -> dict[str, float]:
    timings: list[float] = []
    errors: list[int] = []
    limits = httpx.Limits(max_connections=args.concurrency, max_keepalive_connections=args.concurrency)
    async with httpx.AsyncClient(base_url=args.url, limits=limits, timeout=30) as client:
        warmup = time.perf_counter() + min(2.0, args.seconds / 5)
        await asyncio.gather(*(_worker(client, args, warmup, i, [], []) for i in range(args.concurrency)))
        start = time.perf_counter()
        deadline = start + args.seconds
        await asyncio.gather(
            *(_worker(client, args, deadline, 1000 + i, timings, errors) for i in range(args.concurrency))
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
