"""Backends: the compute behind pools; operators register them by dialing in."""

from __future__ import annotations

from fastapi import APIRouter
from sqlalchemy import func, select

from ..auth import backend_tokens
from ..db import queries
from ..db.models import Backend, Task
from ..errors import Conflict, NotFound, ServiceError
from ..lifecycle.backends import ACTIVE_VALUES
from .deps import IdentityDep, ServiceDep
from .schemas import BackendList, BackendOut, TokenOut

router = APIRouter(prefix="/api", tags=["backends"])


@router.get("/configs/backend", response_model=BackendList)
async def list_backends(service: ServiceDep) -> BackendList:
    async with service.sessions() as session:
        rows = (await session.execute(select(Backend).order_by(Backend.name))).scalars().all()
        pools = await service.lifecycle.pools.load(session)
    out = []
    for b in rows:
        link = service.hub.links.get(b.name)
        beat = link.last_heartbeat if link and link.last_heartbeat else b.last_heartbeat
        out.append(
            BackendOut(
                name=b.name,
                online=service.hub.is_online(b.name),
                executor=b.executor,
                version=b.version,
                cluster_id=b.cluster_id,
                nodes=len(b.nodes or []),
                last_heartbeat=queries.iso(beat),
                pools=sorted(p for p, cfg in pools.items() if cfg.backend == b.name),
            )
        )
    return BackendList(backends=out)


def _check_name(name: str) -> None:
    if not name or not all(c.isalnum() or c in "-_" for c in name):
        raise ServiceError(f"invalid backend name {name!r}: use letters, digits, '-' and '_'")


@router.post("/configs/backend/{name}/token", response_model=TokenOut)
async def create_token(name: str, service: ServiceDep, identity: IdentityDep) -> TokenOut:
    """A new bootstrap token for a backend (shown once); older ones expire after the overlap."""
    _check_name(name)
    async with service.sessions() as session, session.begin():
        token, until = await backend_tokens.create(
            session, name, service.settings.token_overlap_seconds
        )
    return TokenOut(backend=name, token=token, previous_valid_until=queries.iso(until))


@router.delete("/configs/backend/{name}/token")
async def revoke_tokens(name: str, service: ServiceDep, identity: IdentityDep) -> dict[str, object]:
    """Revoke every token of a backend at once; a connected operator is disconnected."""
    _check_name(name)
    async with service.sessions() as session, session.begin():
        n = await backend_tokens.revoke(session, name)
    if n == 0:
        raise NotFound(f"backend {name!r} has no active tokens")
    await service.hub.disconnect(name, "its token was revoked")
    return {"backend": name, "revoked": n}


@router.delete("/configs/backend/{name}")
async def delete_backend(name: str, service: ServiceDep, identity: IdentityDep) -> dict[str, str]:
    """Forget a backend (so another cluster may take its name); refused while it has tasks."""
    async with service.sessions() as session, session.begin():
        row = await session.get(Backend, name)
        if row is None:
            raise NotFound(f"backend {name!r} does not exist")
        busy = await session.scalar(
            select(func.count())
            .select_from(Task)
            .where(Task.backend == name, Task.status.in_(ACTIVE_VALUES))
        )
        if busy:
            raise Conflict(f"backend {name!r} still has {busy} active task(s)")
        if service.hub.connected(name):
            raise Conflict(f"backend {name!r} is connected; stop its operator first")
        await session.delete(row)
    # Its nodes are no longer offered or listed (until an operator registers the name again).
    service.scheduler.ledger.set_nodes(name, [])
    return {"deleted": name}
