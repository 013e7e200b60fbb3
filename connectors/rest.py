"""REST transport: httpx, pluggable paginators with loop detection, backoff on 429/5xx/timeouts/dropped
connections (tenacity, honouring Retry-After), and a client-side rate limit.

Resume state: the ``updated_at`` of the last committed row. Pages are tie-complete (see
``connectors.base.tie_complete``), so a resumed read asks ``updated_since=<state>`` (inclusive) and drops the
rows stamped exactly ``<state>``: they were all committed.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any, ClassVar

import httpx
import orjson
from tenacity import RetryCallState, retry, retry_if_exception_type, stop_after_attempt

from connectors.base import DEFAULT_STREAM, Connector, Page, tie_complete
from materials_store.errors import FatalError, RetriableError


class RateLimiter:
    """At most ``per_second`` requests per second (0: unlimited)."""

    def __init__(self, per_second: float) -> None:
        self.interval = 1.0 / per_second if per_second > 0 else 0.0
        self.next_at = 0.0
        self.lock = threading.Lock()

    def wait(self) -> None:
        if not self.interval:
            return
        with self.lock:
            now = time.monotonic()
            delay = self.next_at - now
            self.next_at = max(now, self.next_at) + self.interval
        if delay > 0:
            time.sleep(delay)


class Paginator:
    """How a source pages. ``first`` and ``next`` return query parameters, or None when done."""

    def first(self, since: str | None, size: int) -> dict[str, Any]:
        raise NotImplementedError

    def next(self, response: dict[str, Any], params: dict[str, Any]) -> dict[str, Any] | None:
        raise NotImplementedError

    def items(self, response: dict[str, Any]) -> list[dict[str, Any]]:
        raise NotImplementedError


class CursorPaginator(Paginator):
    """``?cursor=...&limit=...``; the response names the next cursor. A repeated cursor is a loop."""

    def __init__(self, *, cursor_param: str = "cursor", since_param: str = "updated_since",
                 limit_param: str = "limit", items_key: str = "items", next_key: str = "next_cursor") -> None:  # fmt: skip
        self.cursor_param, self.since_param, self.limit_param = cursor_param, since_param, limit_param
        self.items_key, self.next_key = items_key, next_key
        self.seen: set[str] = set()

    def first(self, since: str | None, size: int) -> dict[str, Any]:
        self.seen.clear()
        params: dict[str, Any] = {self.limit_param: size}
        if since:
            params[self.since_param] = since
        return params

    def next(self, response: dict[str, Any], params: dict[str, Any]) -> dict[str, Any] | None:
        token = response.get(self.next_key)
        if not token:
            return None
        if token in self.seen:
            raise FatalError("the source returned a cursor it had returned before (pagination loop)")
        self.seen.add(token)
        return {**params, self.cursor_param: token}

    def items(self, response: dict[str, Any]) -> list[dict[str, Any]]:
        return list(response.get(self.items_key) or [])


class PageNumberPaginator(Paginator):
    """``?page=N&size=M`` with a ``total``; stops at the last page, or on an empty or repeated page."""

    def __init__(self, *, since_param: str, items_key: str = "data", total_key: str = "total") -> None:
        self.since_param, self.items_key, self.total_key = since_param, items_key, total_key
        self.last_first_key: Any = None

    def first(self, since: str | None, size: int) -> dict[str, Any]:
        self.last_first_key = None
        params: dict[str, Any] = {"page": 1, "size": size}
        if since:
            params[self.since_param] = since
        return params

    def next(self, response: dict[str, Any], params: dict[str, Any]) -> dict[str, Any] | None:
        items = self.items(response)
        total = int(response.get(self.total_key) or 0)
        if not items or params["page"] * params["size"] >= total:
            return None
        key = repr(items[0])
        if key == self.last_first_key:
            raise FatalError("the source returned the same page twice (pagination loop)")
        self.last_first_key = key
        return {**params, "page": params["page"] + 1}

    def items(self, response: dict[str, Any]) -> list[dict[str, Any]]:
        return list(response.get(self.items_key) or [])


def _wait(state: RetryCallState) -> float:
    """Exponential backoff from the source's config, or the Retry-After a 429 names."""
    error = state.outcome.exception() if state.outcome else None
    connector: RestConnector = state.args[0]
    retry_after = getattr(error, "fields", {}).get("retry_after") if error else None
    if retry_after is not None:
        return min(float(retry_after), 60.0)
    return float(min(connector.config.backoff * 2 ** (state.attempt_number - 1), 30.0))


class RestConnector(Connector):
    """A REST source: declare ``path``, ``paginator()`` and ``auth_headers()``."""

    path: ClassVar[str]
    #: The source's by-subject endpoint (POST ``{subject_key: id}``, answered like a page), if it has one.
    subject_path: ClassVar[str | None] = None
    subject_key: ClassVar[str] = "subject_id"

    def __init__(self, config: Any) -> None:
        super().__init__(config)
        if not config.base_url:
            raise FatalError(f"source {self.name} has no URL configured")
        self.client = httpx.Client(
            base_url=config.base_url, timeout=config.timeout, headers=self.auth_headers()
        )
        self.limiter = RateLimiter(config.rate_limit)

    def paginator(self) -> Paginator:
        return CursorPaginator()

    def auth_headers(self) -> dict[str, str]:
        key = self.config.api_key.get_secret_value() if self.config.api_key else ""
        return {"X-API-Key": key}

    def fetch(self, params: dict[str, Any]) -> dict[str, Any]:
        """One page, retried on retriable failures with backoff."""
        return self._fetch_with_retry(params)

    def fetch_subject(self, subject_id: str) -> list[dict[str, Any]]:
        """Every current record of one subject, in contract field names (an on-demand freshness pull).

        One attempt within the configured timeout: the caller is waiting. The ID travels in a POST body,
        never in a URL.

        Raises:
            FatalError: this source has no by-subject endpoint (``subject_path``) or refused the request.
            RetriableError: the source is down, timed out or failed.
        """
        if self.subject_path is None:
            raise FatalError(f"{self.name}: the source cannot be queried by subject", source=self.name)
        body = self._fetch_once({}, path=self.subject_path, json={self.subject_key: subject_id})
        return [self.map_row(item) for item in self.paginator().items(body)]

    def _fetch_once(
        self, params: dict[str, Any], *, path: str | None = None, json: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        self.limiter.wait()
        try:
            if json is None:
                response = self.client.get(path or self.path, params=params)
            else:
                response = self.client.post(path or self.path, params=params, json=json)
        except httpx.TimeoutException:
            raise RetriableError(f"{self.name}: the source timed out", source=self.name) from None
        except httpx.TransportError as error:  # refused, reset, dropped mid-body
            raise RetriableError(f"{self.name}: {type(error).__name__}", source=self.name) from None
        if response.status_code == 429:
            raise RetriableError(
                f"{self.name}: rate limited",
                source=self.name,
                retry_after=response.headers.get("retry-after"),
            )
        if response.status_code >= 500:
            raise RetriableError(f"{self.name}: server error {response.status_code}", source=self.name)
        if response.status_code >= 400:
            raise FatalError(f"{self.name}: refused with {response.status_code}", source=self.name)
        try:
            body: dict[str, Any] = orjson.loads(response.content)
        except ValueError:
            raise RetriableError(
                f"{self.name}: the body is not JSON (truncated?)", source=self.name
            ) from None
        return body

    def _fetch_with_retry(self, params: dict[str, Any]) -> dict[str, Any]:
        attempts = max(1, self.config.attempts)
        retrying = retry(
            retry=retry_if_exception_type(RetriableError),
            stop=stop_after_attempt(attempts),
            wait=_wait,
            reraise=True,
        )
        return retrying(type(self)._fetch_once)(self, params)

    def raw_pages(self, since: str | None) -> Iterator[list[dict[str, Any]]]:
        paginator = self.paginator()
        params: dict[str, Any] | None = paginator.first(since, self.config.page_size)
        while params is not None:
            body = self.fetch(params)
            rows = [self.map_row(item) for item in paginator.items(body)]
            if since:
                rows = [row for row in rows if row.get(self.cursor_field) != since]
            yield rows
            params = paginator.next(body, params)

    def pages(self, state: dict[str, str]) -> Iterator[Page]:
        since = state.get(DEFAULT_STREAM)
        for rows in tie_complete(self.raw_pages(since), self.cursor_field):
            yield Page(rows=rows, commits=[(DEFAULT_STREAM, str(rows[-1][self.cursor_field]))])

    def close(self) -> None:
        self.client.close()
