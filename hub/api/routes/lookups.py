"""``POST /v1/lookups``: the one-certificate lookup, answered with a signed body."""

from __future__ import annotations

from functools import partial

from fastapi import APIRouter, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from hub.api.deps import (
    admitted,
    bearer_claims,
    caller_in_session,
    check_scope,
    durable,
    kept_client,
    load_client,
    process_client,
)
from hub.api.jose import detached_jws
from hub.api.services.lookups import AdmittedPlainLookup, LookupRequest, LookupResponse, lookup
from materials_store.driver_reads import LoopReads, driver_reads
from materials_store.models import Client
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
    client_id = str(claims["sub"])
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

    def plain(client: Client | None) -> AdmittedPlainLookup:
        def admit(status: str | None) -> Client:
            return check_scope(admitted(request, claims, client, status), "lookup").client

        record = partial(submit_usage, handle.engine)
        return AdmittedPlainLookup(handle.keyring, client_id, admit, lookup_request, record)

    def answer_plain() -> tuple[bytes, str]:
        # A plain lookup: the client's status and the subject in one read at the driver level, no Session.
        with deferred_usage(pending):
            client = process_client(request, client_id, load=partial(load_client, handle))
            result = plain(client).at_driver(driver_reads(handle.engine))
        return signed(result)

    def signed(result: LookupResponse) -> tuple[bytes, str]:
        body = result.model_dump_json().encode("utf-8")
        return body, detached_jws(body, handle.keyring.current_signing_key)

    async def answer_on_loop(reads: LoopReads) -> tuple[bytes, str]:
        # A plain lookup on PostgreSQL: its round trip awaited here, on the event loop, its record's too
        # (:meth:`~materials_store.store.UsageAppender.submit_on_loop`). A client's first request in this
        # process loads its registration, in a thread.
        with deferred_usage(pending):
            client = kept_client(request, client_id)
            if client is None:
                client = await run_in_threadpool(
                    process_client, request, client_id, load=partial(load_client, handle)
                )
            result = await plain(client).on_loop(reads)
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
