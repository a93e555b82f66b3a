"""The credential store: DATA (object stores), REGISTRY (image pulls), GENERIC (task secrets).

Payloads are encrypted at rest and never returned by the API. DATA credentials are matched to
storage URLs by their ``endpoint`` (longest prefix wins); GENERIC ones are injected into tasks
as the task's ``credentials:`` key asks (environment variables or files in a folder).
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from ...spec.model import TaskSpec
from ..db.models import Credential
from ..errors import NotFound, ServiceError
from .secrets import SecretBox

TYPES = ("DATA", "REGISTRY", "GENERIC")
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
DATA_KEYS = {
    "access_key_id",
    "access_key",
    "endpoint",
    "region",
    "override_url",
    "addressing_style",
    "session_token",
}
MASK_MIN = 8  # values this long or longer are masked in task logs


def validate_payload(ctype: str, payload: dict[str, str]) -> str | None:
    """Checks a payload for its type; returns the DATA endpoint (None for other types)."""
    if ctype not in TYPES:
        raise ServiceError(f"unknown credential type {ctype!r}; use DATA, REGISTRY or GENERIC")
    if not payload:
        raise ServiceError("a credential needs a payload: --payload KEY=VALUE ...")
    for k, v in payload.items():
        if not k or not isinstance(v, str):
            raise ServiceError("payload keys and values must be non-empty strings")
    if ctype == "DATA":
        unknown = set(payload) - DATA_KEYS
        if unknown:
            raise ServiceError(
                f"unknown DATA credential keys: {', '.join(sorted(unknown))} (allowed: {', '.join(sorted(DATA_KEYS))})"
            )
        missing = [k for k in ("access_key_id", "access_key", "endpoint") if not payload.get(k)]
        if missing and not (
            payload.get("endpoint", "").startswith("azure://") and payload.get("access_key")
        ):
            raise ServiceError(f"a DATA credential needs {', '.join(missing)}")
        endpoint = payload["endpoint"].rstrip("/")
        if not re.match(r"^(s3|gs|azure|tos|swift)://[^/]+", endpoint):
            raise ServiceError(
                f"endpoint {endpoint!r} must be a storage URL such as s3://bucket or azure://account/container"
            )
        if payload.get("addressing_style", "auto") not in ("auto", "path", "virtual"):
            raise ServiceError("addressing_style must be auto, path or virtual")
        return endpoint
    if ctype == "REGISTRY" and not (
        payload.get("auth") or (payload.get("username") and payload.get("password"))
    ):
        raise ServiceError("a REGISTRY credential needs 'auth' (or 'username' and 'password')")
    return None


async def set_credential(
    session: AsyncSession, box: SecretBox, user: str, name: str, ctype: str, payload: dict[str, str]
) -> Credential:
    if not NAME_RE.match(name):
        raise ServiceError(f"invalid credential name {name!r}: letters, digits, '.', '_' and '-'")
    endpoint = validate_payload(ctype, payload)
    now = time.time()
    row = (
        await session.execute(
            select(Credential).where(Credential.user == user, Credential.name == name)
        )
    ).scalar_one_or_none()
    blob = box.encrypt(json.dumps(payload))
    if row is None:
        row = Credential(
            user=user,
            name=name,
            type=ctype,
            payload=blob,
            keys=sorted(payload),
            endpoint=endpoint,
            created_at=now,
            updated_at=now,
        )
        session.add(row)
    else:
        row.type, row.payload, row.keys, row.endpoint, row.updated_at = (
            ctype,
            blob,
            sorted(payload),
            endpoint,
            now,
        )
    return row


async def list_credentials(session: AsyncSession, user: str) -> list[Credential]:
    return list(
        (
            await session.execute(
                select(Credential).where(Credential.user == user).order_by(Credential.name)
            )
        )
        .scalars()
        .all()
    )


async def delete_credential(session: AsyncSession, user: str, name: str) -> None:
    row = (
        await session.execute(
            select(Credential).where(Credential.user == user, Credential.name == name)
        )
    ).scalar_one_or_none()
    if row is None:
        raise NotFound(f"credential {name!r} not found")
    await session.delete(row)


@dataclass
class TaskSecrets:
    environment: dict[str, str] = field(default_factory=dict)
    files: list[tuple[str, str]] = field(default_factory=list)  # (path, contents)
    data: list[dict[str, Any]] = field(default_factory=list)  # DATA payloads for the task's URLs
    mask: set[str] = field(default_factory=set)


async def check_references(
    session: AsyncSession, user: str, tasks: list[TaskSpec]
) -> list[dict[str, Any]]:
    """Errors for ``credentials:`` names the submitter does not have (checked at submit)."""
    wanted = {name for t in tasks for name in t.credentials}
    if not wanted:
        return []
    have = {r.name: r for r in await list_credentials(session, user)}
    errors = []
    for t in tasks:
        for name, spec in t.credentials.items():
            row = have.get(name)
            if row is None:
                errors.append(
                    {
                        "message": f"task {t.name!r}: credential {name!r} not found for user {user!r} (osmo credential set {name} ...)",
                        "task": t.name,
                        "key": f"credentials.{name}",
                        "line": None,
                        "column": None,
                    }
                )
            elif isinstance(spec, dict):
                missing = [k for k in spec.values() if k not in (row.keys or [])]
                if missing:
                    errors.append(
                        {
                            "message": f"task {t.name!r}: credential {name!r} has no key(s) {', '.join(missing)}",
                            "task": t.name,
                            "key": f"credentials.{name}",
                            "line": None,
                            "column": None,
                        }
                    )
    return errors


async def check_data_access(
    session: AsyncSession, user: str, tasks: list[TaskSpec]
) -> list[dict[str, Any]]:
    """Errors for object-store URLs of the spec that no DATA credential of the user covers."""
    urls: list[tuple[str, str, str]] = []
    for t in tasks:
        for section, entries in (
            ("inputs", [(x.kind, x.url) for x in t.inputs]),
            ("outputs", [(x.kind, x.url) for x in t.outputs]),
        ):
            for i, (kind, url) in enumerate(entries):
                if kind == "url" and url and url.startswith(("s3://", "gs://", "azure://")):
                    urls.append((t.name, f"{section}[{i}].url", url))
    if not urls:
        return []
    endpoints = [
        r.endpoint for r in await list_credentials(session, user) if r.type == "DATA" and r.endpoint
    ]
    errors = []
    for task, key, url in urls:
        if not any(url == e or url.startswith(e.rstrip("/") + "/") for e in endpoints):
            scheme_bucket = "/".join(url.split("/")[:3])
            errors.append(
                {
                    "message": f"task {task!r}: no DATA credential of {user!r} covers {url}; add one with "
                    f"'osmo credential set NAME --type DATA --payload endpoint={scheme_bucket} --payload access_key_id=... --payload access_key=...'",
                    "task": task,
                    "key": key,
                    "line": None,
                    "column": None,
                }
            )
    return errors


async def task_secrets(
    session: AsyncSession, box: SecretBox, user: str, task: TaskSpec
) -> TaskSecrets:
    """What a task gets from the store: GENERIC injections, DATA credentials for its URLs."""
    out = TaskSecrets()
    rows = {r.name: r for r in await list_credentials(session, user)}
    for name, spec in task.credentials.items():
        row = rows.get(name)
        if row is None:
            continue
        payload: dict[str, str] = json.loads(box.decrypt(row.payload))
        out.mask.update(v for v in payload.values() if len(v) >= MASK_MIN)
        if isinstance(spec, dict):
            for env_name, key in spec.items():
                if key in payload:
                    out.environment[env_name] = payload[key]
        else:
            for key, value in payload.items():
                out.files.append((f"{spec.rstrip('/')}/{key}", value))
    urls = [i.url for i in task.inputs if i.kind == "url" and i.url] + [
        o.url for o in task.outputs if o.kind == "url" and o.url
    ]
    if urls:
        data_rows = [r for r in rows.values() if r.type == "DATA" and r.endpoint]
        for url in urls:
            matches = [r for r in data_rows if url.startswith(r.endpoint or "\0")]
            if matches:
                best = max(matches, key=lambda r: len(r.endpoint or ""))
                payload = json.loads(box.decrypt(best.payload))
                if payload not in out.data:
                    out.data.append(payload)
                out.mask.update(
                    v
                    for k, v in payload.items()
                    if k in ("access_key", "session_token") and len(v) >= MASK_MIN
                )
    return out
