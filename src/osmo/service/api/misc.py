"""Health and version."""

from __future__ import annotations

from fastapi import APIRouter

from ... import __version__
from ...protocol import PROTOCOL_VERSION
from .schemas import VersionOut

router = APIRouter(tags=["misc"])


@router.get("/health")
async def health() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/api/version", response_model=VersionOut)
async def version() -> VersionOut:
    return VersionOut(version=__version__, protocol_version=PROTOCOL_VERSION)
