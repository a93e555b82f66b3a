"""A crash of the platform loses nothing; Ctrl-C records backend errors that exit actions retry."""

from __future__ import annotations

import json
import os
import signal
import time
import uuid
from pathlib import Path

import pytest

from .platform import Platform, pids_with, task, tasks_of, wait_gone

pytestmark = pytest.mark.e2e


def test_kill9_then_restart_readopts_running_tasks(
    fresh_platform: Platform, tmp_path: Path
) -> None:
    p = fresh_platform
    p.start()
    marker = f"sleep 4.{uuid.uuid4().int % 1000:03d}"
    path = tmp_path / "wf.yaml"
    path.write_text(f"""
workflow:
  name: survivor
  tasks:
  - name: long
    image: alpine
    command: [sh, -c, "echo before; {marker}; echo after; exit 6"]
    exitActions: {{COMPLETE: 6}}
  - name: next
    image: alpine
    command: [sh, -c, "echo next ran"]
    inputs: [{{task: long}}]
""")
    wf_id = p.submit(path)
    p.wait_task(wf_id, "long", "RUNNING")
    p.kill9()
    # The task keeps running under its supervisor while the platform is down.
    assert pids_with(marker)
    time.sleep(1)
    p.start()
    wf = p.wait(wf_id, timeout=60)
    assert wf["status"] == "COMPLETED", wf
    long = task(wf, "long")
    assert (long["status"], long["exit_code"], long["retry_id"]) == ("COMPLETED", 6, 0)
    logs = p.logs(wf_id, "--task", "long")
    assert logs.splitlines() == ["before", "after"]
    assert "next ran" in p.logs(wf_id, "--task", "next")


def test_kill9_with_task_lost_meanwhile_fails_and_retries(
    fresh_platform: Platform, tmp_path: Path
) -> None:
    p = fresh_platform
    p.start()
    marker = f"sleep 5{uuid.uuid4().int % 1000:03d}"
    path = tmp_path / "wf.yaml"
    path.write_text(f"""
workflow:
  name: lost
  tasks:
  - name: victim
    image: alpine
    command: [sh, -c, "[ \\"$OSMO_RETRY_ID\\" = 0 ] && exec {marker}; echo second life"]
""")
    wf_id = p.submit(path)
    p.wait_task(wf_id, "victim", "RUNNING")
    p.kill9()
    # While the platform is down, its supervisor dies too (a host-level failure).
    supervisor_dirs = list((p.home / "operator" / "local" / "tasks").glob(f"{wf_id}/victim/0"))
    assert supervisor_dirs
    info = json.loads((supervisor_dirs[0] / "supervisor.json").read_text())
    os.kill(info["pid"], signal.SIGKILL)
    assert wait_gone(marker)
    p.start()
    wf = p.wait(wf_id, timeout=60)
    assert wf["status"] == "COMPLETED", wf
    retries = [t for t in tasks_of(p.query(wf_id, verbose=True)) if t["name"] == "victim"]
    assert [(t["retry_id"], t["status"], t["exit_code"]) for t in retries] == [
        (0, "RESCHEDULED", 3001),
        (1, "COMPLETED", 0),
    ]
    assert "supervisor" in (retries[0]["message"] or "")
    assert "second life" in p.logs(wf_id, "--task", "victim")


def test_ctrl_c_stops_tasks_and_retries_them_on_next_start(
    fresh_platform: Platform, tmp_path: Path
) -> None:
    p = fresh_platform
    p.start()
    marker = f"sleep 6{uuid.uuid4().int % 1000:03d}"
    path = tmp_path / "wf.yaml"
    path.write_text(f"""
workflow:
  name: interrupted
  tasks:
  - name: job
    image: alpine
    command: [sh, -c, "[ \\"$OSMO_RETRY_ID\\" = 0 ] && exec {marker}; echo resumed"]
""")
    wf_id = p.submit(path)
    p.wait_task(wf_id, "job", "RUNNING")
    assert p.stop(signal.SIGINT) == 0
    assert wait_gone(marker, timeout=15), "Ctrl-C must stop the tasks"
    p.start()
    wf = p.wait(wf_id, timeout=60)
    assert wf["status"] == "COMPLETED", wf
    retries = [t for t in tasks_of(p.query(wf_id, verbose=True)) if t["name"] == "job"]
    assert [(t["retry_id"], t["status"]) for t in retries] == [(0, "RESCHEDULED"), (1, "COMPLETED")]
    assert retries[0]["exit_code"] == 3001
    assert "resumed" in p.logs(wf_id, "--task", "job")
