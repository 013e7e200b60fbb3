"""``POST /v1/lookups``: the one-certificate lookup, answered with a signed body."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends
from fastapi.responses import Response

from hub.api.deps import Caller, KeyringDep, SessionDep, get_handle, require_scope
from hub.api.jose import detached_jws
from hub.api.services.lookups import LookupRequest, LookupResponse, lookup
from materials_store.runtime import StoreHandle

router = APIRouter(prefix="/v1", tags=["lookups"])


@router.post(
    "/lookups",
    response_model=LookupResponse,
    responses={200: {"headers": {"X-Signature": {"description": "detached compact JWS over the body"}}}},
)
def post_lookup(
    request: LookupRequest,
    session: SessionDep,
    keyring: KeyringDep,
    caller: Annotated[Caller, Depends(require_scope("lookup"))],
    handle: Annotated[StoreHandle, Depends(get_handle)],
) -> Response:
    """What is on file for this ID; with ``service_item`` or ``bundle``, what that application needs and
    whether it can be accepted now (``readiness``). The body is signed: ``X-Signature`` is a detached JWS
    (EdDSA)."""
    result = lookup(session, keyring=keyring, caller=caller.client, request=request, handle=handle)
    body = result.model_dump_json().encode("utf-8")
    signature = detached_jws(body, keyring.current_signing_key)
    return Response(body, media_type="application/json", headers={"X-Signature": signature})
