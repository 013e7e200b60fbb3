"""``GET /v1/materials/{id}``: reuse a material listed by the case's lookup, sealed by the hub."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Header

from hub.api.deps import Caller, KeyringDep, SessionDep, require_scope
from hub.api.services.materials import SealedMaterial, read_material

router = APIRouter(prefix="/v1/materials", tags=["materials"])


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
