"""``GET /v1/clients/me``: who the hub thinks the caller is, and what it may do."""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel

from hub.api.deps import CallerDep

router = APIRouter(prefix="/v1/clients", tags=["clients"])


class Me(BaseModel):
    client_id: str
    kind: str
    name: str
    org: str | None
    region: str | None
    types: list[str]
    scopes: list[str]


@router.get("/me")
def me(caller: CallerDep) -> Me:
    client = caller.client
    return Me(
        client_id=client.id, kind=client.kind, name=client.name, org=client.org, region=client.region,
        types=list(client.types), scopes=sorted(caller.scopes),
    )  # fmt: skip
