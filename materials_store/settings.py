"""One settings class for the whole project, read from ``ONECERT_*`` environment variables."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Every knob of the hub. Built by :func:`get_settings`, never at import time."""

    model_config = SettingsConfigDict(env_prefix="ONECERT_", extra="ignore")

    #: Where the store, keys, sandbox data and Airflow home live.
    home: Path = Path("var")
    #: SQLAlchemy URL of the store; SQLite (WAL) under ``home`` when unset.
    database_url: str | None = None
    #: Dev mode: keys may be generated on first run. Never on in production.
    dev: bool = False
    #: Keyring file (data keys, blind-index key, signing keys); ``home/keys/keyring.json`` when unset.
    keyring_file: Path | None = None
    #: A whole keyring as JSON, for deployments that inject secrets through the environment.
    keyring_json: SecretStr | None = None
    #: Public base URL of the hub, used as the token endpoint audience.
    public_url: str = "http://127.0.0.1:8000"
    #: Lifetime of access tokens the hub issues, in seconds.
    token_ttl_seconds: int = Field(default=600, ge=30, le=3600)
    #: Largest request body the API accepts, in bytes.
    max_body_bytes: int = Field(default=4 * 1024 * 1024, ge=1024)
    #: Requests per minute one client may make before it gets 429.
    rate_limit_per_minute: int = Field(default=6000, ge=1)
    #: Loopback port of the hub when the demo (``onecert up``) runs it in the background.
    hub_port: int = Field(default=8000, ge=1, le=65535)
    #: Loopback port of the embedded Airflow's UI and API (``airflow standalone``).
    airflow_port: int = Field(default=8080, ge=1, le=65535)

    @property
    def airflow_url(self) -> str:
        return f"http://127.0.0.1:{self.airflow_port}"

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.home / 'onecert.db').resolve()}"

    @property
    def resolved_keyring_file(self) -> Path:
        return self.keyring_file or self.home / "keys" / "keyring.json"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings; tests clear the cache with ``get_settings.cache_clear()``."""
    return Settings()
