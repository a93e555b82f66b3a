"""Bootstrap tokens operators present when they dial in (only hashes are kept in memory)."""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from pathlib import Path


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.strip().encode()).digest()


class OperatorTokens:
    def __init__(self, tokens: list[str]):
        self._hashes = [_digest(t) for t in tokens if t.strip()]

    @classmethod
    def load(cls, configured: str, home: Path) -> OperatorTokens:
        """``OSMO_OPERATOR_TOKENS`` if set, else ``$OSMO_HOME/operator-token`` (made on first start)."""
        if configured.strip():
            return cls(configured.split(","))
        path = home / "operator-token"
        if not path.exists():
            home.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(secrets.token_urlsafe(32) + "\n")
        return cls([path.read_text()])

    def valid(self, token: str | None) -> bool:
        if not token:
            return False
        d = _digest(token)
        return any(hmac.compare_digest(d, h) for h in self._hashes)

    def add(self, token: str) -> None:
        self._hashes.append(_digest(token))
