"""Great Expectations, imported for the contracts without what it loads for features they never use.

Importing GX took 2.1 s, most of it for modules no contract needs: one expectation (KL divergence)
imports ``scipy.stats`` and ``altair`` (0.9 s together), and its S3 stores import ``boto3`` (0.16 s).
A bulk sync's worker pays that before its first batch, while the sync's own process waits for it; so
does every Airflow task that validates. Here those modules are deferred while GX imports: GX gets a
stand-in module for each, which imports the real one the first time anything is read from it. With
them deferred the import takes 1.2 s, and everything GX does with them still works, only later.

Import GX through this module (``from contracts.gx import gx``): the first import in a process is the
one that counts.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import types
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

#: Modules GX imports at import time for features the contracts do not use.
DEFERRED = ("scipy.stats", "altair", "boto3")


class DeferredModule(types.ModuleType):
    """Stands in for a module until an attribute is read from it; then the module is imported for
    real, and its attributes are copied here. (importlib's ``LazyLoader`` cannot do this on Python
    3.11: the import system reads ``__spec__`` from a module in ``sys.modules`` on every later import
    of it, and that read already loads it.)"""

    def __getattr__(self, attribute: str) -> Any:
        name = self.__name__
        if sys.modules.get(name) is self:
            del sys.modules[name]
        module = importlib.import_module(name)
        self.__dict__.update(module.__dict__)
        return getattr(module, attribute)


@contextmanager
def deferred(names: tuple[str, ...] = DEFERRED) -> Iterator[list[str]]:
    """While the block runs, an import of any of ``names`` not imported yet (and installed) gets a
    :class:`DeferredModule`; after it, an import gets the real module again. Yields the names deferred."""
    installed = [name for name in names if name not in sys.modules and _installed(name)]
    stand_ins = {name: DeferredModule(name) for name in installed}
    sys.modules.update(stand_ins)
    try:
        yield installed
    finally:
        for name, stand_in in stand_ins.items():
            if sys.modules.get(name) is stand_in:
                del sys.modules[name]


def _installed(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except ImportError:  # its parent package is not installed
        return False


with deferred():
    import great_expectations as gx
    import great_expectations.expectations as gxe
    from great_expectations.core import ExpectationSuiteValidationResult
    from great_expectations.core.run_identifier import RunIdentifier
    from great_expectations.data_context.types.base import ProgressBarsConfig
    from great_expectations.data_context.types.resource_identifiers import (
        ExpectationSuiteIdentifier,
        ValidationResultIdentifier,
    )
    from great_expectations.execution_engine import pandas_execution_engine

__all__ = [
    "DEFERRED",
    "DeferredModule",
    "ExpectationSuiteIdentifier",
    "ExpectationSuiteValidationResult",
    "ProgressBarsConfig",
    "RunIdentifier",
    "ValidationResultIdentifier",
    "deferred",
    "gx",
    "gxe",
    "pandas_execution_engine",
]
