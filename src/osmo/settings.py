"""One typed settings object: ``$OSMO_HOME/config.yaml`` overlaid by ``OSMO_*`` env (env wins)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml
from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict


def default_home() -> Path:
    explicit = os.environ.get("OSMO_HOME")
    if explicit:
        return Path(explicit).expanduser()
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "osmo"


class _YamlSource(PydanticBaseSettingsSource):
    """Values from ``$OSMO_HOME/config.yaml`` (lower priority than the environment)."""

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        path = default_home() / "config.yaml"
        if not path.is_file():
            return {}
        data = yaml.safe_load(path.read_text()) or {}
        if not isinstance(data, dict):
            raise ValueError(f"{path}: expected a mapping of settings")
        return {k.replace("-", "_"): v for k, v in data.items()}


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="OSMO_", extra="ignore")

    home: Path = Field(default_factory=default_home)
    host: str = "127.0.0.1"
    port: int = 8080
    database_url: str = ""  # default: SQLite under home
    data_url: str = ""  # workflow data store (task outputs); default: file:// under home
    log_dir: str = ""  # task logs as they stream in (and a cache of archived ones)
    log_url: str = ""  # workflow_log: storage URL logs are archived to when tasks end
    data_credential: str = ""  # JSON DATA credential payload for data_url (an object store)
    log_credential: str = ""  # JSON DATA credential payload for log_url
    operator_tokens: str = ""  # comma-separated bootstrap tokens accepted from operators
    user: str = ""  # identity of the embedded local admin; default: the OS user
    max_num_tasks: int = 10_000
    max_retry_per_task: int = 3
    heartbeat_interval: float = 5.0
    backend_offline_after: float = 30.0
    backend_error_after: float = 600.0  # offline this long: its tasks fail with backend error
    render_timeout: float = 2.0
    dataset_url: str = ""  # dataset bucket (content-addressed objects); default: file:// under home
    dataset_credential: str = ""  # JSON DATA credential payload the runtime uses for that bucket
    secret_keys: str = ""  # "kid:base64key,..." for credentials at rest; default: generated file
    token_overlap_seconds: float = (
        3600.0  # old operator tokens stay valid this long after a rotation
    )
    sandbox: str = ""  # local executor isolation: "", "bwrap" or "none"

    @field_validator("home", mode="before")
    @classmethod
    def _expand(cls, v: Any) -> Any:
        return Path(v).expanduser() if isinstance(v, str) else v

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings, _YamlSource(settings_cls))

    # Derived locations ---------------------------------------------------------------------

    @property
    def resolved_database_url(self) -> str:
        return self.database_url or f"sqlite+aiosqlite:///{self.home / 'osmo.db'}"

    @property
    def resolved_data_url(self) -> str:
        return self.data_url or (self.home / "data").as_uri()

    @property
    def resolved_dataset_url(self) -> str:
        return (self.dataset_url or (self.home / "datasets").as_uri()).rstrip("/")

    @property
    def resolved_log_dir(self) -> Path:
        return Path(self.log_dir).expanduser() if self.log_dir else self.home / "logs"

    @property
    def operator_dir(self) -> Path:
        return self.home / "operator"

    def local_user(self) -> str:
        if self.user:
            return self.user
        import getpass

        try:
            return getpass.getuser()
        except Exception:  # no passwd entry in some containers
            return "admin"


def load_settings(**overrides: Any) -> Settings:
    return Settings(**overrides)
