"""The zygote and its asyncio client, the slow-path entry point, and supervisor detachment."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from runtime_helpers import WAIT, Runner, launch, log_text, wait_done, wait_for, wait_state

from osmo.runtime import ZygoteClient, ZygoteError, read_status, release_barrier, write_task


def _sh(script: str) -> dict[str, list[str]]:
    return {"command": ["sh", "-c"], "args": [script]}


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()[0] not in (b"Z", b"X")
    except FileNotFoundError:
        return False


def test_spawn_many_through_the_zygote(runner: Runner, tmp_path: Path) -> None:
    dirs = [tmp_path / "tasks" / f"t{i}" for i in range(20)]
    for i, td in enumerate(dirs):
        write_task(td, launch(task=f"t{i}", **_sh(f"echo task {i}; exit {i % 3}")))
    runner.started.extend(dirs)

    async def main() -> list[int]:
        z = ZygoteClient()
        await z.start()
        try:
            assert (await z.ping())["sandbox"] == z.sandbox
            pids = await asyncio.gather(*(z.spawn(td) for td in dirs))
            # supervisor.json exists as soon as spawn returns
            assert all((td / "supervisor.json").exists() for td in dirs)
            return list(pids)
        finally:
            await z.close()

    pids = asyncio.run(main())
    assert len(set(pids)) == len(dirs)
    for i, td in enumerate(dirs):
        st = wait_done(td)
        assert st.exit is not None and st.exit.exit_code == i % 3
        assert st.supervisor_pid == pids[i]
        assert log_text(td) == f"task {i}\n"


def test_zygote_reports_errors_and_restarts_after_dying(runner: Runner, tmp_path: Path) -> None:
    td = tmp_path / "tasks" / "held"
    write_task(td, launch(barrier=True, **_sh("echo released")))
    runner.started.append(td)
    td2 = tmp_path / "tasks" / "after"
    write_task(td2, launch(**_sh("echo after restart")))
    runner.started.append(td2)

    async def main() -> None:
        z = ZygoteClient()
        await z.start()
        try:
            await z.spawn(td)
            with pytest.raises(ZygoteError, match="already has a supervisor"):
                await z.spawn(td)
            first = z.pid
            assert first is not None
            os.kill(first, signal.SIGKILL)
            # The reply pipe reaches EOF although a supervisor is still running: supervisors
            # do not hold the zygote's descriptors.
            for _ in range(int(WAIT * 100)):
                if not z.running:
                    break
                await asyncio.sleep(0.01)
            assert not z.running
            await z.spawn(td2)  # starts a new zygote
            assert z.pid != first
        finally:
            await z.close()

    asyncio.run(main())
    st = wait_done(td2)
    assert st.exit is not None and st.exit.exit_code == 0
    assert read_status(td).state == "ready" and read_status(td).supervisor_alive
    release_barrier(td)
    st = wait_done(td)
    assert st.exit is not None and st.exit.exit_code == 0 and log_text(td) == "released\n"


def test_supervisor_survives_sigkill_of_zygote_and_requester(
    runner: Runner, tmp_path: Path
) -> None:
    td = tmp_path / "tasks" / "orphan"
    write_task(td, launch(barrier=True, **_sh("echo survived; echo out > {{output}}/o")))
    runner.started.append(td)
    requester = textwrap.dedent(
        f"""
        import asyncio, json, sys, time
        from osmo.runtime import ZygoteClient

        async def main():
            z = ZygoteClient()
            await z.start()
            pid = await z.spawn({str(td)!r})
            print(json.dumps({{"zygote": z.pid, "supervisor": pid}}), flush=True)
            await asyncio.sleep(3600)

        asyncio.run(main())
        """
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", requester], stdout=subprocess.PIPE, stdin=subprocess.DEVNULL
    )
    try:
        assert proc.stdout is not None
        info = json.loads(proc.stdout.readline())
        wait_state(td, "ready")
        os.kill(info["zygote"], signal.SIGKILL)
        proc.kill()
        proc.wait()
        wait_for(lambda: not _alive(info["zygote"]), what="zygote gone")
        st = read_status(td)
        assert st.supervisor_alive and st.supervisor_pid == info["supervisor"]
        release_barrier(td)
        st = wait_done(td)
        assert st.exit is not None and st.exit.exit_code == 0
        assert log_text(td) == "survived\n" and (td / "output" / "o").exists()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_slow_path_entry_point(runner: Runner, tmp_path: Path) -> None:
    td = tmp_path / "tasks" / "slow"
    write_task(td, launch(**_sh("echo slow path")))
    runner.started.append(td)
    out = subprocess.run(
        [sys.executable, "-m", "osmo.runtime.supervisor", "--detach", str(td)],
        capture_output=True,
        text=True,
        timeout=WAIT,
        check=True,
    )
    pid = int(out.stdout.strip())
    st = wait_done(td)
    assert st.supervisor_pid == pid
    assert st.exit is not None and st.exit.exit_code == 0 and log_text(td) == "slow path\n"
    again = subprocess.run(
        [sys.executable, "-m", "osmo.runtime.supervisor", "--detach", str(td)],
        capture_output=True,
        text=True,
        timeout=WAIT,
    )
    assert again.returncode == 1 and "already has a supervisor" in again.stderr


def test_foreground_entry_point(tmp_path: Path) -> None:
    td = tmp_path / "fg"
    write_task(td, launch(**_sh("echo fg; exit 5")))
    subprocess.run(
        [sys.executable, "-m", "osmo.runtime.supervisor", str(td)], timeout=WAIT, check=True
    )
    st = read_status(td)
    assert st.exit is not None and st.exit.exit_code == 5 and not st.supervisor_alive


def test_zygote_protocol_errors(tmp_path: Path) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "osmo.runtime.zygote"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdin is not None and proc.stdout is not None
        assert json.loads(proc.stdout.readline())["ready"] is True
        for req in (
            "not json",
            '{"id": 1, "op": "spawn", "task_dir": "rel/dir"}',
            '{"id": 2, "op": "x"}',
        ):
            proc.stdin.write(req + "\n")
            proc.stdin.flush()
            reply = json.loads(proc.stdout.readline())
            assert "error" in reply and "pid" not in reply
        proc.stdin.close()
        assert proc.wait(timeout=WAIT) == 0  # exits at EOF
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
