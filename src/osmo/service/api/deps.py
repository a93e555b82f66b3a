"""Shared route dependencies."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from ..auth.identity import Identity, current_identity
from ..context import Service


def get_service(request: Request) -> Service:
    service: Service = request.app.state.service
    return service


ServiceDep = Annotated[Service, Depends(get_service)]
IdentityDep = Annotated[Identity, Depends(current_identity)]
