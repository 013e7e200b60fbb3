"""RFC 9457 problem details. Every error the API returns is ``application/problem+json`` with a stable
``type``; none carries an ID, a name, a payload or a stack trace."""

from __future__ import annotations

from typing import Any, ClassVar

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from materials_store.errors import OneCertError

PROBLEM_JSON = "application/problem+json"


class Unauthorized(OneCertError):
    problem_type: ClassVar[str] = "urn:onecert:problem:unauthorized"
    title: ClassVar[str] = "Unauthorized"
    status: ClassVar[int] = 401


class InvalidClient(Unauthorized):
    """A client assertion that does not authenticate its client (RFC 6749 ``invalid_client``)."""

    problem_type: ClassVar[str] = "urn:onecert:problem:invalid-client"
    title: ClassVar[str] = "Invalid client"


class Forbidden(OneCertError):
    problem_type: ClassVar[str] = "urn:onecert:problem:forbidden"
    title: ClassVar[str] = "Forbidden"
    status: ClassVar[int] = 403


class PayloadTooLarge(OneCertError):
    problem_type: ClassVar[str] = "urn:onecert:problem:payload-too-large"
    title: ClassVar[str] = "Payload too large"
    status: ClassVar[int] = 413


def problem(status: int, problem_type: str, title: str, detail: str, **extra: Any) -> JSONResponse:
    body = {"type": problem_type, "title": title, "status": status, "detail": detail, **extra}
    headers = {"WWW-Authenticate": 'Bearer error="invalid_token"'} if status == 401 else {}
    if status == 429 and "retry_after" in extra:
        headers["Retry-After"] = str(extra["retry_after"])
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON, headers=headers or None)


def install(app: FastAPI) -> None:
    """Map domain errors, validation errors and HTTP errors to problem+json."""

    @app.exception_handler(OneCertError)
    async def domain_error(request: Request, error: OneCertError) -> JSONResponse:
        extra = {k: v for k, v in error.fields.items() if k in ("reason", "error", "retry_after")}
        return problem(error.status, error.problem_type, error.title, error.detail, **extra)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, error: RequestValidationError) -> JSONResponse:
        # Name the fields and what is wrong with them, never the submitted values.
        errors = [
            {"location": ".".join(str(p) for p in item.get("loc", ())), "message": item.get("msg", "")}
            for item in error.errors()
        ]
        return problem(
            422,
            "urn:onecert:problem:invalid-request",
            "Invalid request",
            "the request is malformed",
            errors=errors,
        )

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, error: StarletteHTTPException) -> JSONResponse:
        slug = {404: "not-found", 405: "method-not-allowed", 413: "payload-too-large"}.get(
            error.status_code, "http"
        )
        return problem(error.status_code, f"urn:onecert:problem:{slug}", str(error.detail), str(error.detail))

    @app.exception_handler(Exception)
    async def unexpected(request: Request, error: Exception) -> JSONResponse:
        return problem(
            500, "urn:onecert:problem:internal", "Internal error", "the hub could not complete the request"
        )
