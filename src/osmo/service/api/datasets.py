"""Datasets: versions, tags, labels and manifests; file contents go client ↔ bucket directly."""

from __future__ import annotations

import asyncio
import json
from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field
from sqlalchemy import select

from ..db import queries
from ..db.models import Dataset, DatasetVersion
from ..errors import ServiceError
from ..lifecycle import datasets as ds_rules
from .deps import IdentityDep, ServiceDep

router = APIRouter(prefix="/api", tags=["datasets"])


class MissingBody(BaseModel):
    hashes: list[str]


class VersionBody(BaseModel):
    manifest: list[list[Any]]
    tag: str | None = None
    metadata: dict[str, str] = Field(default_factory=dict)
    labels: dict[str, str] = Field(default_factory=dict)


class TagBody(BaseModel):
    tag: str
    version: int


class LabelBody(BaseModel):
    set: dict[str, str] = Field(default_factory=dict)
    delete: list[str] = Field(default_factory=list)


def bucket_store(service: Any) -> Any:
    from ...storage import open_store
    from ...storage.credentials import Credentials

    creds = None
    if service.settings.dataset_credential:
        payload = json.loads(service.settings.dataset_credential)
        creds = Credentials.model_validate(
            {k: v for k, v in payload.items() if k in Credentials.model_fields}
        )
    bucket = service.settings.resolved_dataset_url
    return open_store(bucket, creds) if creds else open_store(bucket)


def _exists(service: Any, urls: list[str]) -> set[str]:
    store = bucket_store(service)
    found = set()
    for url in urls:
        try:
            if store.list(url):
                found.add(url)
        except Exception:  # not there (or unreadable): the caller reports it missing
            continue
    return found


@router.get("/dataset/bucket")
async def dataset_bucket(service: ServiceDep) -> dict[str, str]:
    return {"bucket": service.settings.resolved_dataset_url}


@router.post("/dataset/{name}/missing")
async def dataset_missing(name: str, body: MissingBody, service: ServiceDep) -> dict[str, Any]:
    bucket = service.settings.resolved_dataset_url
    async with service.sessions() as session:
        missing = await ds_rules.missing_objects(session, bucket, body.hashes)
    return {"bucket": bucket, "missing": missing}


@router.post("/dataset/{name}/version")
async def dataset_create_version(
    name: str, body: VersionBody, service: ServiceDep, identity: IdentityDep
) -> dict[str, Any]:
    manifest = ds_rules.check_manifest(body.manifest)
    bucket = service.settings.resolved_dataset_url
    async with service.sessions() as session:
        unknown = await ds_rules.missing_objects(session, bucket, [sha for _, _, sha in manifest])
    urls = {ds_rules.object_url(bucket, sha): sha for sha in unknown}
    found = await asyncio.to_thread(_exists, service, list(urls))
    absent = [sha for url, sha in urls.items() if url not in found]
    if absent:
        raise ServiceError(
            f"{len(absent)} file(s) of the manifest are not in the dataset bucket {bucket}; upload them first"
        )
    async with service.sessions() as session, session.begin():
        v = await ds_rules.create_version(
            session,
            name=name,
            bucket=bucket,
            user=identity.user,
            manifest=manifest,
            tag=body.tag,
            metadata=body.metadata,
            labels=body.labels,
            source="upload",
            present=set(unknown),
        )
    return {
        "name": name,
        "version": v.version,
        "files": v.files,
        "size": v.size,
        "new_objects": len(unknown),
    }


@router.get("/dataset")
async def dataset_list(
    service: ServiceDep,
    label: Annotated[list[str], Query()] = [],  # noqa: B006 - FastAPI copies query defaults
    name: str | None = None,
) -> dict[str, Any]:
    wanted: dict[str, str] = {}
    for item in label:
        k, sep, v = item.partition("=")
        if not sep or not k:
            raise ServiceError(f"--label expects KEY=VALUE, got {item!r}")
        wanted[k] = v
    async with service.sessions() as session:
        rows = (await session.execute(select(Dataset).order_by(Dataset.name))).scalars().all()
        out = []
        for d in rows:
            if name and name not in d.name:
                continue
            if any((d.labels or {}).get(k) != v for k, v in wanted.items()):
                continue
            latest = (
                await session.execute(
                    select(DatasetVersion)
                    .where(DatasetVersion.dataset_pk == d.pk)
                    .order_by(DatasetVersion.version.desc())
                    .limit(1)
                )
            ).scalar_one_or_none()
            out.append(
                {
                    "name": d.name,
                    "labels": d.labels or {},
                    "latest_version": latest.version if latest else None,
                    "files": latest.files if latest else 0,
                    "size": latest.size if latest else 0,
                    "updated_at": queries.iso(d.updated_at),
                }
            )
    return {"datasets": out}


@router.get("/dataset/{name}")
async def dataset_info(name: str, service: ServiceDep) -> dict[str, Any]:
    async with service.sessions() as session:
        d = await ds_rules.get_dataset(session, name)
        tags = await ds_rules.tags_of(session, d)
        versions = (
            (
                await session.execute(
                    select(DatasetVersion)
                    .where(DatasetVersion.dataset_pk == d.pk)
                    .order_by(DatasetVersion.version)
                )
            )
            .scalars()
            .all()
        )
    return {
        "name": d.name,
        "bucket": d.bucket,
        "labels": d.labels or {},
        "created_by": d.created_by,
        "versions": [
            {
                "version": v.version,
                "files": v.files,
                "size": v.size,
                "tags": tags.get(v.version, []),
                "metadata": v.metadata_ or {},
                "created_by": v.created_by,
                "created_at": queries.iso(v.created_at),
                "source": v.source,
            }
            for v in versions
        ],
    }


@router.get("/dataset/{name}/manifest")
async def dataset_manifest(
    name: str, service: ServiceDep, ref: str | None = None
) -> dict[str, Any]:
    async with service.sessions() as session:
        d, v = await ds_rules.resolve_version(session, name, ref)
    return {"name": d.name, "version": v.version, "bucket": d.bucket, "manifest": v.manifest}


@router.post("/dataset/{name}/tag")
async def dataset_tag(
    name: str, body: TagBody, service: ServiceDep, identity: IdentityDep
) -> dict[str, Any]:
    async with service.sessions() as session, session.begin():
        d = await ds_rules.get_dataset(session, name)
        await ds_rules.set_tag(session, d, body.tag, body.version)
    return {"name": name, "tag": body.tag, "version": body.version}


@router.post("/dataset/{name}/label")
async def dataset_label(
    name: str, body: LabelBody, service: ServiceDep, identity: IdentityDep
) -> dict[str, Any]:
    async with service.sessions() as session, session.begin():
        d = await ds_rules.get_dataset(session, name)
        labels = {k: v for k, v in (d.labels or {}).items() if k not in body.delete}
        labels.update(body.set)
        d.labels = labels
    return {"name": name, "labels": labels}


@router.delete("/dataset/{name}")
async def dataset_delete(
    name: str, service: ServiceDep, identity: IdentityDep, version: int | None = None
) -> dict[str, Any]:
    async with service.sessions() as session, session.begin():
        n = await ds_rules.delete_dataset(session, name, version)
    return {"name": name, "deleted_versions": n}
