"""Department push (结果回传): a department's signed result becomes a reusable material; revocation."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from typing import Any

import jwt
from pydantic import BaseModel, Field, ValidationError
from sqlalchemy.orm import Session

from hub.api.jose import key_algorithm
from hub.api.problems import Forbidden, Unauthorized
from materials_store.cases import alert_cases, settle_arrivals
from materials_store.crypto import Keyring
from materials_store.errors import Conflict, DataError, NotFound
from materials_store.identity import InvalidIdentifier, parse_identifier
from materials_store.models import Client, IdempotencyKey, MaterialType
from materials_store.store import MaterialInput, get_material, record_usage, revoke, upsert_materials


class PushedMaterial(BaseModel):
    """The payload of the department's JWS."""

    type: str = Field(min_length=1, max_length=64)
    subject_id: str = Field(min_length=1, max_length=64)
    record_id: str = Field(min_length=1, max_length=128)
    issued_at: dt.date
    valid_until: dt.date | None = None
    data: dict[str, Any]


class PushResult(BaseModel):
    id: str


def verify_push(caller: Client, compact: str) -> PushedMaterial:
    """Check the JWS is signed by the department's registered key and parse its payload.

    Raises:
        Unauthorized: not signed by this department's key (or with another algorithm).
        DataError: the payload is not a material.
    """
    key, algorithm = key_algorithm(caller.public_key_pem)
    try:
        payload = jwt.api_jws.PyJWS().decode(compact, key=key, algorithms=[algorithm])
    except jwt.PyJWTError:
        raise Unauthorized("the body is not a JWS signed by this department's registered key") from None
    try:
        return PushedMaterial.model_validate(json.loads(payload))
    except (ValueError, ValidationError):
        raise DataError(
            "the signed payload is not a material (type, subject_id, record_id, issued_at, data)"
        ) from None


def push_material(
    session: Session, *, keyring: Keyring, caller: Client, compact: str, idempotency_key: str
) -> tuple[PushResult, bool]:
    """Store a pushed material. Returns the result and whether it was created now (201) or before (200).

    Raises:
        Conflict: the Idempotency-Key was used with another body.
        Forbidden: the department does not issue this type.
    """
    digest = hashlib.sha256(compact.encode("ascii")).hexdigest()
    known = session.get(IdempotencyKey, (caller.id, idempotency_key))
    if known is not None:
        if known.request_sha256 != digest:
            raise Conflict("this Idempotency-Key was used with a different body")
        return PushResult(id=known.material_id), False
    pushed = verify_push(caller, compact)
    if pushed.type not in caller.types:
        raise Forbidden("this department does not issue that material type")
    material_type = session.get(MaterialType, pushed.type)
    if material_type is None:
        raise DataError("unknown material type")
    subject = parse_identifier(pushed.subject_id)
    result = upsert_materials(
        session,
        keyring=keyring,
        items=[
            MaterialInput(
                type_code=pushed.type, subject=subject, source_record_id=pushed.record_id,
                issued_at=pushed.issued_at, valid_until=pushed.valid_until, payload=pushed.data,
                issuer=material_type.department, issuer_signature=compact,
            )
        ],
        source=f"push:{caller.id}",
    )  # fmt: skip
    material_id = result.ids[0]
    settle_arrivals(session, result=result, type_codes=[pushed.type])  # promises close, cases get alerts
    session.add(
        IdempotencyKey(
            client_id=caller.id, key=idempotency_key, request_sha256=digest, material_id=material_id
        )
    )
    record_usage(
        session, client_id=caller.id, client_kind=caller.kind, action="push", outcome=result.outcomes[0],
        subject_index=keyring.blind_index(subject.value), material_ids=[material_id],
    )  # fmt: skip
    session.commit()
    return PushResult(id=material_id), True


MAX_BULK = 1000


class BulkItemResult(BaseModel):
    index: int
    status: int
    id: str | None = None
    outcome: str | None = None
    problem: str | None = None


class BulkResult(BaseModel):
    results: list[BulkItemResult]


def push_bulk(
    session: Session, *, keyring: Keyring, caller: Client, compact: str, idempotency_key: str
) -> BulkResult:
    """Up to 1,000 materials in one signed body ``{"items": [...]}``; each item gets its own result.

    Items are stored in one batch; a bad item (wrong type, invalid ID, malformed) is reported and does not
    stop the others. Replaying the same body gives the same ids (the upsert is idempotent by content);
    the same Idempotency-Key with another body is refused (409).
    """
    digest = hashlib.sha256(compact.encode("ascii")).hexdigest()
    known = session.get(IdempotencyKey, (caller.id, idempotency_key))
    if known is not None and known.request_sha256 != digest:
        raise Conflict("this Idempotency-Key was used with a different body")
    key, algorithm = key_algorithm(caller.public_key_pem)
    try:
        document = json.loads(jwt.api_jws.PyJWS().decode(compact, key=key, algorithms=[algorithm]))
    except jwt.PyJWTError:
        raise Unauthorized("the body is not a JWS signed by this department's registered key") from None
    except ValueError:
        raise DataError("the signed payload is not JSON") from None
    items = document.get("items") if isinstance(document, dict) else None
    if not isinstance(items, list) or not 1 <= len(items) <= MAX_BULK:
        raise DataError(f"the signed payload must be {{'items': [...]}} with 1 to {MAX_BULK} materials")
    results: list[BulkItemResult] = []
    accepted: list[tuple[int, MaterialInput]] = []
    departments = {t.code: t.department for t in session.query(MaterialType)}
    for index, raw in enumerate(items):
        try:
            pushed = PushedMaterial.model_validate(raw)
        except ValidationError:
            results.append(BulkItemResult(index=index, status=422, problem="not a material"))
            continue
        if pushed.type not in caller.types or pushed.type not in departments:
            results.append(
                BulkItemResult(index=index, status=403, problem="not a type this department issues")
            )
            continue
        try:
            subject = parse_identifier(pushed.subject_id)
        except InvalidIdentifier as error:
            results.append(
                BulkItemResult(index=index, status=422, problem=f"invalid subject_id ({error.reason.value})")
            )
            continue
        accepted.append((index, MaterialInput(
            type_code=pushed.type, subject=subject, source_record_id=pushed.record_id, issued_at=pushed.issued_at,
            valid_until=pushed.valid_until, payload=pushed.data, issuer=departments[pushed.type],
            issuer_signature=compact if len(items) == 1 else None,
        )))  # fmt: skip
    if accepted:
        stored = upsert_materials(
            session, keyring=keyring, items=[item for _, item in accepted], source=f"push:{caller.id}"
        )
        settle_arrivals(session, result=stored, type_codes={item.type_code for _, item in accepted})
        for (index, _item), material_id, outcome in zip(accepted, stored.ids, stored.outcomes, strict=True):
            status = 200 if outcome == "unchanged" else 201
            results.append(BulkItemResult(index=index, status=status, id=material_id, outcome=outcome))
        record_usage(
            session, client_id=caller.id, client_kind=caller.kind, action="push", outcome="bulk",
            material_ids=list(stored.ids), detail={"items": len(items), "stored": len(accepted)},
        )  # fmt: skip
    if known is None:
        session.add(
            IdempotencyKey(
                client_id=caller.id, key=idempotency_key, request_sha256=digest, material_id="bulk"
            )
        )
    session.commit()
    return BulkResult(results=sorted(results, key=lambda r: r.index))


class RevokeRequest(BaseModel):
    reason: str = Field(min_length=1, max_length=200)


class RevokeResult(BaseModel):
    id: str
    status: str


def revoke_material(session: Session, *, caller: Client, material_id: str, reason: str) -> RevokeResult:
    """Revoke a material; only the department that issues its type may.

    Raises:
        NotFound: no such material. Forbidden: the caller does not issue its type.
    """
    material = get_material(session, material_id=material_id)
    if material is None:
        raise NotFound("no such material")
    if material.type_code not in caller.types:
        raise Forbidden("only the issuing department may revoke this material")
    revoked = revoke(session, material_id=material_id, reason=reason, actor=caller.id)
    alert_cases(session, material_ids=[material_id], kind="revoked",
                detail={material_id: {"type": revoked.type_code, "reason": reason}})  # fmt: skip
    record_usage(session, client_id=caller.id, client_kind=caller.kind, action="revoke", outcome="revoked",
                 purpose=reason, material_ids=[material_id])  # fmt: skip
    session.commit()
    return RevokeResult(id=revoked.id, status=revoked.status)
