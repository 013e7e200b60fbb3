"""What the maintenance DAGs run: each opens the store, calls the store's own function and returns counts."""

from __future__ import annotations

import dataclasses
from typing import Any

from materials_store.runtime import StoreHandle, open_store
from materials_store.settings import get_settings


def _store() -> StoreHandle:
    return open_store(get_settings())


def expire_and_flag() -> dict[str, Any]:
    """Expire materials past their validity; flag open promises (容缺) past their due date as overdue."""
    from materials_store.cases import flag_overdue_promises
    from materials_store.store import expire_materials

    handle = _store()
    with handle.sessions() as session:
        expired = expire_materials(session)
        overdue = flag_overdue_promises(session)
        session.commit()
    return {"expired": expired, "promises_overdue": overdue}


def reconcile() -> dict[str, Any]:
    """Cross-check every subject's name and birth date across sources."""
    from materials_store.quality import reconcile_identity

    handle = _store()
    with handle.sessions() as session:
        report = reconcile_identity(session, keyring=handle.keyring)
    return dataclasses.asdict(report)


def data_docs() -> dict[str, Any]:
    """Build the Great Expectations Data Docs site from the recent validation results."""
    from contracts.data_docs import build_data_docs

    return build_data_docs(get_settings().home)
