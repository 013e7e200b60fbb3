"""On-demand freshness pulls: one subject's records, read from its source while a window waits.

A pull reads the subject's current records through the connector's by-subject endpoint, within a time
limit, and loads them through the same validate-and-load step as a sync (:func:`process_batch`): bad rows
go to quarantine, changed rows become new versions, promises close. It never moves a sync cursor. A source
that is down, slow or unable to answer by subject yields a failed :class:`PullResult`, never an exception:
the caller then uses the stored material, with a warning.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from dataclasses import dataclass

from connectors.config import source_config
from connectors.pipeline import process_batch
from connectors.registry import get_connector
from contracts import load_contract
from materials_store.errors import OneCertError
from materials_store.identity import Identifier
from materials_store.runtime import StoreHandle
from materials_store.store import new_run_id

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class PullResult:
    source: str
    ok: bool
    #: Rows the source returned for the subject; of those, how many changed what the hub holds.
    rows: int = 0
    loaded: int = 0
    quarantined: int = 0
    seconds: float = 0.0
    #: Why the pull failed, fit for a window (no IDs).
    problem: str | None = None


def can_pull(source: str) -> bool:
    """Whether the source's connector can read one subject (REST sources with a by-subject endpoint)."""
    try:
        return get_connector(source).can_fetch_subject()
    except OneCertError:
        return False  # a push-only type or a test source: nothing to pull from


def pull_subject(handle: StoreHandle, *, source: str, subject: Identifier, time_limit: float) -> PullResult:
    """Read one subject's records from ``source`` within ``time_limit`` seconds and load them.

    Never raises for a source failure: the result says why it failed.
    """
    started = time.monotonic()
    if not can_pull(source):
        return PullResult(source, ok=False, problem="the source cannot be queried for one subject")
    connector_class = get_connector(source)
    connector = None
    try:
        config = source_config(handle.settings, source)
        config = dataclasses.replace(config, timeout=min(config.timeout, time_limit), attempts=1)
        connector = connector_class(config)
        rows = connector.fetch_subject(subject.value)
        outcome = process_batch(
            handle,
            contract=load_contract(source),
            name_field=connector_class.subject_name_field,
            rows=rows,
            run_id=new_run_id(f"{source}-pull"),
            commits=[],  # a by-subject read covers no cursor range
        )
    except OneCertError as error:
        log.info("freshness pull from %s failed: %s", source, error.detail)
        return PullResult(
            source,
            ok=False,
            seconds=time.monotonic() - started,
            problem=f"the source did not answer ({error.title.lower()})",
        )
    finally:
        close = getattr(connector, "close", None)
        if close:
            close()
    return PullResult(
        source, ok=True, rows=outcome.extracted, loaded=outcome.loaded, quarantined=outcome.quarantined,
        seconds=time.monotonic() - started,
    )  # fmt: skip
