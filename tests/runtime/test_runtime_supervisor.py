"""The supervisor end to end: real processes in a real bwrap sandbox (fallback mode at the end)."""

from __future__ import annotations

import base64
import contextlib
import json
import os
import shutil
import signal
import time
import uuid
from pathlib import Path

import pytest
from runtime_helpers import (
    Runner,
    file_url,
    kill_supervisor,
    log_text,
    wait_done,
    wait_for,
    wait_state,
)

from osmo.runtime import read_log, read_status, release_barrier, signal_task, write_task
from osmo.runtime.sandbox import MAX_SPLIT_ENTRIES
from osmo.runtime.supervisor import detach

pytestmark = pytest.mark.skipif(shutil.which("bwrap") is None, reason="bubblewrap not installed")


def sh(script: str) -> dict[str, list[str]]:
    return {"command": ["sh", "-c"], "args": [script]}


def _procs_with_arg(marker: str) -> list[int]:
    """Host pids running exactly ``sleep <marker>`` (for leak checks)."""
    want = b"sleep\x00" + marker.encode() + b"\x00"
    found = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                with open(f"/proc/{name}/cmdline", "rb") as f:
                    if f.read() == want:
                        found.append(int(name))
            except OSError:
                pass
    return found


def _kill_all(marker: str) -> None:
    for pid in _procs_with_arg(marker):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def test_hello_world(runner: Runner) -> None:
    td, st = runner.run(**sh("echo hello world; echo to-stderr >&2"))
    assert st.exit is not None
    assert st.exit.exit_code == 0
    assert st.exit.phase == "done"
    assert st.exit.sandbox == "bwrap"
    assert st.state == "done" and not st.lost
    assert st.exit.started_at is not None and st.exit.finished_at >= st.exit.started_at
    assert log_text(td) == "hello world\nto-stderr\n"
    data, off = read_log(td, 0)
    assert data == b"hello world\nto-stderr\n" and off == len(data)
    assert read_log(td, 6, max_bytes=5) == (b"world", 11)
    assert read_log(td, off) == (b"", off)


def test_nonzero_exit_code_preserved(runner: Runner) -> None:
    _, st = runner.run(**sh("exit 42"))
    assert st.exit is not None and st.exit.exit_code == 42 and st.exit.phase == "done"


@pytest.mark.parametrize(("sig", "code"), [("KILL", 137), ("TERM", 143), ("SEGV", 139)])
def test_killed_by_signal(runner: Runner, sig: str, code: int) -> None:
    _, st = runner.run(**sh(f"kill -{sig} $$"))
    assert st.exit is not None and st.exit.exit_code == code
    assert not st.exit.terminated  # the task did it to itself; nobody asked


def test_missing_command_is_127(runner: Runner) -> None:
    td, st = runner.run(command=["no-such-command-osmo"])
    assert st.exit is not None and st.exit.exit_code == 127
    assert "no-such-command-osmo" in log_text(td)


def test_environment_and_identity(runner: Runner) -> None:
    td, st = runner.run(
        retry_id=2,
        environment={"GREETING": "hi {{workflow_id}}", "OSMO_TASK_NAME": "overridden?"},
        **sh('echo "$GREETING|$OSMO_WORKFLOW_ID|$OSMO_TASK_NAME|$OSMO_RETRY_ID|$HOME|$(pwd)"'),
    )
    assert st.exit is not None and st.exit.exit_code == 0
    # OSMO_* identity variables cannot be overridden by the spec.
    assert log_text(td) == "hi wf-1|wf-1|t|2|/osmo/home|/osmo/home\n"


def test_inputs_downloaded_read_only_and_tokens(runner: Runner, tmp_path: Path) -> None:
    up = tmp_path / "data" / "wf-1" / "prep"
    (up / "sub").mkdir(parents=True)
    (up / "a.txt").write_text("from prep\n")
    (up / "sub" / "b.txt").write_text("nested\n")
    (up / "skip.bin").write_text("filtered out\n")
    other = tmp_path / "other"
    other.mkdir()
    (other / "c.txt").write_text("second input\n")
    script = (
        "cat /osmo/data/input/0/a.txt {{input:0}}/sub/b.txt {{ input:1 }}/c.txt; "
        "ls {{input:prep}}; "
        "echo {{workflow_id}} {{host:server}} {{output}}; "
        "touch /osmo/data/input/0/new 2>/dev/null && echo WRITABLE || echo read-only; "
        "rm /osmo/data/input/0/a.txt 2>/dev/null && echo REMOVED || echo kept"
    )
    td, st = runner.run(
        inputs=[
            {"name": "prep", "url": file_url(up), "regex": r"\.txt$"},
            {"url": file_url(other)},
        ],
        hosts={"server": "127.0.0.1"},
        **sh(script),
    )
    assert st.exit is not None and st.exit.exit_code == 0, log_text(td)
    assert log_text(td) == (
        "from prep\nnested\nsecond input\n"
        "a.txt\nsub\n"
        "wf-1 127.0.0.1 /osmo/data/output\n"
        "read-only\nkept\n"
    )
    assert (up / "a.txt").exists()


def test_output_uploaded(runner: Runner, tmp_path: Path) -> None:
    dest = tmp_path / "data" / "wf-1" / "t"
    td, st = runner.run(
        output_url=file_url(dest),
        **sh(
            "mkdir -p {{output}}/d && echo result > {{output}}/d/r.txt && echo top > {{output}}/t"
        ),
    )
    assert st.exit is not None and st.exit.exit_code == 0, log_text(td)
    assert (dest / "d" / "r.txt").read_text() == "result\n"
    assert (dest / "t").read_text() == "top\n"


def test_output_uploaded_after_failure_too(runner: Runner, tmp_path: Path) -> None:
    dest = tmp_path / "out"
    _, st = runner.run(output_url=file_url(dest), **sh("echo partial > {{output}}/p; exit 3"))
    assert st.exit is not None and st.exit.exit_code == 3
    assert (dest / "p").read_text() == "partial\n"


def test_injected_files(runner: Runner) -> None:
    blob = bytes(range(256)) + b"{{output}}"
    td, st = runner.run(
        files=[
            {"path": "/opt/osmo-test/run.sh", "contents": "#!/bin/sh\necho run {{workflow_id}}\n"},
            {"path": "/tmp/x", "contents": base64.b64encode(blob).decode(), "base64": True},
            {"path": "/osmo/data/output/seed.txt", "contents": "seed {{output}}"},
            {"path": "/brand-new-top/cfg.txt", "contents": "cfg"},
        ],
        command=["/opt/osmo-test/run.sh"],
    )
    assert st.exit is not None and st.exit.exit_code == 0, log_text(td)
    assert log_text(td) == "run wf-1\n"
    assert (td / "tmp" / "x").read_bytes() == blob  # base64 contents are never substituted
    assert (td / "output" / "seed.txt").read_text() == "seed /osmo/data/output"
    assert not Path("/opt/osmo-test").exists()
    assert not Path("/brand-new-top").exists()
    script = "cat /tmp/x | wc -c; cat /brand-new-top/cfg.txt; echo; ls /opt | grep -c osmo-test"
    td2, st2 = runner.run(
        files=[
            {"path": "/tmp/x", "contents": "abc"},
            {"path": "/brand-new-top/cfg.txt", "contents": "cfg"},
            {"path": "/opt/osmo-test/run.sh", "contents": ""},
        ],
        **sh(script),
    )
    assert st2.exit is not None and st2.exit.exit_code == 0, log_text(td2)
    assert log_text(td2) == "3\ncfg\n1\n"


def test_injected_file_in_existing_host_folder(runner: Runner) -> None:
    # /etc exists on the host: it is rebuilt inside the sandbox with its entries bound
    # read-only, so a new file can appear there while /etc/passwd stays visible.
    name = f"osmo-test-{uuid.uuid4().hex[:8]}"
    td, st = runner.run(
        files=[{"path": f"/etc/{name}", "contents": "new"}],
        **sh(
            f"cat /etc/{name}; echo; test -s /etc/passwd && echo passwd-visible; "
            "touch /etc/other 2>/dev/null && echo WRITABLE || echo etc-read-only"
        ),
    )
    assert st.exit is not None and st.exit.exit_code == 0, log_text(td)
    assert log_text(td) == "new\npasswd-visible\netc-read-only\n"
    assert not Path(f"/etc/{name}").exists()


def test_injected_file_over_existing_host_file(runner: Runner) -> None:
    td, st = runner.run(
        files=[{"path": "/etc/hostname", "contents": "osmo-host\n"}], **sh("cat /etc/hostname")
    )
    assert st.exit is not None and st.exit.exit_code == 0, log_text(td)
    assert log_text(td) == "osmo-host\n"


def test_injected_file_in_huge_host_folder_is_a_clear_error(runner: Runner) -> None:
    if len(os.listdir("/usr/bin")) <= MAX_SPLIT_ENTRIES:
        pytest.skip("/usr/bin is small on this host")
    td, st = runner.run(files=[{"path": "/usr/bin/osmo-new-tool", "contents": ""}])
    assert st.exit is not None and st.exit.exit_code == 2032
    assert st.exit.error is not None and "/usr/bin" in st.exit.error
    assert "limit" in st.exit.error and "/usr/bin" in log_text(td)
    assert not Path("/usr/bin/osmo-new-tool").exists()


def test_host_filesystem_read_only_and_private_tmp(runner: Runner) -> None:
    marker = f"osmo-private-{uuid.uuid4().hex}"
    script = (
        "touch /usr/osmo-test 2>/dev/null && echo USR-WRITABLE || echo usr-ro; "
        "touch /osmo-test 2>/dev/null && echo ROOT-WRITABLE || echo root-ro; "
        "mkdir /osmo/x 2>/dev/null && echo OSMO-WRITABLE || echo osmo-ro; "
        f"echo secret > /tmp/{marker} && echo tmp-ok; "
        "echo o > /osmo/data/output/o && echo out-ok; echo h > $HOME/h && echo home-ok; "
        "mount -o remount,rw /usr 2>/dev/null && echo REMOUNTED || echo no-remount"
    )
    td, st = runner.run(**sh(script))
    assert st.exit is not None and st.exit.exit_code == 0, log_text(td)
    assert log_text(td) == "usr-ro\nroot-ro\nosmo-ro\ntmp-ok\nout-ok\nhome-ok\nno-remount\n"
    assert not Path("/usr/osmo-test").exists() and not Path("/osmo-test").exists()
    assert not Path("/osmo").exists()
    assert not Path(f"/tmp/{marker}").exists()
    assert (td / "tmp" / marker).read_text() == "secret\n"


def test_tasks_do_not_clobber_each_others_output(runner: Runner) -> None:
    a = runner.start(**sh("echo A > /osmo/data/output/x; sleep 0.2; cat /osmo/data/output/x"))
    b = runner.start(**sh("echo B > /osmo/data/output/x; sleep 0.2; cat /osmo/data/output/x"))
    for td, want in ((a, "A"), (b, "B")):
        st = wait_done(td)
        assert st.exit is not None and st.exit.exit_code == 0
        assert log_text(td) == f"{want}\n"
        assert (td / "output" / "x").read_text() == f"{want}\n"


def test_barrier_holds_the_command(runner: Runner) -> None:
    td = runner.start(barrier=True, **sh("echo started"))
    st = wait_state(td, "ready")
    time.sleep(0.3)
    st = read_status(td)
    assert st.state == "ready" and not st.done and st.supervisor_alive
    assert log_text(td) == ""
    release_barrier(td)
    release_barrier(td)  # idempotent
    st = wait_done(td)
    assert st.exit is not None and st.exit.exit_code == 0
    assert log_text(td) == "started\n"


def test_sigterm_stops_the_whole_process_tree(runner: Runner, tmp_path: Path) -> None:
    marker = f"{1000 + uuid.uuid4().int % 1000}.{uuid.uuid4().int % 997}"
    dest = tmp_path / "never"
    td = runner.start(
        output_url=file_url(dest),
        kill_grace_seconds=2,
        **sh(f"(sh -c 'sleep {marker}') & (trap '' TERM; sleep {marker}) & echo up; wait"),
    )
    wait_for(lambda: len(_procs_with_arg(marker)) == 2, what="both sleeps running")
    wait_for(lambda: "up" in log_text(td), what="task output")
    assert signal_task(td, signal.SIGTERM)
    st = wait_done(td)
    assert st.exit is not None
    assert st.exit.terminated and st.exit.phase == "run"
    assert st.exit.exit_code == 143  # the shell died of SIGTERM
    wait_for(lambda: not _procs_with_arg(marker), timeout=20, what="no sleep left")
    assert not dest.exists()  # a terminated task's output is not uploaded
    assert not signal_task(td)  # nothing left to signal


def test_sigterm_escalates_to_sigkill(runner: Runner) -> None:
    td = runner.start(
        kill_grace_seconds=0.5, **sh("trap '' TERM; echo up; while :; do sleep 1; done")
    )
    wait_for(lambda: "up" in log_text(td), what="task output")
    assert signal_task(td)
    st = wait_done(td)
    assert st.exit is not None and st.exit.terminated and st.exit.exit_code == 137


def test_sigterm_while_waiting_at_barrier(runner: Runner) -> None:
    td = runner.start(barrier=True, **sh("echo should-not-run"))
    wait_state(td, "ready")
    assert signal_task(td)
    st = wait_done(td)
    assert st.exit is not None
    assert st.exit.terminated and st.exit.phase == "barrier" and st.exit.exit_code == 143
    assert st.exit.started_at is None
    assert "should-not-run" not in log_text(td)


def test_dead_supervisor_is_detected_and_takes_its_task_along(runner: Runner) -> None:
    marker = f"{2000 + uuid.uuid4().int % 1000}.5"
    td = runner.start(**sh(f"sleep {marker}"))
    wait_for(lambda: len(_procs_with_arg(marker)) == 1, what="sleep running")
    kill_supervisor(td)
    wait_for(lambda: read_status(td).lost, what="lost status")
    st = read_status(td)
    assert st.exit is None and st.state == "running"
    wait_for(lambda: not _procs_with_arg(marker), timeout=20, what="sandbox gone")


def test_download_failure_is_2010(runner: Runner, tmp_path: Path) -> None:
    td, st = runner.run(inputs=[{"url": file_url(tmp_path / "missing")}], **sh("echo ran"))
    assert st.exit is not None and st.exit.exit_code == 2010 and st.exit.phase == "download"
    assert st.exit.error is not None and "missing" in st.exit.error
    assert "ran" not in log_text(td) and "download of input 0" in log_text(td)


def test_upload_failure_is_2012_and_logs_are_kept(runner: Runner, tmp_path: Path) -> None:
    (tmp_path / "blocker").write_text("a file, not a folder")
    td, st = runner.run(
        output_url=file_url(tmp_path / "blocker" / "out"),
        **sh("echo my output; echo x > {{output}}/x"),
    )
    assert st.exit is not None and st.exit.exit_code == 2012 and st.exit.phase == "upload"
    text = log_text(td)
    assert text.startswith("my output\n") and "upload of the output folder" in text


def test_bad_token_is_2030(runner: Runner) -> None:
    td, st = runner.run(**sh("echo {{host:nobody}}"))
    assert st.exit is not None and st.exit.exit_code == 2030
    assert "host:nobody" in log_text(td)


def test_second_supervisor_for_the_same_dir_is_refused(runner: Runner) -> None:
    td, _ = runner.run(**sh("echo once"))
    with pytest.raises(RuntimeError, match="already has a supervisor"):
        detach(td)
    assert log_text(td) == "once\n"


def test_invalid_task_json_is_reported(tmp_path: Path, runner: Runner) -> None:
    td = tmp_path / "bad"
    td.mkdir()
    (td / "task.json").write_text(json.dumps({"workflow_id": "w"}))
    detach(td)
    runner.started.append(td)
    st = wait_done(td)
    assert st.exit is not None and st.exit.exit_code == 2030
    assert st.exit.error is not None and "invalid task.json" in st.exit.error


def test_fallback_mode_runs_with_real_paths(
    runner: Runner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OSMO_SANDBOX", "none")
    up = tmp_path / "up"
    up.mkdir()
    (up / "in.txt").write_text("input\n")
    dest = tmp_path / "dest"
    td, st = runner.run(
        inputs=[{"url": file_url(up)}],
        output_url=file_url(dest),
        files=[{"path": "/opt/osmo-test/run.sh", "contents": "x"}],
        **sh(
            'echo "{{output}}|{{input:0}}|$HOME|$(pwd)"; '
            "cat {{input:0}}/in.txt; echo r > {{output}}/r"
        ),
    )
    assert st.exit is not None and st.exit.exit_code == 0, log_text(td)
    assert st.exit.sandbox == "none"
    lines = log_text(td).splitlines()
    real = td.absolute()
    assert f"{real}/output|{real}/input/0|{real}/home|{real}/home" in lines
    assert "input" in lines
    assert (
        "[osmo] no sandbox: injected file /opt/osmo-test/run.sh is at "
        f"{real}/files/opt/osmo-test/run.sh instead" in lines
    )
    assert (dest / "r").read_text() == "r\n"
    assert not Path("/opt/osmo-test").exists()


def test_fallback_mode_sigterm_kills_the_process_group(
    runner: Runner, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OSMO_SANDBOX", "none")
    marker = f"{3000 + uuid.uuid4().int % 1000}.25"
    td = runner.start(kill_grace_seconds=1, **sh(f"(sh -c 'sleep {marker}') & echo up; wait"))
    try:
        wait_for(lambda: "up" in log_text(td), what="task output")
        wait_for(lambda: len(_procs_with_arg(marker)) >= 1, what="sleep running")
        assert signal_task(td)
        st = wait_done(td)
        assert st.exit is not None and st.exit.terminated and st.exit.exit_code == 143
        wait_for(lambda: not _procs_with_arg(marker), timeout=20, what="no sleep left")
    finally:
        _kill_all(marker)  # without a pid namespace, a failed test could leave it behind


def test_fallback_mode_command_dies_with_its_supervisor(
    runner: Runner, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OSMO_SANDBOX", "none")
    marker = f"{3000 + uuid.uuid4().int % 1000}.75"
    td = runner.start(command=["sleep", marker])
    try:
        wait_for(lambda: len(_procs_with_arg(marker)) == 1, what="sleep running")
        kill_supervisor(td)
        wait_for(lambda: read_status(td).lost, what="lost status")
        wait_for(lambda: not _procs_with_arg(marker), timeout=20, what="sleep killed")
    finally:
        _kill_all(marker)


def test_write_task_then_status_before_spawn(tmp_path: Path) -> None:
    from runtime_helpers import launch

    td = tmp_path / "t"
    write_task(td, launch())
    st = read_status(td)
    assert st.state is None and st.supervisor_pid is None and not st.lost and not st.done
