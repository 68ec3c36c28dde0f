"""Server settings, from command-line flags and ``FHIR_SERVER_*`` environment variables."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """All settings; each can be set as an environment variable ``FHIR_SERVER_<NAME>``."""

    model_config = SettingsConfigDict(env_prefix="FHIR_SERVER_", extra="ignore")

    storage: str = Field(
        "sqlite:///data/fhir.sqlite3",
        description="Storage URL: sqlite:///relative/path, sqlite:////absolute/path,"
        " mongodb://… / mongodb+srv://… (MongoDB) or mongomock:// (in-memory stand-in)",
    )
    base_url: str | None = Field(
        None, description="Public FHIR base URL for links and Location (behind a proxy)"
    )
    host: str = "127.0.0.1"
    port: int = 8080
    auth: Literal["smart", "off"] = Field(
        "off", description="SMART authorization is not built yet; 'off' serves without tokens"
    )
    max_body_bytes: int = Field(10 * 1024 * 1024, ge=1024)
    default_page_size: int = Field(50, ge=1)
    max_page_size: int = Field(1000, ge=1)
    conditional_delete_max: int = Field(
        100, ge=1, description="Most resources one conditional delete may remove"
    )
    sqlite_synchronous: Literal["OFF", "NORMAL", "FULL", "EXTRA"] = "NORMAL"
    log_level: str = "info"

    @field_validator("base_url")
    @classmethod
    def _strip_slash(cls, value: str | None) -> str | None:
        return value.rstrip("/") if value else value
