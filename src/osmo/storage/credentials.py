"""DATA credentials: the model passed to ``open_store(url, credentials)``, the client's local copy
of them (``credentials:`` in ``$OSMO_HOME/client.yaml``, written mode 600 by
``osmo credential set NAME --type DATA``), and the resolver that picks one for a URL.

Resolution for a URL (``resolve_credentials``):
1. the local credential whose ``endpoint`` is the longest prefix of the URL (``s3://bucket``,
   ``s3://bucket/some/prefix``, ``azure://account/container``, ``gs://bucket``);
2. the environment: S3 ``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY`` (+ ``AWS_SESSION_TOKEN``,
   ``AWS_REGION``/``AWS_DEFAULT_REGION``, ``AWS_ENDPOINT_URL_S3``/``AWS_ENDPOINT_URL``); Azure
   ``AZURE_STORAGE_CONNECTION_STRING`` or ``AZURE_STORAGE_KEY``; GCS ``STORAGE_EMULATOR_HOST``
   (an emulator; no auth) or ``GOOGLE_OAUTH_ACCESS_TOKEN``;
3. none (``None``): the store then fails with ``MissingCredentialsError`` unless the caller passes
   ``Credentials(default_chain=True)`` (SDK default chain: workload identity, instance metadata).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from ..settings import default_home
from .base import InvalidURLError, StorageError
from .url import parse_url

AddressingStyle = Literal["auto", "path", "virtual"]

DEFAULT_REGIONS = {"s3": "us-east-1", "gs": "us-east1", "azure": "eastus"}


class Credentials(BaseModel):
    """A DATA credential, as in the original (``StaticDataCredential``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    access_key_id: str | None = None
    access_key: str | None = Field(default=None, repr=False)
    session_token: str | None = Field(default=None, repr=False)
    endpoint: str | None = None  # which URLs it is for: s3://bucket[/prefix], azure://acct/cont
    region: str | None = None
    override_url: str | None = None  # S3-compatible / emulator endpoint, e.g. http://host:9000
    addressing_style: AddressingStyle = "auto"
    connection_string: str | None = Field(default=None, repr=False)  # azure
    default_chain: bool = False  # use the SDK default chain (workload identity, IMDS)

    @field_validator("override_url")
    @classmethod
    def _check_override(cls, v: str | None) -> str | None:
        if v and not v.startswith(("http://", "https://")):
            raise ValueError(f"override_url {v!r} must start with http:// or https://")
        return v.rstrip("/") if v else v

    @property
    def azure_connection_string(self) -> str | None:
        """The Azure connection string: ``connection_string`` or an ``access_key`` holding one
        (the original stores it as ``access_key``)."""
        if self.connection_string:
            return self.connection_string
        if self.access_key and "AccountName=" in self.access_key:
            return self.access_key
        return None

    def matches(self, url: str) -> int:
        """Length of ``endpoint`` when it is a prefix of ``url`` on a path boundary, else -1."""
        if not self.endpoint:
            return -1
        ep = self.endpoint.rstrip("/")
        u = url.rstrip("/")
        if u == ep or u.startswith(ep + "/"):
            return len(ep)
        return -1


def credentials_path() -> Path:
    return default_home() / "client.yaml"


def _read_config(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as e:
        raise StorageError(f"cannot read the client config {path}: {e}") from e
    if not isinstance(data, dict):
        raise StorageError(f"client config {path} is not a mapping")
    return data


def _write_config(path: Path, data: Mapping[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "w") as f:
            yaml.safe_dump(dict(data), f, sort_keys=False)
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def load_local_credentials(path: Path | None = None) -> dict[str, Credentials]:
    """The DATA credentials in the client config, by name."""
    path = path or credentials_path()
    section = _read_config(path).get("credentials") or {}
    if not isinstance(section, dict):
        raise StorageError(f"{path}: 'credentials' must be a mapping of name -> credential")
    out: dict[str, Credentials] = {}
    for name, raw in section.items():
        if not isinstance(raw, dict):
            raise StorageError(f"{path}: credential {name!r} must be a mapping")
        try:
            out[str(name)] = Credentials.model_validate(raw)
        except ValidationError as e:
            msgs = "; ".join(f"{'.'.join(map(str, x['loc']))}: {x['msg']}" for x in e.errors())
            raise StorageError(f"{path}: credential {name!r}: {msgs}") from e
    return out


def save_local_credential(name: str, cred: Credentials, path: Path | None = None) -> Path:
    """Add or replace credential ``name`` (other keys of the file are kept); mode 600."""
    path = path or credentials_path()
    if cred.endpoint:
        try:
            parse_url(cred.endpoint)
        except InvalidURLError as e:
            raise StorageError(f"credential {name!r}: endpoint: {e}") from e
    data = _read_config(path)
    section = data.get("credentials")
    if not isinstance(section, dict):
        section = {}
    section[name] = cred.model_dump(exclude_defaults=True)
    data["credentials"] = section
    _write_config(path, data)
    return path


def delete_local_credential(name: str, path: Path | None = None) -> bool:
    path = path or credentials_path()
    data = _read_config(path)
    section = data.get("credentials")
    if not isinstance(section, dict) or name not in section:
        return False
    del section[name]
    data["credentials"] = section
    _write_config(path, data)
    return True


def _env_credentials(scheme: str, env: Mapping[str, str]) -> Credentials | None:
    if scheme == "s3":
        key_id, secret = env.get("AWS_ACCESS_KEY_ID"), env.get("AWS_SECRET_ACCESS_KEY")
        if key_id and secret:
            return Credentials(
                access_key_id=key_id,
                access_key=secret,
                session_token=env.get("AWS_SESSION_TOKEN") or None,
                region=env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or None,
                override_url=env.get("AWS_ENDPOINT_URL_S3") or env.get("AWS_ENDPOINT_URL") or None,
            )
    elif scheme == "azure":
        cs = env.get("AZURE_STORAGE_CONNECTION_STRING")
        if cs:
            return Credentials(connection_string=cs)
        key = env.get("AZURE_STORAGE_KEY")
        if key:
            return Credentials(access_key=key)
    elif scheme == "gs":
        host = env.get("STORAGE_EMULATOR_HOST")
        if host:
            url = host if host.startswith(("http://", "https://")) else f"http://{host}"
            return Credentials(override_url=url)
        token = env.get("GOOGLE_OAUTH_ACCESS_TOKEN")
        if token:
            return Credentials(access_key=token)
    return None


def resolve_credentials(
    url: str,
    *,
    local: Mapping[str, Credentials] | None = None,
    env: Mapping[str, str] | None = None,
) -> Credentials | None:
    """The credential to use for ``url`` (see the module docstring), or ``None``."""
    parsed = parse_url(url)
    creds = load_local_credentials() if local is None else local
    canonical = str(parsed)
    best: tuple[int, Credentials] | None = None
    for cred in creds.values():
        n = cred.matches(canonical)
        if n >= 0 and (best is None or n > best[0]):
            best = (n, cred)
    if best is not None:
        return best[1]
    return _env_credentials(parsed.scheme, os.environ if env is None else env)
