"""Keep a multi-worker server's keep-alive connections spread evenly over its workers.

``onecert serve --workers N`` gives each worker its own ``SO_REUSEPORT`` socket, and the kernel picks the
worker of each new connection by a hash of its addresses: even on average, but a few long-lived
connections (a service centre's proxy, a load generator) often split unevenly. 32 connections split 19 to
13 in ``bench lookup`` on PostgreSQL: the worker holding 19 answered its clients about half as slowly
again as the other, which had CPU to spare, and set the p99.

So each worker publishes how many connections it holds in an array the workers share. A worker holding
more than its share (all of them over the workers, rounded up) asks one client at a time to reconnect:
its next response carries ``Connection: close``, which every HTTP/1.1 client honours, and the client's
new connection is hashed afresh. Nothing else about the response changes.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, MutableSequence

from starlette.types import ASGIApp, Message, Receive, Scope, Send

#: Seconds between two looks at the shares: at most one connection is asked to reconnect in each, so
#: the one before has closed, and the counts the workers publish have caught up. Between looks a
#: request costs one reading of the clock.
CHECK_INTERVAL = 0.05
#: Seconds between two publications of a worker's count when it has no requests to publish it with.
PUBLISH_INTERVAL = 0.1


class ConnectionBalance:
    """ASGI wrapper of one worker's app.

    Args:
        counts: one slot per worker, shared between the worker processes (a ``multiprocessing.RawArray``).
        index: this worker's slot.
        open_connections: how many connections this worker holds now.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        counts: MutableSequence[int],
        index: int,
        open_connections: Callable[[], int],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.app = app
        self.counts = counts
        self.index = index
        self.open_connections = open_connections
        self.clock = clock
        self._next_check = 0.0

    def should_shed(self) -> bool:
        """Whether this response asks its client to reconnect: at a look at the shares (one every
        :data:`CHECK_INTERVAL`), when this worker holds more than its share."""
        now = self.clock()
        if now < self._next_check:
            return False
        self._next_check = now + CHECK_INTERVAL
        return self._published() > -(-sum(self.counts) // len(self.counts))

    def _published(self) -> int:
        """This worker's connections, now, also written to its slot for the others to see."""
        mine = self.counts[self.index] = self.open_connections()
        return mine

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":  # the server's life: publish the count even with no requests
            publisher = asyncio.get_running_loop().create_task(self._publish())
            try:
                await self.app(scope, receive, send)
            finally:
                publisher.cancel()
            return
        if scope["type"] != "http" or not self.should_shed():
            await self.app(scope, receive, send)
            return

        async def closing(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), (b"connection", b"close")]}
            await send(message)

        await self.app(scope, receive, closing)

    async def _publish(self) -> None:
        while True:
            self._published()
            await asyncio.sleep(PUBLISH_INTERVAL)
