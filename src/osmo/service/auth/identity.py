"""The caller's identity, given to every route through one dependency.

Embedded mode binds 127.0.0.1 and acts as a local admin; real users, roles and tokens fill this
in later without touching routes.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from fastapi import Request


@dataclass(frozen=True)
class Identity:
    user: str
    roles: tuple[str, ...] = field(default=("osmo-admin",))


def current_identity(request: Request) -> Identity:
    service = request.app.state.service
    user = request.headers.get("x-osmo-user") or service.settings.local_user()
    return Identity(user=user)
