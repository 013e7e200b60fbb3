"""``POST /v1/lookups``: the one-certificate lookup, answered with a signed body."""

from __future__ import annotations

from functools import partial

from fastapi import APIRouter, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from hub.api.deps import (
    bearer_claims,
    caller_at_driver,
    caller_in_session,
    caller_on_loop,
    check_scope,
    durable,
)
from hub.api.jose import detached_jws
from hub.api.services.lookups import LookupRequest, LookupResponse, lookup, plain_lookup, plain_lookup_on_loop
from materials_store.driver_reads import LoopReads, driver_reads
from materials_store.runtime import StoreHandle
from materials_store.store import PendingUsage, deferred_usage, submit_usage

router = APIRouter(prefix="/v1", tags=["lookups"])


@router.post(
    "/lookups",
    response_model=LookupResponse,
    responses={200: {"headers": {"X-Signature": {"description": "detached compact JWS over the body"}}}},
)
async def post_lookup(lookup_request: LookupRequest, request: Request) -> Response:
    """What is on file for this ID; with ``service_item`` or ``bundle``, what that application needs and
    whether it can be accepted now (``readiness``). The body is signed: ``X-Signature`` is a detached JWS
    (EdDSA)."""
    # The store and the caller's claims without FastAPI dependencies: resolving them cost more than the
    # plain lookup's reads.
    handle: StoreHandle = request.app.state.store
    claims = bearer_claims(request)
    pending: list[PendingUsage] = []

    def answer() -> tuple[bytes, str]:
        # A readiness lookup, all the store work in one piece: the client check, the lookup (which may
        # pull from a source), its record. The record's group commit is awaited below, without holding
        # a thread.
        with deferred_usage(pending), handle.sessions() as session:
            caller = check_scope(caller_in_session(request, session, claims), "lookup")
            result = lookup(
                session, keyring=handle.keyring, caller=caller.client, request=lookup_request, handle=handle
            )
        return signed(result)

    def answer_plain() -> tuple[bytes, str]:
        # A plain lookup: a few index reads at the driver level, no Session.
        with deferred_usage(pending):
            caller = check_scope(caller_at_driver(request, handle, claims), "lookup")
            result = plain_lookup(
                driver_reads(handle.engine), keyring=handle.keyring, caller=caller.client,
                request=lookup_request, record=partial(submit_usage, handle.engine),
            )  # fmt: skip
        return signed(result)

    def signed(result: LookupResponse) -> tuple[bytes, str]:
        body = result.model_dump_json().encode("utf-8")
        return body, detached_jws(body, handle.keyring.current_signing_key)

    async def answer_on_loop(reads: LoopReads) -> tuple[bytes, str]:
        # A plain lookup on PostgreSQL: its round trips awaited here, on the event loop, its record's too
        # (:meth:`~materials_store.store.UsageAppender.submit_on_loop`).
        with deferred_usage(pending):
            caller = check_scope(await caller_on_loop(request, handle, claims, reads), "lookup")
            result = await plain_lookup_on_loop(
                reads, keyring=handle.keyring, caller=caller.client, request=lookup_request,
                record=partial(submit_usage, handle.engine),
            )  # fmt: skip
        return signed(result)

    loop_reads: LoopReads | None = getattr(request.app.state, "loop_reads", None)
    try:
        if lookup_request.service_item or lookup_request.bundle:
            body, signature = await run_in_threadpool(answer)
        elif handle.embedded:  # reads in this process, shorter than the hand-off to a thread and back
            body, signature = answer_plain()
        elif loop_reads is not None:  # network round trips to PostgreSQL, awaited without a thread
            body, signature = await answer_on_loop(loop_reads)
        else:  # an app whose lifespan has not run: its reads in a thread
            body, signature = await run_in_threadpool(answer_plain)
    finally:
        await durable(pending)  # the answer (or refusal) goes out only once its usage record is stored
    return Response(body, media_type="application/json", headers={"X-Signature": signature})
