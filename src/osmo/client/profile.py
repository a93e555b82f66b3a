"""The client's profile: which server, as whom. ``OSMO_URL`` wins over ``osmo login``."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import yaml

from ..settings import default_home


@dataclass
class Profile:
    url: str | None = None
    user: str | None = None
    source: str = "none"


def profile_path() -> Path:
    return default_home() / "client.yaml"


def load_profile() -> Profile:
    env_url = os.environ.get("OSMO_URL")
    stored: dict[str, str] = {}
    path = profile_path()
    if path.is_file():
        try:
            data = yaml.safe_load(path.read_text()) or {}
            if isinstance(data, dict):
                stored = {
                    str(k): str(v) for k, v in data.items() if isinstance(v, str | int | float)
                }
        except (OSError, yaml.YAMLError):
            stored = {}
    user = os.environ.get("OSMO_USER") or stored.get("user")
    if env_url:
        return Profile(url=env_url, user=user, source="OSMO_URL")
    if stored.get("url"):
        return Profile(url=stored["url"], user=user, source=str(path))
    return Profile(user=user)


def _other_sections(path: Path) -> dict[str, object]:
    """The file's sections other than the profile (``credentials:``, written by osmo.storage)."""
    if not path.is_file():
        return {}
    try:
        loaded = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError):
        return {}
    if not isinstance(loaded, dict):
        return {}
    return {str(k): v for k, v in loaded.items() if k not in ("url", "user")}


def save_profile(url: str | None, user: str | None) -> Path:
    path = profile_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    data = _other_sections(path)
    data.update({k: v for k, v in {"url": url, "user": user}.items() if v})
    return _write(path, data)


def clear_profile() -> Path:
    """Forget the server URL and user; other sections (local DATA credentials) stay."""
    path = profile_path()
    if not path.exists():
        return path
    data = _other_sections(path)
    if not data:
        path.unlink()
        return path
    return _write(path, data)


def _write(path: Path, data: dict[str, object]) -> Path:
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        yaml.safe_dump(data, f, sort_keys=False)
    tmp.replace(path)
    return path
