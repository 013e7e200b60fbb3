"""Connection settings per source: from the sandbox's state file by default, overridden by
``ONECERT_SOURCE_<NAME>_URL`` / ``_API_KEY`` / ``_DATABASE_URL`` / ``_INBOX``. Secrets are SecretStr and
never printed."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from materials_store.errors import ConfigurationError
from materials_store.settings import Settings


@dataclass(frozen=True)
class SourceConfig:
    source: str
    base_url: str | None = None
    api_key: SecretStr | None = None
    database_url: str | None = None
    inbox: Path | None = None
    #: Seconds before a request counts as timed out.
    timeout: float = 10.0
    #: Attempts for a retriable failure (timeouts, 429, 5xx, dropped connections).
    attempts: int = 5
    #: Base of the exponential backoff, in seconds.
    backoff: float = 0.5
    #: Requests per second at most (0: unlimited).
    rate_limit: float = 0.0
    page_size: int = 5000
    extra: dict[str, str] = field(default_factory=dict)

    def __repr__(self) -> str:  # never show secrets
        return f"SourceConfig(source={self.source!r}, base_url={self.base_url!r}, api_key='**********')"


#: Which sandbox system serves which source.
SANDBOX_SYSTEM = {
    "police_id_card": "police",
    "police_hukou": "police",
    "tax_certificates": "tax",
    "health_births": "health",
    "market_licences": "market",
    "civil_marriages": "civil",
    "natres_titles": "natres",
}


def _env(source: str, name: str) -> str | None:
    return os.environ.get(f"ONECERT_SOURCE_{source.upper()}_{name}")


def source_config(settings: Settings, source: str) -> SourceConfig:
    """The configuration of one source (environment first, then the sandbox state file)."""
    state: dict[str, Any] = {}
    state_file = settings.home / "sandbox" / "state.json"
    if state_file.exists():
        state = json.loads(state_file.read_text(encoding="utf-8"))
    system = SANDBOX_SYSTEM.get(source)
    systems = state.get("systems", {}) if isinstance(state.get("systems"), dict) else {}
    rest = systems.get(system, {}) if system else {}
    sql = state.get("sql", {}) if isinstance(state.get("sql"), dict) else {}
    drops = state.get("drops", {}) if isinstance(state.get("drops"), dict) else {}
    url = _env(source, "URL") or rest.get("url")
    key = _env(source, "API_KEY") or rest.get("api_key")
    database = _env(source, "DATABASE_URL") or (sql.get(system) if system else None)
    inbox = _env(source, "INBOX") or drops.get(source)
    if not any((url, database, inbox)):
        raise ConfigurationError(
            f"source {source} is not configured: run `onecert sandbox up` or set ONECERT_SOURCE_{source.upper()}_URL",
            source=source,
        )
    return SourceConfig(
        source=source,
        base_url=url,
        api_key=SecretStr(key) if key else None,
        database_url=database,
        inbox=Path(inbox) if inbox else None,
        timeout=float(_env(source, "TIMEOUT") or 10.0),
        attempts=int(_env(source, "ATTEMPTS") or 5),
        backoff=float(_env(source, "BACKOFF") or 0.5),
        rate_limit=float(_env(source, "RATE_LIMIT") or 0.0),
        page_size=int(_env(source, "PAGE_SIZE") or 5000),
    )
