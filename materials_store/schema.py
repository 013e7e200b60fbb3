"""Every table module, imported once, so ``metadata`` is complete for Alembic and the schema test.

A module that adds tables is imported here.
"""

from __future__ import annotations

from materials_store import models

metadata = models.Base.metadata
