"""Scheduler statistics (admissions, dispatch rate, decision latency) for operators and benches."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from .deps import IdentityDep, ServiceDep

router = APIRouter(prefix="/api", tags=["scheduler"])


@router.get("/scheduler/stats")
async def scheduler_stats(service: ServiceDep) -> dict[str, Any]:
    s = service.scheduler
    return {**s.stats.as_dict(), "queued_groups": len(s.queue), "running_groups": len(s.running)}


@router.post("/scheduler/stats/reset")
async def reset_scheduler_stats(service: ServiceDep, identity: IdentityDep) -> dict[str, str]:
    service.scheduler.reset_stats()
    return {"status": "reset"}
