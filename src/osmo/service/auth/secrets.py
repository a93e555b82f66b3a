"""Encryption of stored secrets (credentials) with keys from the server's configuration.

Keys are ``OSMO_SECRET_KEYS="kid1:<base64 32 bytes>,kid2:..."``; the first is used to encrypt,
all of them to decrypt, so keys rotate by prepending a new one. Without the setting, a key is
generated once into ``$OSMO_HOME/secret-key`` (mode 600). Each value is AES-256-GCM with a
random nonce and the key id stored beside it.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
from pathlib import Path

from cryptography.hazmat.primitives.ciphers.aead import AESGCM


class SecretError(Exception):
    pass


class SecretBox:
    def __init__(self, keys: list[tuple[str, bytes]]):
        if not keys:
            raise SecretError("no secret keys configured")
        for kid, key in keys:
            if len(key) != 32:
                raise SecretError(
                    f"secret key {kid!r} must be 32 bytes (base64 of 32 random bytes)"
                )
        self.active = keys[0][0]
        self._keys = dict(keys)

    @classmethod
    def load(cls, configured: str, home: Path) -> SecretBox:
        if configured.strip():
            return cls(_parse(configured))
        path = home / "secret-key"
        if not path.exists():
            home.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write("k1:" + base64.b64encode(secrets.token_bytes(32)).decode() + "\n")
        return cls(_parse(path.read_text()))

    def encrypt(self, plaintext: str) -> str:
        nonce = secrets.token_bytes(12)
        ct = AESGCM(self._keys[self.active]).encrypt(
            nonce, plaintext.encode(), self.active.encode()
        )
        return json.dumps(
            {
                "kid": self.active,
                "n": base64.b64encode(nonce).decode(),
                "c": base64.b64encode(ct).decode(),
            }
        )

    def decrypt(self, blob: str) -> str:
        try:
            d = json.loads(blob)
            key = self._keys[d["kid"]]
        except (ValueError, KeyError, TypeError):
            raise SecretError("a stored secret uses a key this server does not have") from None
        try:
            return (
                AESGCM(key)
                .decrypt(base64.b64decode(d["n"]), base64.b64decode(d["c"]), d["kid"].encode())
                .decode()
            )
        except Exception:
            raise SecretError("a stored secret could not be decrypted (wrong key?)") from None

    def key_id(self, blob: str) -> str | None:
        try:
            return str(json.loads(blob)["kid"])
        except (ValueError, KeyError, TypeError):
            return None


def _parse(text: str) -> list[tuple[str, bytes]]:
    out = []
    for item in text.replace("\n", ",").split(","):
        item = item.strip()
        if not item:
            continue
        kid, sep, b64 = item.partition(":")
        if not sep:
            raise SecretError("secret keys are 'kid:base64key' separated by commas")
        try:
            out.append((kid.strip(), base64.b64decode(b64.strip(), validate=True)))
        except ValueError:
            raise SecretError(f"secret key {kid!r} is not valid base64") from None
    return out
