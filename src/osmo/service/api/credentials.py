"""Credentials: stored encrypted, listed by name and type, never returned."""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel, Field

from ..auth import credentials as store
from ..db import queries
from .deps import IdentityDep, ServiceDep

router = APIRouter(prefix="/api", tags=["credentials"])


class CredentialBody(BaseModel):
    type: str = Field(default="GENERIC", description="DATA, REGISTRY or GENERIC")
    payload: dict[str, str]


class CredentialOut(BaseModel):
    name: str
    type: str
    keys: list[str]
    endpoint: str | None = None
    created_at: str
    updated_at: str


class CredentialList(BaseModel):
    credentials: list[CredentialOut]


@router.get("/credentials", response_model=CredentialList)
async def list_credentials(service: ServiceDep, identity: IdentityDep) -> CredentialList:
    async with service.sessions() as session:
        rows = await store.list_credentials(session, identity.user)
    return CredentialList(
        credentials=[
            CredentialOut(
                name=r.name,
                type=r.type,
                keys=list(r.keys or []),
                endpoint=r.endpoint,
                created_at=queries.iso(r.created_at) or "",
                updated_at=queries.iso(r.updated_at) or "",
            )
            for r in rows
        ]
    )


@router.post("/credentials/{name}", response_model=CredentialOut)
async def set_credential(
    name: str, body: CredentialBody, service: ServiceDep, identity: IdentityDep
) -> CredentialOut:
    async with service.sessions() as session, session.begin():
        r = await store.set_credential(
            session, service.secrets, identity.user, name, body.type.upper(), body.payload
        )
    return CredentialOut(
        name=r.name,
        type=r.type,
        keys=list(r.keys or []),
        endpoint=r.endpoint,
        created_at=queries.iso(r.created_at) or "",
        updated_at=queries.iso(r.updated_at) or "",
    )


@router.delete("/credentials/{name}")
async def delete_credential(
    name: str, service: ServiceDep, identity: IdentityDep
) -> dict[str, str]:
    async with service.sessions() as session, session.begin():
        await store.delete_credential(session, identity.user, name)
    return {"deleted": name}
