"""Per-backend operator tokens: created once (printed, never stored in clear), rotated with an
overlap window, revoked at once."""

from __future__ import annotations

import hashlib
import secrets
import time

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from ..db.models import BackendToken


def token_hash(token: str) -> str:
    return hashlib.sha256(token.strip().encode()).hexdigest()


async def create(
    session: AsyncSession, backend: str, overlap_seconds: float
) -> tuple[str, float | None]:
    """A new token for ``backend``; earlier ones stay valid for ``overlap_seconds`` more."""
    now = time.time()
    until = now + overlap_seconds
    previous = (
        (
            await session.execute(
                select(BackendToken).where(
                    BackendToken.backend == backend, BackendToken.revoked_at.is_(None)
                )
            )
        )
        .scalars()
        .all()
    )
    for row in previous:
        if row.expires_at is None or row.expires_at > until:
            row.expires_at = until
    token = secrets.token_urlsafe(32)
    session.add(BackendToken(backend=backend, token_hash=token_hash(token), created_at=now))
    return token, (until if previous else None)


async def revoke(session: AsyncSession, backend: str) -> int:
    result = await session.execute(
        update(BackendToken)
        .where(BackendToken.backend == backend, BackendToken.revoked_at.is_(None))
        .values(revoked_at=time.time())
        .returning(BackendToken.pk)
    )
    return len(result.scalars().all())


async def valid(session: AsyncSession, backend: str, token: str | None) -> bool:
    if not token:
        return False
    row = (
        await session.execute(
            select(BackendToken).where(BackendToken.token_hash == token_hash(token))
        )
    ).scalar_one_or_none()
    if row is None or row.backend != backend or row.revoked_at is not None:
        return False
    return row.expires_at is None or row.expires_at > time.time()
