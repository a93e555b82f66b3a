from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from runtime_helpers import Runner


@pytest.fixture
def runner(tmp_path: Path) -> Iterator[Runner]:
    r = Runner(tmp_path)
    yield r
    r.stop_all()


@pytest.fixture(autouse=True)
def _auto_sandbox(monkeypatch: pytest.MonkeyPatch) -> None:
    # Tests that want fallback mode set OSMO_SANDBOX=none themselves.
    monkeypatch.delenv("OSMO_SANDBOX", raising=False)
