"""Pools: where workflows are submitted; each maps to one backend. Configs via /api/configs/pool."""

from __future__ import annotations

import time
from typing import Any

from fastapi import APIRouter
from pydantic import ValidationError
from sqlalchemy import func, select

from ..db.models import Group, Pool
from ..errors import Conflict, NotFound, ServiceError
from ..lifecycle.status import ACTIVE
from ..scheduler.pools import UNSET, PoolConfig
from .deps import IdentityDep, ServiceDep
from .schemas import PoolList, PoolOut

router = APIRouter(prefix="/api", tags=["pools"])


def _quota_view(service: Any, cfg: PoolConfig) -> dict[str, Any]:
    used_hn = used_low = 0
    for r in service.scheduler.running.values():
        if r.pool == cfg.name:
            if r.rank >= 2:
                used_low += r.gpus
            else:
                used_hn += r.gpus
    g = cfg.gpu
    return {
        "guarantee": None if g.guarantee == UNSET else g.guarantee,
        "maximum": None if g.maximum == UNSET else g.maximum,
        "weight": g.weight,
        "used": used_hn,
        "free": None if g.guarantee == UNSET else max(0, g.guarantee - used_hn),
        "borrowed": used_low,
    }


@router.get("/pool", response_model=PoolList)
async def list_pools(service: ServiceDep) -> PoolList:
    async with service.sessions() as session:
        pools = await service.lifecycle.pools.load(session)
        queued = dict(
            (
                await session.execute(
                    select(Group.pool, func.count())
                    .where(Group.status == "SCHEDULING")
                    .group_by(Group.pool)
                )
            ).all()
        )
    ledger = service.scheduler.ledger
    out = []
    for name in sorted(pools):
        cfg = pools[name]
        usage = ledger.usage(cfg.backend)
        nodes = [n for n, *_ in usage]
        status = (
            "MAINTENANCE"
            if cfg.enable_maintenance
            else ("ONLINE" if service.hub.is_online(cfg.backend) else "OFFLINE")
        )
        out.append(
            PoolOut(
                name=name,
                backend=cfg.backend,
                description=cfg.description,
                status=status,
                online=service.hub.is_online(cfg.backend),
                default_exit_actions=dict(cfg.default_exit_actions),
                default_platform=cfg.default_platform,
                platforms=sorted(cfg.platforms),
                gpu_quota=_quota_view(service, cfg),
                queued_groups=int(queued.get(name, 0)),
                capacity={
                    "cpus": sum(n.cpus for n in nodes if n.available),
                    "gpus": sum(n.gpus for n in nodes if n.available),
                    "memory_bytes": sum(n.memory_bytes for n in nodes if n.available),
                },
                used={
                    "cpus": sum(u[1] for u in usage),
                    "gpus": sum(u[2] for u in usage),
                    "memory_bytes": sum(u[3] for u in usage),
                },
            )
        )
    return PoolList(pools=out)


@router.get("/configs/pool")
async def get_pool_configs(service: ServiceDep) -> dict[str, Any]:
    async with service.sessions() as session:
        pools = await service.lifecycle.pools.load(session)
    return {
        "pools": {name: cfg.model_dump(exclude={"name"}) for name, cfg in sorted(pools.items())}
    }


@router.get("/configs/pool/{name}")
async def get_pool_config(name: str, service: ServiceDep) -> dict[str, Any]:
    async with service.sessions() as session:
        cfg = await service.lifecycle.pools.get(session, name)
    if cfg is None:
        raise NotFound(f"pool {name!r} does not exist")
    return cfg.model_dump(exclude={"name"})


@router.put("/configs/pool/{name}")
async def put_pool_config(
    name: str, body: dict[str, Any], service: ServiceDep, identity: IdentityDep
) -> dict[str, Any]:
    """Create or replace a pool's configuration (validated as a whole; nothing stored on error)."""
    if not name or not name.replace("-", "").replace("_", "").isalnum():
        raise ServiceError(f"invalid pool name {name!r}: use letters, digits, '-' and '_'")
    try:
        cfg = PoolConfig.model_validate({**body, "name": name})
    except ValidationError as exc:
        errors = [
            {
                "message": f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}",
                "key": ".".join(str(p) for p in e["loc"]),
            }
            for e in exc.errors()
        ]
        raise ServiceError(
            errors[0]["message"] if len(errors) == 1 else f"{len(errors)} invalid pool fields",
            errors,
        ) from None
    if cfg.default_platform and cfg.default_platform not in cfg.platforms:
        raise ServiceError(
            f"default_platform {cfg.default_platform!r} is not one of the pool's platforms"
        )
    now = time.time()
    async with service.lifecycle.txn() as (session, fx):
        row = await session.get(Pool, name)
        data = cfg.model_dump(exclude={"name"})
        if row is None:
            session.add(
                Pool(name=name, backend=cfg.backend, config=data, created_at=now, updated_at=now)
            )
        else:
            row.backend = cfg.backend
            row.config = data
            row.updated_at = now
        fx.wake_scheduler = True
    service.lifecycle.pools.invalidate()
    return data


@router.delete("/configs/pool/{name}")
async def delete_pool_config(
    name: str, service: ServiceDep, identity: IdentityDep
) -> dict[str, str]:
    async with service.lifecycle.txn() as (session, _fx):
        row = await session.get(Pool, name)
        if row is None:
            raise NotFound(f"pool {name!r} does not exist")
        busy = await session.scalar(
            select(func.count())
            .select_from(Group)
            .where(
                Group.pool == name,
                Group.status.in_([*(s.value for s in ACTIVE), "SCHEDULING", "WAITING"]),
            )
        )
        if busy:
            raise Conflict(
                f"pool {name!r} has {busy} unfinished group(s); cancel them or wait before deleting it"
            )
        await session.delete(row)
    service.lifecycle.pools.invalidate()
    return {"deleted": name}
