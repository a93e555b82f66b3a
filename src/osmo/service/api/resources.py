"""Resources: the nodes backends report, with what admitted work holds on them."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from sqlalchemy import select

from ..db.models import Pool
from ..scheduler.ledger import NodeUse
from .deps import ServiceDep
from .schemas import NodeOut, ResourceList

router = APIRouter(prefix="/api", tags=["resources"])


@router.get("/resources", response_model=ResourceList)
async def list_resources(
    service: ServiceDep, pools: Annotated[list[str] | None, Query()] = None
) -> ResourceList:
    if pools is None:
        pools = []
    async with service.sessions() as session:
        rows = (await session.execute(select(Pool))).scalars().all()
    pools_of: dict[str, list[str]] = {}
    for p in rows:
        pools_of.setdefault(p.backend, []).append(p.name)
    ledger = service.scheduler.ledger
    out = []
    for backend, nodes in sorted(ledger.nodes.items()):
        if pools and not set(pools) & set(pools_of.get(backend, [])):
            continue
        for n in nodes:
            u = ledger.used.get(backend, {}).get(n.name, NodeUse())
            out.append(
                NodeOut(
                    name=n.name,
                    backend=backend,
                    pools=sorted(pools_of.get(backend, [])),
                    cpus=n.cpus,
                    memory_bytes=n.memory_bytes,
                    gpus=n.gpus,
                    gpu_type=n.gpu_type,
                    available=n.available and service.hub.is_online(backend),
                    used_cpus=u.cpu,
                    used_memory_bytes=u.memory,
                    used_gpus=u.gpu,
                    labels=n.labels,
                )
            )
    return ResourceList(resources=out)
