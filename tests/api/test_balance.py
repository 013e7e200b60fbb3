"""A hub worker's share of the server's connections (`hub.api.balance`): only a worker holding more than
its share asks a client to reconnect, one client per look at the shares, and nothing else changes."""

from __future__ import annotations

import asyncio
from typing import Any

from hub.api.balance import CHECK_INTERVAL, ConnectionBalance


async def _app(scope: Any, receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": b"ok"})


class _Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _respond(balance: ConnectionBalance) -> list[dict[str, Any]]:
    sent: list[dict[str, Any]] = []

    async def send(message: Any) -> None:
        sent.append(message)

    async def receive() -> Any:
        return {"type": "http.request", "body": b"", "more_body": False}

    asyncio.run(balance({"type": "http", "method": "GET", "path": "/healthz", "headers": []}, receive, send))
    return sent


def _asks_to_reconnect(balance: ConnectionBalance) -> bool:
    start, body = _respond(balance)
    assert start["status"] == 200 and body["body"] == b"ok"
    assert (b"content-type", b"text/plain") in start["headers"]
    return (b"connection", b"close") in start["headers"]


def test_only_a_worker_over_its_share_sheds_one_connection_per_look() -> None:
    clock = _Clock()
    counts = [0, 13]
    held = [19]
    over = ConnectionBalance(_app, counts=counts, index=0, open_connections=lambda: held[0], clock=clock)
    under = ConnectionBalance(_app, counts=counts, index=1, open_connections=lambda: 13, clock=clock)

    assert _asks_to_reconnect(over)
    assert counts == [19, 13], "a look publishes the worker's count"
    assert not _asks_to_reconnect(over), "one connection per look"
    assert not _asks_to_reconnect(under)
    clock.now += CHECK_INTERVAL
    held[0] = 18  # the client reconnected, and the hash sent it to the other worker
    counts[1] = 14
    assert _asks_to_reconnect(over)
    clock.now += CHECK_INTERVAL
    held[0] = 16
    counts[1] = 16
    assert not _asks_to_reconnect(over), "level: nobody is asked"
    clock.now += CHECK_INTERVAL
    held[0] = 17
    counts[1] = 16
    assert not _asks_to_reconnect(over), "33 connections: 17 is the share"
