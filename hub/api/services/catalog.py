"""The catalogue as the API shows it: material types, service items (事项) and bundles (一件事)."""

from __future__ import annotations

from pydantic import BaseModel

from contracts import load_catalogue, load_contracts
from contracts.service_items import Need, ServiceItem, load_service_catalogue
from materials_store.errors import NotFound


class MaterialTypeOut(BaseModel):
    code: str
    name_zh: str
    name_en: str
    department: str
    subject_kind: str
    validity_days: int | None
    #: ``sync`` (read from the department's system) or ``push`` (the department pushes its results).
    arrives_by: str


class RequirementOut(BaseModel):
    types: list[str]
    names_zh: list[str]
    required: bool
    waivable: bool
    due_days: int | None
    online: bool
    max_age_days: int | None
    note: str | None = None


class ItemOut(BaseModel):
    code: str
    name_zh: str
    name_en: str
    department: str
    applicant: str
    issues: list[str]
    requirements: list[RequirementOut]


class NeedOut(RequirementOut):
    serves: list[str]
    issued_by: str | None


class BundleOut(BaseModel):
    code: str
    name_zh: str
    name_en: str
    #: The items in processing order (an item after those whose results it needs).
    items: list[str]
    #: The merged needs: each asked for once, with the items it serves; chained ones name their issuer.
    needs: list[NeedOut]


def _names(types: tuple[str, ...]) -> list[str]:
    names = {spec.code: spec.name_zh for spec in load_catalogue()}
    return [names.get(t, t) for t in types]


def material_types() -> list[MaterialTypeOut]:
    return [
        MaterialTypeOut(
            code=c.material_type.code,
            name_zh=c.material_type.name_zh,
            name_en=c.material_type.name_en,
            department=c.department,
            subject_kind=c.subject_kind,
            validity_days=c.validity_days,
            arrives_by="push" if c.push_only else "sync",
        )  # fmt: skip
        for c in load_contracts()
    ]


def _item_out(item: ServiceItem) -> ItemOut:
    return ItemOut(
        code=item.code, name_zh=item.name_zh, name_en=item.name_en, department=item.department,
        applicant=item.applicant, issues=list(item.issues),
        requirements=[
            RequirementOut(
                types=list(r.types), names_zh=_names(r.types), required=r.required, waivable=r.waivable,
                due_days=item.due_days(r) if r.waivable else None, online=r.online, max_age_days=r.max_age_days,
                note=r.note,
            )
            for r in item.requirements
        ],
    )  # fmt: skip


def _need_out(need: Need) -> NeedOut:
    return NeedOut(
        types=list(need.types), names_zh=_names(need.types), required=need.required, waivable=need.waivable,
        due_days=need.due_days, online=need.online, max_age_days=need.max_age_days, serves=list(need.serves),
        issued_by=need.issued_by,
    )  # fmt: skip


def items() -> list[ItemOut]:
    return [_item_out(item) for item in load_service_catalogue().items.values()]


def item(code: str) -> ItemOut:
    """Raises: NotFound for an unknown code."""
    catalogue = load_service_catalogue()
    if code not in catalogue.items:
        raise NotFound("no such service item")
    return _item_out(catalogue.items[code])


def bundle(code: str) -> BundleOut:
    """Raises: NotFound for an unknown code."""
    catalogue = load_service_catalogue()
    if code not in catalogue.bundles:
        raise NotFound("no such bundle")
    found = catalogue.bundles[code]
    return BundleOut(
        code=found.code, name_zh=found.name_zh, name_en=found.name_en, items=list(catalogue.orders[code]),
        needs=[_need_out(need) for need in catalogue.bundle_needs(code)],
    )  # fmt: skip


def bundles() -> list[BundleOut]:
    return [bundle(code) for code in load_service_catalogue().bundles]
