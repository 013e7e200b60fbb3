"""Errors grouped by what the caller should do about them.

- ``ConfigurationError``: the operator must fix settings or keys; retrying will not help.
- ``FatalError``: this run cannot succeed (a 4xx from a source, a broken invariant); stop it.
- ``RetriableError``: transient (timeouts, 429, 5xx); retry with backoff.
- ``DataError``: the input itself is wrong (an invalid ID, a contract violation); report it, keep the rest.

Every error carries structured fields. Messages never contain a citizen ID, a name or a payload.
"""

from __future__ import annotations

from typing import Any, ClassVar


class OneCertError(Exception):
    """Root of every error the project raises on purpose."""

    #: Stable problem type (RFC 9457 ``type``); never changes once published.
    problem_type: ClassVar[str] = "urn:onecert:problem:internal"
    title: ClassVar[str] = "Internal error"
    status: ClassVar[int] = 500

    def __init__(self, detail: str, **fields: Any) -> None:
        super().__init__(detail)
        self.detail = detail
        self.fields = fields

    def __str__(self) -> str:
        return self.detail


class ConfigurationError(OneCertError):
    problem_type = "urn:onecert:problem:configuration"
    title = "Configuration error"


class FatalError(OneCertError):
    problem_type = "urn:onecert:problem:fatal"
    title = "Unrecoverable error"


class RetriableError(OneCertError):
    problem_type = "urn:onecert:problem:unavailable"
    title = "Temporarily unavailable"
    status = 503


class DataError(OneCertError):
    problem_type = "urn:onecert:problem:invalid-data"
    title = "Invalid data"
    status = 422


class ContractViolation(DataError):
    problem_type = "urn:onecert:problem:contract-violation"
    title = "Data contract violated"


class NotFound(OneCertError):
    problem_type = "urn:onecert:problem:not-found"
    title = "Not found"
    status = 404


class Conflict(OneCertError):
    problem_type = "urn:onecert:problem:conflict"
    title = "Conflict"
    status = 409
