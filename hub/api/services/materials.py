"""Material reuse (材料复用): a window opens a material its case's lookup listed, with the hub's seal."""

from __future__ import annotations

import datetime as dt
from typing import Any

from pydantic import BaseModel
from sqlalchemy import select
from sqlalchemy.orm import Session

from hub.api.jose import seal
from hub.api.problems import Forbidden
from materials_store.cases import remember_case_materials
from materials_store.crypto import Keyring
from materials_store.errors import NotFound
from materials_store.identity import mask
from materials_store.models import Client, Subject, UsageRecord
from materials_store.store import (
    canonical_json,
    commit_usage,
    decrypt_payload,
    get_material,
    subject_identifier,
)


class SealedMaterial(BaseModel):
    material: dict[str, Any]
    seal: str


def material_document(keyring: Keyring, material_id: str, session: Session) -> dict[str, Any]:
    """The material as the hub vouches for it: metadata, the subject (masked) and the payload."""
    material = get_material(session, material_id=material_id)
    if material is None:
        raise NotFound("no such material")
    subject = session.get(Subject, material.subject_id)
    assert subject is not None
    return {
        "id": material.id,
        "type": material.type_code,
        "issuer": material.issuer,
        "source": material.source,
        "version": material.version,
        "issued_at": material.issued_at.isoformat(),
        "valid_until": material.valid_until.isoformat() if material.valid_until else None,
        "status": material.status,
        "subject": {"kind": subject.kind, "id_masked": mask(subject_identifier(keyring, subject))},
        "data": decrypt_payload(keyring, material),
        "payload_sha256": material.payload_sha256,
        "sealed_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }


def _case_binding(
    session: Session, *, client_id: str, case_ref: str, material_id: str
) -> tuple[bool, set[str]]:
    """Purpose binding: did a lookup by this client for this case list this material, and which material
    types do the case's service items or bundles need (empty when it named none)?"""
    lookups = session.execute(
        select(UsageRecord.material_ids, UsageRecord.detail).where(
            UsageRecord.client_id == client_id,
            UsageRecord.case_ref == case_ref,
            UsageRecord.action == "lookup",
        )
    )
    listed, bound = False, set()
    for ids, detail in lookups:
        listed = listed or material_id in ids
        if detail and "types" in detail:
            bound.update(detail["types"])
    return listed, bound


def read_material(
    session: Session, *, keyring: Keyring, caller: Client, material_id: str, case_ref: str
) -> SealedMaterial:
    """The material with its payload and the hub's seal; the read is recorded.

    Raises:
        Forbidden: the case's lookup did not list this material, or the case's service item does not need
            its type (purpose binding), or it is not valid.
    """
    listed, bound = _case_binding(session, client_id=caller.id, case_ref=case_ref, material_id=material_id)
    material = get_material(session, material_id=material_id) if listed else None
    if material is None or (bound and material.type_code not in bound):
        commit_usage(session, client_id=caller.id, client_kind=caller.kind, window=caller.org, action="read",
                     outcome="refused", case_ref=case_ref, material_ids=[material_id])  # fmt: skip
        if material is None:
            raise Forbidden("this case's lookup did not list that material")
        raise Forbidden("the case's service item does not need that material type")
    document = material_document(keyring, material_id, session)
    if document["status"] != "valid":
        raise Forbidden(f"the material is {document['status']} and cannot be reused")
    subject = session.get(Subject, material.subject_id)
    # Remembered for the case (committed with the read's record), so a later revocation alerts it.
    remember_case_materials(session, case_ref=case_ref, client_id=caller.id, material_ids=[material_id])
    commit_usage(
        session, client_id=caller.id, client_kind=caller.kind, window=caller.org, action="read", outcome="ok",
        case_ref=case_ref, subject_index=subject.blind_index if subject else None, material_ids=[material_id],
    )  # fmt: skip
    return SealedMaterial(material=document, seal=seal(canonical_json(document), keyring.current_signing_key))
