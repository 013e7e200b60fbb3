"""``/v1/catalog/...``: the material types, service items (事项) and bundles (一件事) windows work with."""

from __future__ import annotations

from fastapi import APIRouter, Depends

from hub.api.deps import get_caller
from hub.api.services import catalog
from hub.api.services.catalog import BundleOut, ItemOut, MaterialTypeOut

router = APIRouter(prefix="/v1/catalog", tags=["catalog"], dependencies=[Depends(get_caller)])


@router.get("/types")
def list_types() -> list[MaterialTypeOut]:
    """Every material type (证照/材料类型), and whether it arrives by sync or by department push."""
    return catalog.material_types()


@router.get("/items")
def list_items() -> list[ItemOut]:
    """Every service item and the materials it needs."""
    return catalog.items()


@router.get("/items/{code}")
def get_item(code: str) -> ItemOut:
    return catalog.item(code)


@router.get("/bundles")
def list_bundles() -> list[BundleOut]:
    """Every bundle, with its items in order and their merged needs."""
    return catalog.bundles()


@router.get("/bundles/{code}")
def get_bundle(code: str) -> BundleOut:
    return catalog.bundle(code)
