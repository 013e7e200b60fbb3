"""Service items (事项) and life-event bundles (一件事): what a window needs to accept an application.

One YAML file per item under ``contracts/service_items/`` and per bundle under ``contracts/bundles/`` (the
file stem is the code). Each item lists its requirements: one material type or a set of alternatives,
required or optional, waivable on a written promise (容缺) with a due period, verifiable online (免提交),
limited in freshness. An item may name the material types it *issues*, so that in a bundle a later item
can use what an earlier one produces (the newborn's household registration), shown as "issued within
this bundle". A bundle merges its items' needs: a material several items need is asked for once.

Everything is validated on load: unknown material types, unknown items, a waivable requirement without
a due period, and bundles whose items need each other's results in a cycle are configuration errors that
name the file and the problem. Cheap to import (no pandas, no GX).
"""

from __future__ import annotations

import graphlib
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Literal, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from contracts import CONTRACTS_DIR, load_catalogue
from materials_store.errors import ConfigurationError

ITEMS_DIR = CONTRACTS_DIR / "service_items"
BUNDLES_DIR = CONTRACTS_DIR / "bundles"
CODE_PATTERN = r"^[a-z][a-z0-9_]*\.[a-z][a-z0-9_]*$"

_Model = TypeVar("_Model", bound=BaseModel)

__all__ = [
    "BUNDLES_DIR",
    "ITEMS_DIR",
    "Bundle",
    "Need",
    "Requirement",
    "ServiceCatalogue",
    "ServiceItem",
    "load_service_catalogue",
]


class _Strict(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Requirement(_Strict):
    """One material an item needs: a type, or alternatives any one of which will do."""

    types: tuple[str, ...] = Field(min_length=1, description="material type codes; any one satisfies it")
    required: bool = True
    #: 容缺: the application may be accepted without it, on the applicant's written promise.
    waivable: bool = False
    #: Days the applicant has to bring a waived material; the item's ``promise_due_days`` when unset.
    due_days: int | None = Field(default=None, gt=0, le=365)
    #: 免提交: the window verifies it online (from the hub), so no paper copy is asked for.
    online: bool = False
    #: Freshness: the hub's copy must have been confirmed with its source within this many days.
    max_age_days: int | None = Field(default=None, gt=0)
    note: str | None = None

    @field_validator("types")
    @classmethod
    def _distinct(cls, types: tuple[str, ...]) -> tuple[str, ...]:
        if len(set(types)) != len(types):
            raise ValueError("a material type is listed twice among the alternatives")
        return types

    @model_validator(mode="after")
    def _coherent(self) -> Requirement:
        if self.waivable and not self.required:
            raise ValueError("an optional requirement cannot also be waivable (nothing to promise)")
        if self.due_days is not None and not self.waivable:
            raise ValueError("due_days is only meaningful on a waivable requirement")
        return self


class ServiceItem(_Strict):
    """A service item (事项): an application a window accepts, and the materials it needs."""

    code: str = Field(pattern=CODE_PATTERN)
    name_zh: str = Field(min_length=1)
    name_en: str = Field(min_length=1)
    department: str = Field(min_length=1)
    #: Who applies: ``person``, ``organisation`` or ``any``.
    applicant: Literal["person", "organisation", "any"] = "person"
    #: Default days to bring a waived (容缺) material.
    promise_due_days: int | None = Field(default=None, gt=0, le=365)
    #: Material types this item issues when it is handled (its results, pushed by the department).
    issues: tuple[str, ...] = ()
    requirements: tuple[Requirement, ...] = Field(min_length=1)
    description: str | None = None

    def due_days(self, requirement: Requirement) -> int | None:
        return requirement.due_days or self.promise_due_days

    @property
    def types(self) -> frozenset[str]:
        """Every material type the item may read (its purpose binding)."""
        return frozenset(t for requirement in self.requirements for t in requirement.types)


class Bundle(_Strict):
    """A life-event bundle (一件事): several items applied for together with one set of materials."""

    code: str = Field(pattern=CODE_PATTERN)
    name_zh: str = Field(min_length=1)
    name_en: str = Field(min_length=1)
    items: tuple[str, ...] = Field(min_length=2)
    description: str | None = None

    @field_validator("items")
    @classmethod
    def _distinct(cls, items: tuple[str, ...]) -> tuple[str, ...]:
        if len(set(items)) != len(items):
            raise ValueError("an item is listed twice")
        return items


@dataclass(frozen=True, slots=True)
class Need:
    """One merged requirement of an item or a bundle, as readiness evaluates it.

    ``serves`` names the items that need it (a bundle asks for it once); ``issued_by`` names the earlier
    item of the bundle that produces it, when it is chained.
    """

    types: tuple[str, ...]
    required: bool
    waivable: bool
    due_days: int | None
    online: bool
    max_age_days: int | None
    serves: tuple[str, ...]
    issued_by: str | None = None


@dataclass(frozen=True, slots=True)
class ServiceCatalogue:
    """Every item and bundle, validated against the material-type catalogue and against each other."""

    items: dict[str, ServiceItem]
    bundles: dict[str, Bundle]
    #: Each bundle's items in processing order: an item comes after every item whose results it needs.
    orders: dict[str, tuple[str, ...]]

    def item(self, code: str) -> ServiceItem:
        """Raises: KeyError when there is no such item."""
        return self.items[code]

    def bundle(self, code: str) -> Bundle:
        """Raises: KeyError when there is no such bundle."""
        return self.bundles[code]

    def item_needs(self, code: str) -> tuple[Need, ...]:
        """One item's needs, in the item's order (alternatives that repeat are asked once)."""
        item = self.items[code]
        return _merge((item, requirement, None) for requirement in item.requirements)

    def bundle_needs(self, code: str) -> tuple[Need, ...]:
        """A bundle's merged needs: asked once however many items need them; chained ones marked."""
        issued: dict[str, str] = {}  # type -> the first item of the bundle (in order) that issues it
        entries: list[tuple[ServiceItem, Requirement, str | None]] = []
        for item_code in self.orders[code]:
            item = self.items[item_code]
            for requirement in item.requirements:
                issuer = next((issued[t] for t in requirement.types if t in issued), None)
                entries.append((item, requirement, issuer))
            for type_code in item.issues:
                issued.setdefault(type_code, item.code)
        return _merge(entries)

    def bundle_types(self, code: str) -> frozenset[str]:
        return frozenset().union(*(self.items[item].types for item in self.bundles[code].items))


def _merge(entries: Iterable[tuple[ServiceItem, Requirement, str | None]]) -> tuple[Need, ...]:
    """Merge requirements with the same alternatives (and the same chaining) into one need: required if
    any item requires it, waivable only if every requiring item allows it (the shortest due period),
    online only if every item verifies it online, the strictest freshness limit."""
    merged: dict[tuple[frozenset[str], str | None], Need] = {}
    for item, requirement, issuer in entries:
        key = (frozenset(requirement.types), issuer)
        due = item.due_days(requirement)
        known = merged.get(key)
        if known is None:
            merged[key] = Need(
                types=requirement.types, required=requirement.required, waivable=requirement.waivable,
                due_days=due if requirement.waivable else None, online=requirement.online,
                max_age_days=requirement.max_age_days, serves=(item.code,), issued_by=issuer,
            )  # fmt: skip
            continue
        required = known.required or requirement.required
        waivable = (known.waivable or not known.required) and (
            requirement.waivable or not requirement.required
        )
        waivable = waivable and required
        dues = [d for d in (known.due_days, due if requirement.waivable else None) if d is not None]
        ages = [a for a in (known.max_age_days, requirement.max_age_days) if a is not None]
        merged[key] = Need(
            types=known.types, required=required, waivable=waivable,
            due_days=min(dues) if waivable and dues else None, online=known.online and requirement.online,
            max_age_days=min(ages) if ages else None,
            serves=known.serves if item.code in known.serves else (*known.serves, item.code), issued_by=issuer,
        )  # fmt: skip
    return tuple(merged.values())


def _read(path: Path) -> object:
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as error:
        raise ConfigurationError(f"{path.parent.name}/{path.name} is not valid YAML: {error}") from None


def _validated(model: type[_Model], path: Path) -> _Model:
    where = f"{path.parent.name}/{path.name}"
    try:
        parsed = model.model_validate(_read(path))
    except ValidationError as error:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or '(top)'}: {e['msg']}" for e in error.errors()
        )
        raise ConfigurationError(f"{where}: {problems}") from None
    code = getattr(parsed, "code", None)
    if code != path.stem:
        raise ConfigurationError(f"{where}: the file must be named after its code ({code}.yaml)")
    return parsed


def _check_item(item: ServiceItem, known_types: set[str]) -> None:
    where = f"service_items/{item.code}.yaml"
    for position, requirement in enumerate(item.requirements):
        unknown = [t for t in requirement.types if t not in known_types]
        if unknown:
            raise ConfigurationError(
                f"{where}: requirements.{position} names unknown material types: {', '.join(unknown)}"
            )
        if requirement.waivable and item.due_days(requirement) is None:
            raise ConfigurationError(
                f"{where}: requirements.{position} is waivable but has no due period "
                "(set due_days or the item's promise_due_days)"
            )
    unknown = [t for t in item.issues if t not in known_types]
    if unknown:
        raise ConfigurationError(f"{where}: issues unknown material types: {', '.join(unknown)}")
    seen: set[frozenset[str]] = set()
    for requirement in item.requirements:
        key = frozenset(requirement.types)
        if key in seen:
            raise ConfigurationError(f"{where}: the same requirement is listed twice ({', '.join(key)})")
        seen.add(key)


def _order(bundle: Bundle, items: dict[str, ServiceItem]) -> tuple[str, ...]:
    """The bundle's items so that each comes after the items whose results it needs.

    Raises:
        ConfigurationError: unknown items, or items that need each other's results (a cycle).
    """
    where = f"bundles/{bundle.code}.yaml"
    unknown = [code for code in bundle.items if code not in items]
    if unknown:
        raise ConfigurationError(f"{where}: unknown service items: {', '.join(unknown)}")
    graph: dict[str, set[str]] = {code: set() for code in bundle.items}
    for code in bundle.items:
        for other in bundle.items:
            if other != code and items[other].types & set(items[code].issues):
                graph[other].add(code)  # ``other`` needs what ``code`` issues: ``code`` comes first
    sorter = graphlib.TopologicalSorter(graph)
    try:
        sorter.prepare()
    except graphlib.CycleError as error:
        cycle = " → ".join(error.args[1])
        raise ConfigurationError(f"{where}: items need each other's results in a cycle ({cycle})") from None
    order: list[str] = []
    position = {code: index for index, code in enumerate(bundle.items)}
    while sorter.is_active():
        ready = sorted(sorter.get_ready(), key=position.__getitem__)  # keep the listed order otherwise
        order.extend(ready)
        sorter.done(*ready)
    return tuple(order)


def build_catalogue(
    item_paths: Iterable[Path], bundle_paths: Iterable[Path], known_types: Iterable[str]
) -> ServiceCatalogue:
    """Parse and cross-check items and bundles. Raises ConfigurationError naming the file and problem."""
    types = set(known_types)
    items: dict[str, ServiceItem] = {}
    for path in item_paths:
        item = _validated(ServiceItem, path)
        _check_item(item, types)
        items[item.code] = item
    bundles: dict[str, Bundle] = {}
    orders: dict[str, tuple[str, ...]] = {}
    for path in bundle_paths:
        bundle = _validated(Bundle, path)
        if bundle.code in items:
            raise ConfigurationError(f"bundles/{path.name}: a service item has the same code")
        orders[bundle.code] = _order(bundle, items)
        bundles[bundle.code] = bundle
    return ServiceCatalogue(items=items, bundles=bundles, orders=orders)


@cache
def load_service_catalogue() -> ServiceCatalogue:
    """The items under ``contracts/service_items/`` and bundles under ``contracts/bundles/``, validated."""
    return build_catalogue(
        sorted(ITEMS_DIR.glob("*.yaml")),
        sorted(BUNDLES_DIR.glob("*.yaml")),
        (spec.code for spec in load_catalogue()),
    )
