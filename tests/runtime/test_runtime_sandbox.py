"""Sandbox mode selection and the bwrap command line (no task is run here)."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from osmo.runtime import sandbox
from osmo.runtime.sandbox import SandboxError, bwrap_argv, sandbox_mode
from osmo.runtime.taskdir import TaskDir


@pytest.fixture
def fresh_probe() -> Iterator[None]:
    saved = dict(sandbox._probe_cache), list(sandbox._bwrap_exe)
    sandbox._probe_cache.clear()
    sandbox._bwrap_exe.clear()
    yield
    sandbox._probe_cache.clear()
    sandbox._probe_cache.update(saved[0])
    sandbox._bwrap_exe[:] = saved[1]


def test_missing_bwrap_falls_back_with_one_warning(
    fresh_probe: None,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with caplog.at_level(logging.WARNING, logger="osmo.runtime.sandbox"):
        assert sandbox_mode() == "none"
        assert sandbox_mode() == "none"
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 1
    assert "bwrap is not installed" in warnings[0] and "WITHOUT a sandbox" in warnings[0]


def test_required_bwrap_missing_is_an_error(
    fresh_probe: None, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setenv("OSMO_SANDBOX", "bwrap")
    with pytest.raises(SandboxError, match="bwrap is unusable"):
        sandbox_mode()


def test_forced_fallback_warns_once(
    fresh_probe: None, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("OSMO_SANDBOX", "none")
    with caplog.at_level(logging.WARNING, logger="osmo.runtime.sandbox"):
        assert sandbox_mode() == "none"
        assert sandbox_mode() == "none"
    assert len(caplog.records) == 1 and "OSMO_SANDBOX=none" in caplog.records[0].getMessage()


def _pairs(argv: list[str], flag: str) -> list[tuple[str, str]]:
    return [(argv[i + 1], argv[i + 2]) for i, a in enumerate(argv) if a == flag]


def test_argv_layout(tmp_path: Path) -> None:
    td = TaskDir(tmp_path)
    argv = bwrap_argv(td, 2, [(str(tmp_path / "files/opt/x/run.sh"), "/opt/x/run.sh")], ["true"], 9)
    ro = dict(_pairs(argv, "--ro-bind"))
    rw = dict(_pairs(argv, "--bind"))
    assert ro[str(td.input(0))] == "/osmo/data/input/0"
    assert ro[str(td.input(1))] == "/osmo/data/input/1"
    assert rw[str(td.output)] == "/osmo/data/output"
    assert rw[str(td.tmp)] == "/tmp" and rw[str(td.home)] == "/osmo/home"
    assert ro["/usr"] == "/usr"  # host entries, read-only, one by one
    assert "/tmp" not in ro and "/proc" not in ro and "/dev" not in ro
    if os.path.isdir("/opt") and not os.path.islink("/opt"):
        # /opt exists on the host, so it is rebuilt to make room for /opt/x
        assert argv[argv.index("/opt") - 1] == "--dir"
        links = {dest: target for target, dest in _pairs(argv, "--symlink")}
        for name in os.listdir("/opt"):
            path = f"/opt/{name}"
            if os.path.islink(path):
                assert links[path] == os.readlink(path)
            else:
                assert ro[path] == path
    # the root is made read-only after everything is mounted
    assert argv.index("--remount-ro") > argv.index("/opt/x/run.sh")
    assert {"--unshare-pid", "--die-with-parent", "--cap-drop"} <= set(argv)
    assert argv[-1] == "true" and argv[argv.index("--json-status-fd") + 1] == "9"


def test_injection_path_through_a_host_symlink_is_refused(tmp_path: Path) -> None:
    links = [f"/{e}" for e in os.listdir("/") if os.path.islink(f"/{e}")]
    if not links:
        pytest.skip("no top-level symlink on this host")
    with pytest.raises(SandboxError, match="is a symlink on the host"):
        bwrap_argv(TaskDir(tmp_path), 0, [("/x", f"{links[0]}/osmo-new")], ["true"], 3)


def test_injection_over_a_host_directory_is_refused(tmp_path: Path) -> None:
    with pytest.raises(SandboxError, match="non-file"):
        bwrap_argv(TaskDir(tmp_path), 0, [("/x", "/usr")], ["true"], 3)


def test_ancestors_of_a_rebuilt_folder_count_against_the_limit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # /etc/<small dir>/new/file rebuilds the small dir and /etc; the limit applies to both.
    etc = Path("/etc")
    small = min(
        (p for p in etc.iterdir() if p.is_dir() and not p.is_symlink()),
        key=lambda p: len(os.listdir(p)),
    )
    n_small, n_etc = len(os.listdir(small)), len(os.listdir(etc))
    assert n_small < n_etc
    monkeypatch.setattr(sandbox, "MAX_SPLIT_ENTRIES", n_small)
    with pytest.raises(SandboxError, match=f"/etc has {n_etc} entries"):
        bwrap_argv(TaskDir(tmp_path), 0, [("/x", f"{small}/new/file")], ["true"], 3)
    monkeypatch.setattr(sandbox, "MAX_SPLIT_ENTRIES", n_etc)
    argv = bwrap_argv(TaskDir(tmp_path), 0, [("/x", f"{small}/new/file")], ["true"], 3)
    assert argv[argv.index(str(small)) - 1] == "--dir"
