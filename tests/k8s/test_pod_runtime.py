"""The in-pod runtime with a user image that has nothing but /bin/sh.

The three containers of a task pod are played by processes sharing two folders (the emptyDir
volumes): ``osmo-runtime init`` and ``osmo-runtime ctrl`` run from this package, the user
container runs under bubblewrap in a root filesystem holding one file, ``/bin/sh`` (Debian's
static busybox).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from osmo.runtime import k8s as rt

BUSYBOX = Path("/bin/busybox")


@dataclass
class Pod:
    root: Path
    data: Path
    bindir: Path
    podinfo: Path
    rootfs: Path
    env: dict[str, str]
    procs: list[subprocess.Popen[bytes]]

    def annotations(self, barrier: str) -> None:
        tmp = self.podinfo / ".annotations.tmp"
        tmp.write_text(f'osmo.io/barrier="{barrier}"\nother="x\\"y"\n')
        tmp.replace(self.podinfo / "annotations")  # as the kubelet does: atomically

    def runtime(self, what: str, term_log: str) -> subprocess.Popen[bytes]:
        env = dict(self.env, OSMO_TERMINATION_LOG=str(self.root / term_log))
        p = subprocess.Popen(
            [sys.executable, "-m", "osmo.runtime.k8s", what],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        self.procs.append(p)
        return p

    def user(self, *argv: str) -> subprocess.Popen[bytes]:
        cmd = [
            "bwrap",
            "--bind", str(self.rootfs), "/",
            "--bind", str(self.bindir), "/osmo/bin",
            "--bind", str(self.data), "/osmo/data",
            "--proc", "/proc",
            "--dev", "/dev",
            "--unshare-pid",
            "--die-with-parent",
            "--clearenv",
            "--setenv", "PATH", "/bin",
            "/bin/sh", "/osmo/bin/osmo_exec", *argv,
        ]  # fmt: skip
        p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        self.procs.append(p)
        return p

    def termination(self, name: str) -> dict[str, object]:
        return dict(json.loads((self.root / name).read_text()))


@pytest.fixture
def pod(tmp_path: Path) -> Iterator[Pod]:
    if shutil.which("bwrap") is None or not BUSYBOX.exists():
        pytest.fail("needs bwrap and busybox-static (scripts/install-system-deps.sh installs them)")
    rootfs = tmp_path / "rootfs"
    (rootfs / "bin").mkdir(parents=True)
    shutil.copy(BUSYBOX, rootfs / "bin" / "sh")
    for d in ("osmo/bin", "osmo/data", "proc", "dev", "tmp"):
        (rootfs / d).mkdir(parents=True, exist_ok=True)
    p = Pod(
        root=tmp_path,
        data=tmp_path / "data",
        bindir=tmp_path / "bin",
        podinfo=tmp_path / "podinfo",
        rootfs=rootfs,
        env={},
        procs=[],
    )
    for d in (p.data, p.bindir, p.podinfo):
        d.mkdir()
    p.env = dict(
        os.environ,
        OSMO_RUNTIME_DATA=str(p.data),
        OSMO_RUNTIME_BIN=str(p.bindir),
        OSMO_RUNTIME_PODINFO=str(p.podinfo),
    )
    yield p
    for proc in p.procs:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()


def _task(pod: Pod, **fields: object) -> None:
    pod.env["OSMO_TASK"] = json.dumps(
        {"workflow_id": "wf-1", "group": "g", "task": "t", "retry_id": 0, **fields}
    )


def _wait(proc: subprocess.Popen[bytes], timeout: float = 30) -> tuple[int, str]:
    out, _ = proc.communicate(timeout=timeout)
    return proc.returncode, out.decode(errors="replace")


def test_rootfs_has_only_sh(pod: Pod) -> None:
    files = [p for p in pod.rootfs.rglob("*") if p.is_file()]
    assert [f.relative_to(pod.rootfs).as_posix() for f in files] == ["bin/sh"]


def test_barrier_inputs_logs_exit_code_and_upload(pod: Pod, tmp_path: Path) -> None:
    source = tmp_path / "upstream"
    source.mkdir()
    (source / "in.txt").write_text("from upstream\n")
    out_url = (tmp_path / "store" / "wf-1" / "t").as_uri()
    user_url = (tmp_path / "user-out").as_uri()
    _task(
        pod,
        inputs=[{"name": "up", "url": source.as_uri()}],
        output_url=out_url,
        outputs=[{"url": user_url}],
        barrier=True,
    )
    init = pod.runtime("init", "init-term")
    assert _wait(init)[0] == 0
    assert pod.termination("init-term") == {"exit_code": 0, "message": None}
    assert (pod.data / "input" / "0" / "in.txt").read_text() == "from upstream\n"
    assert (pod.bindir / "osmo_exec").read_text() == rt.LAUNCHER

    pod.annotations("held")
    ctrl = pod.runtime("ctrl", "ctrl-term")
    user = pod.user(
        "sh",
        "-c",
        'read x < /osmo/data/input/0/in.txt; echo "got: $x"; echo oops >&2; '
        "echo result > /osmo/data/output/result.txt; exit 3",
    )
    deadline = time.monotonic() + 20
    while not (pod.bindir / "ready").exists():
        assert time.monotonic() < deadline, "ctrl never became ready"
        time.sleep(0.05)
    time.sleep(0.5)
    # Held at the barrier: the command has not run.
    assert user.poll() is None
    assert not (pod.data / "output" / "result.txt").exists()
    pod.annotations("released")
    rc, _ = _wait(user)
    assert rc == 3
    crc, log = _wait(ctrl)
    assert crc == 0, log
    assert pod.termination("ctrl-term") == {"exit_code": 0, "message": None}
    assert "got: from upstream" in log
    assert "oops" in log
    assert "barrier released" in log
    # The intermediate output is uploaded whatever the exit code; user outputs only on success.
    assert (tmp_path / "store" / "wf-1" / "t" / "result.txt").read_text() == "result\n"
    assert not (tmp_path / "user-out").exists()


def test_no_barrier_success_uploads_user_outputs(pod: Pod, tmp_path: Path) -> None:
    user_url = (tmp_path / "user-out").as_uri()
    _task(pod, outputs=[{"url": user_url}])
    assert _wait(pod.runtime("init", "init-term"))[0] == 0
    ctrl = pod.runtime("ctrl", "ctrl-term")
    user = pod.user("sh", "-c", "echo hello; echo x > /osmo/data/output/o.txt")
    assert _wait(user)[0] == 0
    crc, log = _wait(ctrl)
    assert crc == 0, log
    assert "hello" in log
    assert (tmp_path / "user-out" / "o.txt").read_text() == "x\n"


def test_command_not_found_is_127(pod: Pod) -> None:
    _task(pod)
    assert _wait(pod.runtime("init", "init-term"))[0] == 0
    ctrl = pod.runtime("ctrl", "ctrl-term")
    user = pod.user("/no/such/program", "arg")
    assert _wait(user)[0] == 127
    crc, log = _wait(ctrl)
    assert crc == 0
    assert "/no/such/program" in log


def test_download_failure_is_2010(pod: Pod, tmp_path: Path) -> None:
    _task(pod, inputs=[{"url": (tmp_path / "missing").as_uri()}])
    rc, _ = _wait(pod.runtime("init", "init-term"))
    assert rc == 1
    term = pod.termination("init-term")
    assert term["exit_code"] == 2010
    assert "download of input 0" in str(term["message"])


def test_upload_failure_is_2012(pod: Pod, tmp_path: Path) -> None:
    blocker = tmp_path / "blocker"
    blocker.write_text("a file where a folder must go")
    _task(pod, output_url=(blocker / "sub").as_uri())
    assert _wait(pod.runtime("init", "init-term"))[0] == 0
    ctrl = pod.runtime("ctrl", "ctrl-term")
    user = pod.user("sh", "-c", "echo x > /osmo/data/output/f")
    assert _wait(user)[0] == 0
    crc, _ = _wait(ctrl)
    assert crc == 1
    assert pod.termination("ctrl-term")["exit_code"] == 2012


def test_sigterm_stops_the_command(pod: Pod) -> None:
    _task(pod)
    assert _wait(pod.runtime("init", "init-term"))[0] == 0
    ctrl = pod.runtime("ctrl", "ctrl-term")
    # `read` from a FIFO nobody writes: blocks forever without needing `sleep` in the image.
    user = pod.user("sh", "-c", "echo started; read x < /osmo/bin/go")
    deadline = time.monotonic() + 20
    while not (pod.bindir / "ready").exists():
        assert time.monotonic() < deadline
        time.sleep(0.05)
    time.sleep(0.5)
    assert user.poll() is None
    ctrl.terminate()
    crc, _ = _wait(ctrl)
    assert crc == 1
    assert pod.termination("ctrl-term")["exit_code"] == 143
    user.kill()  # bwrap's own pid is not the shell; the pod's kubelet would stop it
    user.wait()


def test_annotations_file_parsing(tmp_path: Path) -> None:
    f = tmp_path / "annotations"
    f.write_text('a="1"\nosmo.io/barrier="released"\nq="say \\"hi\\"\\n"\n')
    got = rt.read_annotations(f)
    assert got == {"a": "1", "osmo.io/barrier": "released", "q": 'say "hi"\n'}
    assert rt.read_annotations(tmp_path / "missing") == {}


def test_usage() -> None:
    assert rt.main(["bogus"]) == 2
