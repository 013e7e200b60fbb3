"""``GET /v1/materials/{id}``: reuse a material listed by the case's lookup, sealed by the hub."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Header, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from hub.api.deps import Caller, KeyringDep, SessionDep, require_scope
from hub.api.services.materials import SealedMaterial, read_material
from hub.api.services.push import (
    BulkResult,
    PushResult,
    RevokeRequest,
    RevokeResult,
    push_bulk,
    push_material,
    revoke_material,
)
from materials_store.errors import DataError

router = APIRouter(prefix="/v1/materials", tags=["materials"])


async def _jose_body(request: Request) -> str:
    """The compact JWS a department sends as ``application/jose``."""
    if request.headers.get("content-type", "").split(";")[0].strip() != "application/jose":
        raise DataError("the body must be a compact JWS sent as application/jose")
    return (await request.body()).decode("ascii", errors="replace").strip()


@router.get("/{material_id}")
def get_material_route(
    material_id: str,
    session: SessionDep,
    keyring: KeyringDep,
    caller: Annotated[Caller, Depends(require_scope("read"))],
    x_case_ref: Annotated[str, Header(min_length=1, max_length=64, description="办件号 of the case")],
) -> SealedMaterial:
    """The material, its payload and the hub's seal (a JWS over its RFC 8785 canonical JSON)."""
    return read_material(
        session, keyring=keyring, caller=caller.client, material_id=material_id, case_ref=x_case_ref
    )


@router.post("", status_code=201, responses={200: {"model": PushResult}, 409: {"description": "key reused"}})
async def push(
    request: Request,
    session: SessionDep,
    keyring: KeyringDep,
    caller: Annotated[Caller, Depends(require_scope("push"))],
    idempotency_key: Annotated[str, Header(min_length=8, max_length=128)],
) -> JSONResponse:
    """A department pushes a result: the body is a compact JWS (``application/jose``) signed with its key."""
    compact = await _jose_body(request)
    result, created = await run_in_threadpool(  # the store is synchronous; keep the event loop free
        push_material,
        session,
        keyring=keyring,
        caller=caller.client,
        compact=compact,
        idempotency_key=idempotency_key,
    )
    return JSONResponse(result.model_dump(), status_code=201 if created else 200)


@router.post("/bulk")
async def push_many(
    request: Request,
    session: SessionDep,
    keyring: KeyringDep,
    caller: Annotated[Caller, Depends(require_scope("push"))],
    idempotency_key: Annotated[str, Header(min_length=8, max_length=128)],
) -> BulkResult:
    """Up to 1,000 materials in one signed body ``{"items": [...]}``; each item's result is reported."""
    compact = await _jose_body(request)
    return await run_in_threadpool(
        push_bulk,
        session,
        keyring=keyring,
        caller=caller.client,
        compact=compact,
        idempotency_key=idempotency_key,
    )


@router.post("/{material_id}/revoke")
def revoke_route(
    material_id: str,
    body: RevokeRequest,
    session: SessionDep,
    caller: Annotated[Caller, Depends(require_scope("revoke"))],
) -> RevokeResult:
    """The issuing department revokes a material; it is never returned as on file again."""
    return revoke_material(session, caller=caller.client, material_id=material_id, reason=body.reason)
