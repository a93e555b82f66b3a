"""Pools: where workflows are submitted; each maps to one backend."""

from __future__ import annotations

from fastapi import APIRouter
from sqlalchemy import select

from ..db.models import Pool
from .deps import ServiceDep
from .schemas import PoolList, PoolOut

router = APIRouter(prefix="/api", tags=["pools"])


@router.get("/pool", response_model=PoolList)
async def list_pools(service: ServiceDep) -> PoolList:
    async with service.sessions() as session:
        pools = (await session.execute(select(Pool).order_by(Pool.name))).scalars().all()
    ledger = service.scheduler.ledger
    out = []
    for p in pools:
        nodes = ledger.nodes.get(p.backend, [])
        used = ledger.used.get(p.backend, {})
        out.append(
            PoolOut(
                name=p.name,
                backend=p.backend,
                description=p.description,
                online=service.hub.is_online(p.backend),
                default_exit_actions=dict(p.default_exit_actions or {}),
                capacity={
                    "cpus": sum(n.cpus for n in nodes),
                    "gpus": sum(n.gpus for n in nodes),
                    "memory_bytes": sum(n.memory_bytes for n in nodes),
                },
                used={
                    "cpus": sum(u.cpu for u in used.values()),
                    "gpus": sum(u.gpu for u in used.values()),
                    "memory_bytes": sum(u.memory for u in used.values()),
                },
            )
        )
    return PoolList(pools=out)
