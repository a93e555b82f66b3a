"""Resources: the nodes backends report, with what admitted work holds on them."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from ..errors import NotFound
from .deps import ServiceDep
from .schemas import NodeOut, ResourceList

router = APIRouter(prefix="/api", tags=["resources"])


async def _nodes(service: ServiceDep, pools: list[str]) -> list[NodeOut]:
    async with service.sessions() as session:
        configs = await service.lifecycle.pools.load(session)
    pools_of: dict[str, list[str]] = {}
    for name, cfg in configs.items():
        pools_of.setdefault(cfg.backend, []).append(name)
    ledger = service.scheduler.ledger
    out = []
    for backend in sorted(ledger.backends):
        if pools and not set(pools) & set(pools_of.get(backend, [])):
            continue
        online = service.hub.is_online(backend)
        for n, cpu, gpu, mem in ledger.usage(backend):
            platforms = sorted(
                f"{pool}/{pname}"
                for pool in pools_of.get(backend, [])
                for pname, p in configs[pool].platforms.items()
                if configs[pool].node_matches(p, n)
            )
            out.append(
                NodeOut(
                    name=n.name,
                    backend=backend,
                    pools=sorted(pools_of.get(backend, [])),
                    platforms=platforms,
                    cpus=n.cpus,
                    memory_bytes=n.memory_bytes,
                    gpus=n.gpus,
                    gpu_type=n.gpu_type,
                    storage_bytes=n.storage_bytes,
                    available=n.available and online,
                    used_cpus=cpu,
                    used_memory_bytes=mem,
                    used_gpus=gpu,
                    labels=n.labels,
                )
            )
    return out


@router.get("/resources", response_model=ResourceList)
async def list_resources(
    service: ServiceDep,
    pools: Annotated[list[str], Query()] = [],  # noqa: B006 - FastAPI copies query defaults
) -> ResourceList:
    return ResourceList(resources=await _nodes(service, pools))


@router.get("/resources/{node}", response_model=NodeOut)
async def resource_info(node: str, service: ServiceDep) -> NodeOut:
    for n in await _nodes(service, []):
        if n.name == node:
            return n
    raise NotFound(f"node {node!r} is not reported by any backend")
