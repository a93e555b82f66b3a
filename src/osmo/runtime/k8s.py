"""The task runtime inside a Kubernetes pod: ``osmo-runtime init`` and ``osmo-runtime ctrl``.

Three containers share two emptyDir volumes, ``/osmo/data`` (inputs and outputs) and
``/osmo/bin`` (the launcher and three FIFOs):

- ``osmo-init`` (init container, osmo image): makes ``/osmo/data/input/<i>`` and
  ``/osmo/data/output``, downloads the inputs, writes the launcher ``/osmo/bin/osmo_exec`` and
  creates the FIFOs ``go``, ``log`` and ``done``.
- the user container (any image with ``/bin/sh``): ``/bin/sh /osmo/bin/osmo_exec CMD ARGS...``
  blocks reading ``go``, runs the command with stdout and stderr into ``log``, writes the exit
  code into ``done`` and exits with it. It uses only shell built-ins (``read``, ``echo``,
  ``trap``, ``kill``, ``wait``): no ``sleep``, ``cat`` or ``mkfifo`` is needed in the image.
- ``osmo-ctrl`` (sidecar, osmo image): marks itself ready (``/osmo/bin/ready``; the pod's
  readiness probe), waits for the group barrier (the ``osmo.io/barrier`` annotation, read from
  the downward API), writes ``go``, copies ``log`` to its own stdout (the task's log), reads the
  exit code from ``done``, uploads the output folder, and ends with a JSON termination message
  ``{"exit_code": N, "message": ...}`` holding its own result (0, or an OSMO code such as 2012).

The task description comes from ``OSMO_TASK`` (JSON: inputs, output_url, outputs, barrier).
Paths can be moved for tests with ``OSMO_RUNTIME_DATA``, ``OSMO_RUNTIME_BIN``,
``OSMO_RUNTIME_PODINFO`` and ``OSMO_TERMINATION_LOG``.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import selectors
import signal
import sys
import time
from pathlib import Path
from types import FrameType

from pydantic import BaseModel, ConfigDict, Field

from . import exitcodes
from .launch import InputSource, OutputTarget

BARRIER_ANNOTATION = "osmo.io/barrier"

LAUNCHER = r"""#!/bin/sh
# osmo_exec: runs the task's command once the osmo-ctrl sidecar says go.
# Needs nothing but /bin/sh: read, echo, trap, kill and wait are shell built-ins.
R="${OSMO_RUNTIME_BIN:-/osmo/bin}"
read go < "$R/go"
if [ "$go" != go ]; then
  echo 143 > "$R/done"
  exit 143
fi
"$@" > "$R/log" 2>&1 &
child=$!
trap 'kill -TERM "$child" 2>/dev/null' TERM INT
wait "$child"
rc=$?
# A trapped signal interrupts wait: wait again until the command has really ended.
while kill -0 "$child" 2>/dev/null; do
  wait "$child"
  rc=$?
done
echo "$rc" > "$R/done"
exit "$rc"
"""


class PodTask(BaseModel):
    model_config = ConfigDict(extra="ignore")

    workflow_id: str = ""
    group: str = ""
    task: str = ""
    retry_id: int = 0
    inputs: list[InputSource] = Field(default_factory=list)
    output_url: str | None = None
    outputs: list[OutputTarget] = Field(default_factory=list)
    barrier: bool = False


class Failure(Exception):
    def __init__(self, code: int, message: str):
        super().__init__(message)
        self.code = code


def _data_dir() -> Path:
    return Path(os.environ.get("OSMO_RUNTIME_DATA", "/osmo/data"))


def _bin_dir() -> Path:
    return Path(os.environ.get("OSMO_RUNTIME_BIN", "/osmo/bin"))


def _podinfo_dir() -> Path:
    return Path(os.environ.get("OSMO_RUNTIME_PODINFO", "/osmo/podinfo"))


def _termination_log() -> Path:
    return Path(os.environ.get("OSMO_TERMINATION_LOG", "/dev/termination-log"))


def _say(line: str) -> None:
    sys.stdout.write(f"[osmo] {line}\n")
    sys.stdout.flush()


def _terminate(code: int, message: str | None) -> int:
    """Record the result where the operator reads it; the container exits 0 or 1."""
    with contextlib.suppress(OSError):
        _termination_log().write_text(json.dumps({"exit_code": code, "message": message}))
    if message:
        _say(message)
    return 0 if code == 0 else 1


def load_task() -> PodTask:
    raw = os.environ.get("OSMO_TASK")
    if not raw:
        raise Failure(exitcodes.INVALID_INPUT, "OSMO_TASK is not set")
    try:
        return PodTask.model_validate_json(raw)
    except ValueError as exc:
        raise Failure(exitcodes.INVALID_INPUT, f"invalid OSMO_TASK: {exc}") from None


# ---- init -------------------------------------------------------------------------------------


def init() -> int:
    try:
        task = load_task()
        data, bindir = _data_dir(), _bin_dir()
        for d in (data / "input", data / "output"):
            d.mkdir(parents=True, exist_ok=True)
            os.chmod(d, 0o777)  # the user's image may run as any user
        for i in range(len(task.inputs)):
            (data / "input" / str(i)).mkdir(exist_ok=True)
            os.chmod(data / "input" / str(i), 0o777)
        bindir.mkdir(parents=True, exist_ok=True)
        launcher = bindir / "osmo_exec"
        launcher.write_text(LAUNCHER)
        os.chmod(launcher, 0o755)
        for name in ("go", "log", "done"):
            fifo = bindir / name
            with contextlib.suppress(FileNotFoundError):
                fifo.unlink()
            os.mkfifo(fifo)
            os.chmod(fifo, 0o666)
        _download(task, data)
    except Failure as exc:
        return _terminate(exc.code, str(exc))
    except Exception as exc:
        return _terminate(exitcodes.RUNTIME_ERROR, f"runtime error in init: {exc!r}")
    return _terminate(0, None)


def _download(task: PodTask, data: Path) -> None:
    from ..storage import StorageError, open_store

    for i, inp in enumerate(task.inputs):
        try:
            res = open_store(inp.url).download_dir(inp.url, data / "input" / str(i), inp.regex)
        except StorageError as exc:
            raise Failure(
                exitcodes.DOWNLOAD_FAILED, f"download of input {i} ({inp.url}) failed: {exc}"
            ) from None
        _say(f"input {i}: {res.files} files, {res.bytes} bytes from {inp.url}")


# ---- ctrl -------------------------------------------------------------------------------------

_ANNOTATION_LINE = re.compile(r'^([^=]+)="(.*)"$')


def read_annotations(path: Path) -> dict[str, str]:
    """The downward API's ``annotations`` file: ``key="value"`` lines, Go-quoted values."""
    out: dict[str, str] = {}
    try:
        text = path.read_text()
    except OSError:
        return out
    for line in text.splitlines():
        m = _ANNOTATION_LINE.match(line)
        if m:
            try:
                out[m.group(1)] = json.loads(f'"{m.group(2)}"')
            except ValueError:
                out[m.group(1)] = m.group(2)
    return out


class _Stop(Exception):
    pass


def _on_term(signum: int, _frame: FrameType | None) -> None:
    raise _Stop()


def ctrl(barrier_poll: float = 0.2) -> int:
    signal.signal(signal.SIGTERM, _on_term)
    signal.signal(signal.SIGINT, _on_term)
    bindir = _bin_dir()
    try:
        task = load_task()
        (bindir / "ready").touch()
        if task.barrier:
            _say("waiting for the group barrier")
            annotations = _podinfo_dir() / "annotations"
            while read_annotations(annotations).get(BARRIER_ANNOTATION) != "released":
                time.sleep(barrier_poll)
            _say("barrier released")
        code = _run(bindir)
        if task.output_url or (task.outputs and code == 0):
            _upload(task, code)
    except _Stop:
        return _terminate(exitcodes.SIGNAL_BASE + signal.SIGTERM, "terminated")
    except Failure as exc:
        return _terminate(exc.code, str(exc))
    except Exception as exc:
        return _terminate(exitcodes.RUNTIME_ERROR, f"runtime error in ctrl: {exc!r}")
    return _terminate(0, None)


def _run(bindir: Path) -> int:
    """Say go, stream the command's output, return its exit code."""
    flags = os.O_RDWR | os.O_NONBLOCK  # our own write end: no EOF while the writer comes and goes
    log_fd = os.open(bindir / "log", flags)
    done_fd = os.open(bindir / "done", flags)
    go_fd = os.open(bindir / "go", flags)
    os.write(go_fd, b"go\n")
    out = sys.stdout.buffer
    sel = selectors.DefaultSelector()
    sel.register(log_fd, selectors.EVENT_READ)
    sel.register(done_fd, selectors.EVENT_READ)
    done = b""
    try:
        while not done.endswith(b"\n"):
            for key, _ in sel.select():
                try:
                    chunk = os.read(key.fd, 65536)
                except BlockingIOError:
                    continue
                if key.fd == log_fd:
                    out.write(chunk)
                    out.flush()
                else:
                    done += chunk
        # The command has exited: drain what it wrote last.
        while True:
            try:
                chunk = os.read(log_fd, 65536)
            except BlockingIOError:
                break
            if not chunk:
                break
            out.write(chunk)
        out.flush()
    finally:
        sel.close()
        for fd in (log_fd, done_fd, go_fd):
            os.close(fd)
    try:
        return int(done.strip() or b"0")
    except ValueError:
        raise Failure(
            exitcodes.RUNTIME_ERROR, f"bad exit code from the launcher: {done!r}"
        ) from None


def _upload(task: PodTask, code: int) -> None:
    from ..storage import StorageError, open_store

    output = _data_dir() / "output"
    targets: list[tuple[str, str | None]] = []
    if task.output_url:
        targets.append((task.output_url, None))
    if code == 0:
        targets += [(o.url, o.regex) for o in task.outputs]
    for url, regex in targets:
        try:
            res = open_store(url).upload_dir(output, url, regex)
        except StorageError as exc:
            raise Failure(
                exitcodes.UPLOAD_FAILED, f"upload of the output folder to {url} failed: {exc}"
            ) from None
        _say(f"output: {res.files} files, {res.bytes} bytes to {url}")


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args == ["init"]:
        return init()
    if args == ["ctrl"]:
        return ctrl()
    if args == ["launcher"]:
        sys.stdout.write(LAUNCHER)
        return 0
    sys.stderr.write("usage: osmo-runtime init|ctrl|launcher\n")
    return 2


def _entry() -> None:
    sys.exit(main())


if __name__ == "__main__":
    _entry()

__all__ = ["LAUNCHER", "PodTask", "ctrl", "init", "main", "read_annotations"]
