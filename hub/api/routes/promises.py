"""``/v1/promises``: 容缺 promises: record one for a case; list open, overdue or closed ones."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query
from fastapi.responses import JSONResponse

from hub.api.deps import Caller, CallerDep, KeyringDep, SessionDep, require_scope
from hub.api.problems import Forbidden
from hub.api.services.promises import PromiseList, PromiseOut, PromiseRequest, create_promise, promises_of
from materials_store.cases import PromiseState

router = APIRouter(prefix="/v1/promises", tags=["promises"])


@router.post("", status_code=201, response_model=PromiseOut, responses={200: {"model": PromiseOut}})
def post_promise(
    request: PromiseRequest,
    session: SessionDep,
    keyring: KeyringDep,
    caller: Annotated[Caller, Depends(require_scope("lookup"))],
) -> JSONResponse:
    """A window records that its case was accepted without a material, due by a date (201; the same
    promise again: 200)."""
    promise, created = create_promise(session, keyring=keyring, caller=caller.client, request=request)
    return JSONResponse(promise.model_dump(mode="json"), status_code=201 if created else 200)


@router.get("")
def get_promises(
    session: SessionDep,
    keyring: KeyringDep,
    caller: CallerDep,
    state: Annotated[PromiseState | None, Query()] = None,
) -> PromiseList:
    """A window's own promises; a steward's view holds everyone's. ``state``: open, overdue or closed."""
    if "lookup" not in caller.scopes and "steward" not in caller.scopes:
        raise Forbidden("promises are for windows and stewards")
    return promises_of(
        session, keyring=keyring, caller=caller.client, everyone="lookup" not in caller.scopes, state=state
    )
