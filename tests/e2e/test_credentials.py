"""Credentials: stored encrypted, never returned, injected into tasks, masked in their logs."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from .platform import Platform, task

pytestmark = pytest.mark.e2e

SECRET = "s3cr3t-value-4242"


def test_generic_credentials_are_injected_and_masked(platform: Platform, tmp_path: Path) -> None:
    out = platform.osmo(
        "credential", "set", "wandb", "--payload", f"key={SECRET}", "--payload", "user=bob"
    )
    assert "stored" in out.stdout and SECRET not in out.stdout
    listed = json.loads(platform.osmo("credential", "list", "-t", "json").stdout)
    [row] = [c for c in listed["credentials"] if c["name"] == "wandb"]
    assert row["type"] == "GENERIC" and row["keys"] == ["key", "user"]
    assert SECRET not in json.dumps(listed)
    path = tmp_path / "wf.yaml"
    path.write_text(
        """
workflow:
  name: uses-secret
  tasks:
  - name: t
    image: alpine
    command: [sh, -c]
    args: ["echo token=$WANDB_KEY; echo file=$(cat /run/creds/key); echo user=$(cat /run/creds/user)"]
    credentials:
      wandb: {WANDB_KEY: key}
      other: /run/creds
"""
    )
    # A credential the submitter does not have is refused at submit, naming it.
    missing = platform.osmo("workflow", "submit", str(path), check=False)
    assert missing.returncode == 1 and "credential 'other' not found" in missing.stderr
    platform.osmo(
        "credential", "set", "other", "--payload", f"key={SECRET}", "--payload", "user=bob"
    )
    wf_id = platform.submit(path)
    wf = platform.wait(wf_id)
    assert task(wf, "t")["status"] == "COMPLETED", wf
    logs = platform.logs(wf_id)
    assert SECRET not in logs
    assert "token=" + "*" * len(SECRET) in logs
    assert "file=" + "*" * len(SECRET) in logs
    assert "user=bob" in logs  # short values are not masked
    if platform.database_url.startswith("sqlite"):
        raw = (
            sqlite3.connect(str(platform.home / "osmo.db"))
            .execute("select payload from credentials")
            .fetchall()
        )
        assert raw and all(SECRET not in r[0] for r in raw)
    platform.osmo("credential", "delete", "other")
    gone = platform.osmo("credential", "delete", "other", check=False)
    assert gone.returncode == 1 and "not found" in gone.stderr


def test_bad_credentials_are_rejected(platform: Platform) -> None:
    out = platform.osmo(
        "credential", "set", "d", "--type", "DATA", "--payload", "access_key_id=x", check=False
    )
    assert out.returncode == 1 and "needs access_key, endpoint" in out.stderr
    out = platform.osmo(
        "credential", "set", "r", "--type", "REGISTRY", "--payload", "registry=nvcr.io", check=False
    )
    assert out.returncode == 1 and "REGISTRY credential needs 'auth'" in out.stderr
    out = platform.osmo("credential", "set", "bad name", "--payload", "k=v", check=False)
    assert out.returncode == 1 and "invalid credential name" in out.stderr
    out = platform.osmo("credential", "set", "x", "--payload", "novalue", check=False)
    assert out.returncode == 1 and "KEY=VALUE" in out.stderr
