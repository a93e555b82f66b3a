"""Datasets: named, immutable numbered versions of content-addressed files in a dataset bucket.

A version is a manifest of ``[path, size, sha256]``; file contents live once per bucket at
``<bucket>/objects/<sha[:2]>/<sha>``, so files shared between versions or datasets are stored
(and uploaded) once. Tags name versions and move; labels describe datasets and are queryable.
"""

from __future__ import annotations

import posixpath
import re
import time
from collections.abc import Iterable
from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from ..db.models import Dataset, DatasetObject, DatasetTag, DatasetVersion
from ..errors import Conflict, NotFound, ServiceError

NAME_RE = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]*$")
TAG_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
SHA_RE = re.compile(r"^[0-9a-f]{64}$")


def object_url(bucket: str, sha: str) -> str:
    return f"{bucket.rstrip('/')}/objects/{sha[:2]}/{sha}"


def split_ref(ref: str) -> tuple[str, str | None]:
    name, _, version = ref.partition(":")
    return name, version or None


def check_manifest(entries: Iterable[Any]) -> list[tuple[str, int, str]]:
    """Validated ``(path, size, sha256)`` entries: relative, normalized, no ``..``, unique."""
    out: list[tuple[str, int, str]] = []
    seen: set[str] = set()
    for entry in entries:
        try:
            path, size, sha = entry
        except (TypeError, ValueError):
            raise ServiceError("manifest entries are [path, size, sha256]") from None
        if (
            not isinstance(path, str)
            or not isinstance(size, int)
            or size < 0
            or not isinstance(sha, str)
            or not SHA_RE.match(sha)
        ):
            raise ServiceError(f"invalid manifest entry {entry!r}")
        norm = posixpath.normpath(path)
        if (
            path.startswith("/")
            or norm.startswith("..")
            or "/../" in f"/{path}/"
            or norm in (".", "")
        ):
            raise ServiceError(f"manifest path {path!r} escapes the dataset (absolute or '..')")
        if norm in seen:
            raise ServiceError(f"manifest lists {norm!r} twice")
        seen.add(norm)
        out.append((norm, size, sha))
    return out


async def get_dataset(session: AsyncSession, name: str) -> Dataset:
    row = (await session.execute(select(Dataset).where(Dataset.name == name))).scalar_one_or_none()
    if row is None:
        raise NotFound(f"dataset {name!r} not found")
    return row


async def resolve_version(
    session: AsyncSession, name: str, ref: str | None
) -> tuple[Dataset, DatasetVersion]:
    """A version by number, by tag, or the latest (``ref`` None)."""
    ds = await get_dataset(session, name)
    q = select(DatasetVersion).where(DatasetVersion.dataset_pk == ds.pk)
    if ref is None:
        row = (
            await session.execute(q.order_by(DatasetVersion.version.desc()).limit(1))
        ).scalar_one_or_none()
        if row is None:
            raise NotFound(f"dataset {name!r} has no versions")
        return ds, row
    if ref.isdigit():
        row = (
            await session.execute(q.where(DatasetVersion.version == int(ref)))
        ).scalar_one_or_none()
    else:
        tag = (
            await session.execute(
                select(DatasetTag).where(DatasetTag.dataset_pk == ds.pk, DatasetTag.tag == ref)
            )
        ).scalar_one_or_none()
        row = (
            None
            if tag is None
            else (
                await session.execute(q.where(DatasetVersion.version == tag.version))
            ).scalar_one_or_none()
        )
    if row is None:
        raise NotFound(f"dataset {name!r} has no version or tag {ref!r}")
    return ds, row


async def missing_objects(session: AsyncSession, bucket: str, hashes: list[str]) -> list[str]:
    wanted = sorted({h for h in hashes if SHA_RE.match(h)})
    known: set[str] = set()
    for start in range(0, len(wanted), 500):
        chunk = wanted[start : start + 500]
        known.update(
            (
                await session.execute(
                    select(DatasetObject.sha256).where(
                        DatasetObject.bucket == bucket, DatasetObject.sha256.in_(chunk)
                    )
                )
            )
            .scalars()
            .all()
        )
    return [h for h in wanted if h not in known]


async def create_version(
    session: AsyncSession,
    *,
    name: str,
    bucket: str,
    user: str,
    manifest: list[tuple[str, int, str]],
    tag: str | None = None,
    metadata: dict[str, Any] | None = None,
    labels: dict[str, str] | None = None,
    source: str | None = None,
    present: set[str] | None = None,
) -> DatasetVersion:
    """Record a new version. ``present`` are hashes the caller has verified are in the bucket."""
    if not NAME_RE.match(name):
        raise ServiceError(f"invalid dataset name {name!r}")
    if tag is not None and (not TAG_RE.match(tag) or tag.isdigit()):
        raise ServiceError(f"invalid tag {tag!r}: letters, digits, '.', '_', '-', not only digits")
    now = time.time()
    ds = (await session.execute(select(Dataset).where(Dataset.name == name))).scalar_one_or_none()
    if ds is None:
        ds = Dataset(
            name=name,
            bucket=bucket,
            labels=dict(labels or {}),
            created_by=user,
            created_at=now,
            updated_at=now,
        )
        session.add(ds)
        await session.flush()
    elif ds.bucket != bucket:
        raise Conflict(f"dataset {name!r} lives in {ds.bucket}, not {bucket}")
    missing = set(await missing_objects(session, bucket, [sha for _, _, sha in manifest])) - (
        present or set()
    )
    if missing:
        raise ServiceError(
            f"{len(missing)} file(s) of the manifest are not in the dataset bucket; upload them first (e.g. {sorted(missing)[0]})"
        )
    for sha, size in {sha: size for _, size, sha in manifest}.items():
        if present and sha in present:
            await session.merge(DatasetObject(bucket=bucket, sha256=sha, size=size))
    last = (
        await session.execute(
            select(func.max(DatasetVersion.version)).where(DatasetVersion.dataset_pk == ds.pk)
        )
    ).scalar()
    version = DatasetVersion(
        dataset_pk=ds.pk,
        version=(last or 0) + 1,
        files=len(manifest),
        size=sum(s for _, s, _ in manifest),
        manifest=[list(e) for e in manifest],
        metadata_=dict(metadata or {}),
        created_by=user,
        created_at=now,
        source=source,
    )
    session.add(version)
    if labels:
        ds.labels = {**(ds.labels or {}), **labels}
    ds.updated_at = now
    await session.flush()
    if tag:
        await set_tag(session, ds, tag, version.version)
    return version


async def set_tag(session: AsyncSession, ds: Dataset, tag: str, version: int) -> None:
    if not TAG_RE.match(tag) or tag.isdigit():
        raise ServiceError(f"invalid tag {tag!r}")
    exists = (
        await session.execute(
            select(DatasetVersion.pk).where(
                DatasetVersion.dataset_pk == ds.pk, DatasetVersion.version == version
            )
        )
    ).scalar_one_or_none()
    if exists is None:
        raise NotFound(f"dataset {ds.name!r} has no version {version}")
    row = await session.get(DatasetTag, (ds.pk, tag))
    if row is None:
        session.add(DatasetTag(dataset_pk=ds.pk, tag=tag, version=version))
    else:
        row.version = version


async def tags_of(session: AsyncSession, ds: Dataset) -> dict[int, list[str]]:
    out: dict[int, list[str]] = {}
    for tag, version in (
        await session.execute(
            select(DatasetTag.tag, DatasetTag.version)
            .where(DatasetTag.dataset_pk == ds.pk)
            .order_by(DatasetTag.tag)
        )
    ).all():
        out.setdefault(version, []).append(tag)
    return out


async def delete_dataset(session: AsyncSession, name: str, version: int | None) -> int:
    ds = await get_dataset(session, name)
    if version is None:
        n = (
            await session.execute(
                select(func.count())
                .select_from(DatasetVersion)
                .where(DatasetVersion.dataset_pk == ds.pk)
            )
        ).scalar() or 0
        await session.delete(ds)
        return int(n)
    result = await session.execute(
        delete(DatasetVersion)
        .where(DatasetVersion.dataset_pk == ds.pk, DatasetVersion.version == version)
        .returning(DatasetVersion.pk)
    )
    if not result.scalars().all():
        raise NotFound(f"dataset {name!r} has no version {version}")
    await session.execute(
        delete(DatasetTag).where(DatasetTag.dataset_pk == ds.pk, DatasetTag.version == version)
    )
    return 1
