"""The task supervisor: one process per task, owning that task from set-up to exit.json.

Started by the zygote (fast path) or as ``python -m osmo.runtime.supervisor [--detach] TASKDIR``
(slow path). It depends on nothing but its task dir: the operator may die and come back, and
reads the outcome from the files described in ``taskdir``.

Steps: supervisor.json → state initializing → folders and injected files → download inputs
(2010) → state ready → barrier → state running → command (output.log) → state uploading →
upload output (2012; skipped when terminated) → exit.json → state done.
"""

from __future__ import annotations

import binascii
import contextlib
import ctypes
import json
import logging
import os
import selectors
import signal
import subprocess
import sys
import time
import traceback
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

from pydantic import ValidationError

from ..storage import StorageError, open_store
from . import exitcodes
from .inotify import wait_for_file
from .launch import TaskLaunch
from .sandbox import (
    DEFAULT_PATH,
    SandboxError,
    SandboxMode,
    TaskView,
    bwrap_argv,
    place_files,
    sandbox_mode,
    task_view,
)
from .taskdir import (
    ExitInfo,
    TaskDir,
    proc_start_time,
    write_json_atomic,
    write_json_exclusive,
    write_state,
)
from .tokens import TokenContext, TokenError, substitute

log = logging.getLogger("osmo.runtime.supervisor")


class Terminated(Exception):
    """SIGTERM/SIGINT arrived before the command started."""

    def __init__(self, signum: int) -> None:
        super().__init__(f"terminated by signal {signum} before the command started")
        self.signum = signum


class TaskFailure(Exception):
    """A runtime step failed; carries the exit code to report."""

    def __init__(self, exit_code: int, message: str) -> None:
        super().__init__(message)
        self.exit_code = exit_code


@dataclass
class RunResult:
    exit_code: int
    terminated: bool
    error: str | None = None


def claim(td: TaskDir) -> bool:
    """Write supervisor.json for this process; False if the task dir already has a supervisor."""
    pid = os.getpid()
    return write_json_exclusive(
        td.supervisor_json,
        {"pid": pid, "start_time": proc_start_time(pid), "created_at": time.time()},
    )


def _append_log(td: TaskDir, line: str) -> None:
    """A runtime message in the task's own log, where the user looks first."""
    with open(td.output_log, "ab") as f:
        f.write(f"[osmo] {line}\n".encode())


def _ns_members(ns_inode: int, exclude: int) -> list[int]:
    """Pids (host view) of every process in the pid namespace ``ns_inode``."""
    want = f"pid:[{ns_inode}]"
    found: list[int] = []
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) == exclude:
            continue
        try:
            if os.readlink(f"/proc/{name}/ns/pid") == want:
                found.append(int(name))
        except OSError:
            continue
    return found


def _signal_exit_code(status: int) -> int:
    """Popen returncode → exit code: negative N (killed by signal N) becomes 128+N."""
    return exitcodes.SIGNAL_BASE - status if status < 0 else status


class Supervisor:
    def __init__(self, td: TaskDir) -> None:
        self.td = td
        self.term_signal: int | None = None
        self.mode: SandboxMode = "none"
        self._status_r = -1  # bwrap's --json-status-fd pipe
        self._status_w = -1
        self._raised = False

    # -- signals ------------------------------------------------------------------------------

    def _raise_terminated(self, signum: int, _frame: FrameType | None) -> None:
        self.term_signal = signum
        # Raise once only: a second signal must not interrupt the handling of the first.
        if not self._raised:
            self._raised = True
            raise Terminated(signum)

    def _note_terminated(self, signum: int, _frame: FrameType | None) -> None:
        # While the command runs the main loop reacts; the wakeup fd interrupts its select().
        self.term_signal = signum

    def _set_handlers(self, handler: Any) -> None:
        signal.signal(signal.SIGTERM, handler)
        signal.signal(signal.SIGINT, handler)

    # -- main ---------------------------------------------------------------------------------

    def run(self) -> int:
        """Supervise the task; returns the task's exit code (also written to exit.json)."""
        td = self.td
        phase = "initialize"
        started_at: float | None = None
        error: str | None = None
        terminated = False
        self._set_handlers(self._raise_terminated)
        exit_code = exitcodes.RUNTIME_ERROR
        # Terminated is raised at most once and may surface anywhere, even inside the inner
        # except clauses; the outer try catches it wherever it comes from.
        try:
            try:
                if _early_signal:
                    self._raised = True
                    raise Terminated(_early_signal[0])
                write_state(td, "initializing")
                launch = self._load()
                self.mode = sandbox_mode()
                view = task_view(td, len(launch.inputs), self.mode)
                argv, env = self._prepare(launch, view)
                phase = "download"
                self._download(launch)
                write_state(td, "ready")
                if launch.barrier:
                    phase = "barrier"
                    wait_for_file(td.barrier)
                phase = "run"
                started_at = time.time()
                write_state(td, "running", started_at=started_at)
                result = self._run_command(launch, argv, env)
                exit_code, terminated, error = result.exit_code, result.terminated, result.error
                if not terminated:  # a stopped task ends in phase "run", output not uploaded
                    if launch.output_url or (
                        (launch.outputs or launch.dataset_outputs) and exit_code == 0
                    ):
                        phase = "upload"
                        write_state(td, "uploading", started_at=started_at)
                    if launch.output_url:
                        self._upload(launch.output_url, None, launch)
                    if exit_code == 0:  # user outputs only after success
                        for target in launch.outputs:
                            self._upload(target.url, target.regex, launch)
                        self._upload_datasets(launch)
                    phase = "done"
            except TaskFailure as e:
                exit_code, error = e.exit_code, str(e)
                _append_log(td, error)
            except Terminated:
                raise
            except Exception as e:  # the exit code must be written whatever went wrong
                traceback.print_exc()
                exit_code, error = exitcodes.RUNTIME_ERROR, f"runtime error: {e!r}"
                _append_log(td, error)
        except Terminated as e:
            exit_code, terminated, error = exitcodes.SIGNAL_BASE + e.signum, True, str(e)
        self._set_handlers(signal.SIG_IGN)  # exit.json must not be torn by a late signal
        info = ExitInfo(
            exit_code=exit_code,
            phase=phase,
            started_at=started_at,
            finished_at=time.time(),
            error=error,
            terminated=terminated,
            sandbox=self.mode,
        )
        write_json_atomic(td.exit_json, info.model_dump())
        write_state(td, "done", started_at=started_at)
        return exit_code

    # -- steps --------------------------------------------------------------------------------

    def _load(self) -> TaskLaunch:
        try:
            return TaskLaunch.model_validate_json(self.td.task_json.read_bytes())
        except FileNotFoundError as e:
            raise TaskFailure(exitcodes.INVALID_INPUT, f"no task.json in {self.td.root}") from e
        except ValidationError as e:
            raise TaskFailure(exitcodes.INVALID_INPUT, f"invalid task.json: {e}") from e

    def _prepare(self, launch: TaskLaunch, view: TaskView) -> tuple[list[str], dict[str, str]]:
        td = self.td
        for d in (td.output, td.home, td.files, td.input_root):
            d.mkdir(exist_ok=True)
        td.tmp.mkdir(exist_ok=True)
        os.chmod(td.tmp, 0o1777)  # like a real /tmp
        for i in range(len(launch.inputs)):
            td.input(i).mkdir(exist_ok=True)
        names: dict[str, int] = {}
        for i, inp in enumerate(launch.inputs):
            if inp.name is not None:
                names.setdefault(inp.name, i)
        ctx = TokenContext(
            workflow_id=launch.workflow_id,
            output=view.output,
            inputs=view.inputs,
            input_names=names,
            hosts=launch.hosts,
            uuid=uuid.uuid4().hex,
        )
        try:
            command = [substitute(s, ctx) for s in (*launch.command, *launch.args)]
            user_env = {k: substitute(v, ctx) for k, v in launch.environment.items()}
            file_texts = [
                (f, f.contents if f.base64 else substitute(f.contents, ctx)) for f in launch.files
            ]
        except TokenError as e:
            raise TaskFailure(exitcodes.INVALID_INPUT, f"cannot substitute tokens: {e}") from e
        try:
            placement = place_files(td, file_texts, self.mode)
        except (OSError, binascii.Error, ValueError) as e:
            raise TaskFailure(exitcodes.INVALID_FILE, f"cannot write injected file: {e}") from e
        for spec_path, host_path in placement.remapped:
            _append_log(td, f"no sandbox: injected file {spec_path} is at {host_path} instead")
        env = {
            "PATH": DEFAULT_PATH,
            "HOME": view.home,
            "LANG": os.environ.get("LANG", "C.UTF-8"),
        }
        if self.mode == "none":
            env["TMPDIR"] = view.tmp
        for key in ("TZ", "TERM"):
            if key in os.environ:
                env[key] = os.environ[key]
        env.update(user_env)
        env.update(
            OSMO_WORKFLOW_ID=launch.workflow_id,
            OSMO_GROUP_NAME=launch.group,
            OSMO_TASK_NAME=launch.task,
            OSMO_RETRY_ID=str(launch.retry_id),
        )
        if self.mode == "bwrap":
            self._status_r, self._status_w = os.pipe()
            try:
                argv = bwrap_argv(td, len(launch.inputs), placement.binds, command, self._status_w)
            except SandboxError as e:
                raise TaskFailure(exitcodes.INVALID_FILE, str(e)) from e
        else:
            argv = command
        return argv, env

    def _download(self, launch: TaskLaunch) -> None:
        for i, inp in enumerate(launch.inputs):
            if inp.manifest is not None:
                self._download_dataset(launch, i, inp.url, inp.manifest, inp.regex)
                continue
            try:
                res = open_store(inp.url, *_credentials_for(launch, inp.url)).download_dir(
                    inp.url, self.td.input(i), inp.regex
                )
            except StorageError as e:
                raise TaskFailure(
                    exitcodes.DOWNLOAD_FAILED, f"download of input {i} ({inp.url}) failed: {e}"
                ) from e
            log.info("input %d: %d files, %d bytes from %s", i, res.files, res.bytes, inp.url)

    def _download_dataset(
        self, launch: TaskLaunch, i: int, bucket: str, manifest: list[list[Any]], regex: str | None
    ) -> None:
        from .datasets import DatasetError, download_version

        try:
            store = open_store(bucket, *_credentials_for(launch, bucket))
            got = download_version(store, bucket, manifest, self.td.input(i), regex)
        except (StorageError, DatasetError, OSError) as e:
            raise TaskFailure(
                exitcodes.DOWNLOAD_FAILED, f"download of dataset input {i} failed: {e}"
            ) from e
        log.info("input %d: dataset, %d files, %d bytes", i, got.files, got.bytes)

    def _upload_datasets(self, launch: TaskLaunch) -> None:
        """New dataset versions from the output folder; recorded for the operator to report."""
        from .datasets import DatasetError, collect, existing_objects, manifest_of, upload_objects

        bucket = launch.dataset_bucket
        if not launch.dataset_outputs or not bucket:
            return
        results = []
        try:
            store = open_store(bucket, *_credentials_for(launch, bucket))
            for out in launch.dataset_outputs:
                files = collect([str(self.td.output) + "/"], out.regex)
                manifest = manifest_of(files)
                hashes = {sha for _, _, sha in manifest}
                have = existing_objects(store, bucket, hashes)
                upload_objects(store, bucket, files, manifest, hashes - have)
                results.append(
                    {
                        "name": out.name,
                        "tag": out.tag,
                        "metadata": out.metadata,
                        "labels": out.labels,
                        "manifest": [list(e) for e in manifest],
                        "present": sorted(hashes),
                    }
                )
        except (StorageError, DatasetError, OSError) as e:
            raise TaskFailure(exitcodes.UPLOAD_FAILED, f"dataset output upload failed: {e}") from e
        tmp = self.td.root / ".datasets.json.tmp"
        tmp.write_text(json.dumps(results))
        os.replace(tmp, self.td.root / "datasets.json")

    def _upload(self, url: str, regex: str | None = None, launch: TaskLaunch | None = None) -> None:
        try:
            creds = _credentials_for(launch, url) if launch is not None else ()
            res = open_store(url, *creds).upload_dir(self.td.output, url, regex)
        except StorageError as e:
            raise TaskFailure(
                exitcodes.UPLOAD_FAILED, f"upload of the output folder to {url} failed: {e}"
            ) from e
        if res.skipped:
            _append_log(
                self.td,
                f"output upload skipped {len(res.skipped)} entries that are not regular "
                f"files inside the output folder: {', '.join(res.skipped[:10])}",
            )
        log.info("output: %d files, %d bytes to %s", res.files, res.bytes, url)

    # -- the command --------------------------------------------------------------------------

    def _run_command(self, launch: TaskLaunch, argv: list[str], env: dict[str, str]) -> RunResult:
        td = self.td
        log_fd = os.open(td.output_log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        wake_r, wake_w = os.pipe()
        os.set_blocking(wake_w, False)
        self._set_handlers(self._note_terminated)
        old_wakeup = signal.set_wakeup_fd(wake_w, warn_on_full_buffer=False)
        try:
            if self.term_signal is not None:  # arrived between the barrier and here
                raise Terminated(self.term_signal)
            try:
                proc = subprocess.Popen(
                    argv,
                    stdin=subprocess.DEVNULL,
                    stdout=log_fd,
                    stderr=log_fd,
                    env=env,
                    cwd=td.home if self.mode == "none" else td.root,
                    start_new_session=True,
                    pass_fds=(self._status_w,) if self.mode == "bwrap" else (),
                    # bwrap has --die-with-parent; without it the command is tied to us here.
                    preexec_fn=_die_with_parent(os.getpid()) if self.mode == "none" else None,
                )
            except FileNotFoundError:
                _append_log(td, f"command not found: {argv[0]}")
                return RunResult(exitcodes.COMMAND_NOT_FOUND, False)
            except PermissionError:
                _append_log(td, f"command not executable: {argv[0]}")
                return RunResult(exitcodes.COMMAND_NOT_EXECUTABLE, False)
            finally:
                os.close(log_fd)
                if self.mode == "bwrap":
                    os.close(self._status_w)
            if self.mode == "bwrap":
                return self._wait_bwrap(proc, launch.kill_grace_seconds, wake_r)
            return self._wait_host(proc, launch.kill_grace_seconds, wake_r)
        finally:
            signal.set_wakeup_fd(old_wakeup)
            os.close(wake_r)
            os.close(wake_w)

    def _wait_bwrap(self, proc: subprocess.Popen[bytes], grace: float, wake_r: int) -> RunResult:
        """Wait for the sandboxed command, relaying a termination request to its namespace.

        bwrap reports the namespace (``child-pid``, ``pid-namespace``) and, only if the command
        really ran, its ``exit-code`` on the status pipe; the namespace dies with its init.
        """
        status_r = self._status_r
        pidfd = os.pidfd_open(proc.pid)
        sel = selectors.DefaultSelector()
        sel.register(status_r, selectors.EVENT_READ)
        sel.register(pidfd, selectors.EVENT_READ)
        sel.register(wake_r, selectors.EVENT_READ)
        buf = b""
        info: dict[str, int] = {}
        term_sent = False
        kill_at: float | None = None
        killed = False
        try:
            while True:
                timeout = None if kill_at is None else max(0.0, kill_at - time.monotonic())
                exited = False
                for key, _ in sel.select(timeout):
                    if key.fd == status_r:
                        chunk = os.read(status_r, 4096)
                        if not chunk:
                            sel.unregister(status_r)
                        buf += chunk
                    elif key.fd == wake_r:
                        os.read(wake_r, 512)
                    else:
                        exited = True
                buf = self._parse_status(buf, info)
                if exited:
                    break
                if self.term_signal is not None and not term_sent and "child-pid" in info:
                    term_sent = True
                    kill_at = time.monotonic() + grace
                    for pid in _ns_members(info["pid-namespace"], exclude=info["child-pid"]):
                        with contextlib.suppress(ProcessLookupError):
                            os.kill(pid, signal.SIGTERM)
                elif self.term_signal is not None and kill_at is None:
                    kill_at = time.monotonic() + grace  # namespace not reported yet
                if kill_at is not None and time.monotonic() >= kill_at and not killed:
                    killed = True
                    # SIGKILL of the namespace's init kills every process in it.
                    for target in (info.get("child-pid"), proc.pid):
                        if target is not None:
                            with contextlib.suppress(ProcessLookupError):
                                os.kill(target, signal.SIGKILL)
                    kill_at = None
            status = proc.wait()
            os.set_blocking(status_r, False)
            try:
                while chunk := os.read(status_r, 4096):
                    buf += chunk
            except BlockingIOError:
                pass
            self._parse_status(buf + b"\n", info)
        finally:
            sel.close()
            os.close(pidfd)
            os.close(status_r)
        terminated = self.term_signal is not None
        if "exit-code" in info:
            return RunResult(info["exit-code"], terminated)
        if terminated:
            return RunResult(_signal_exit_code(status) if status < 0 else 137, True)
        tail = _log_tail(self.td.output_log)
        message = f"the sandbox failed to start (bwrap exit status {status}): {tail}"
        _append_log(self.td, message)
        return RunResult(exitcodes.RUNTIME_ERROR, False, message)

    @staticmethod
    def _parse_status(buf: bytes, info: dict[str, int]) -> bytes:
        """Consume complete JSON lines from bwrap's status stream; returns the remainder."""
        *lines, rest = buf.split(b"\n")
        for line in lines:
            if line.strip():
                try:
                    doc = json.loads(line)
                except ValueError:
                    continue
                info.update({k: v for k, v in doc.items() if isinstance(v, int)})
        return rest

    def _wait_host(self, proc: subprocess.Popen[bytes], grace: float, wake_r: int) -> RunResult:
        """Fallback: the command leads its own process group, which is what gets signalled."""
        pidfd = os.pidfd_open(proc.pid)
        sel = selectors.DefaultSelector()
        sel.register(pidfd, selectors.EVENT_READ)
        sel.register(wake_r, selectors.EVENT_READ)
        term_sent = False
        kill_at: float | None = None
        try:
            while True:
                timeout = None if kill_at is None else max(0.0, kill_at - time.monotonic())
                exited = False
                for key, _ in sel.select(timeout):
                    if key.fd == wake_r:
                        os.read(wake_r, 512)
                    else:
                        exited = True
                if exited:
                    break
                if self.term_signal is not None and not term_sent:
                    term_sent = True
                    kill_at = time.monotonic() + grace
                    _killpg(proc.pid, signal.SIGTERM)
                if kill_at is not None and time.monotonic() >= kill_at:
                    _killpg(proc.pid, signal.SIGKILL)
                    kill_at = None
            # Still unreaped, so the group id cannot have been reused: stop what the command
            # left behind, as a container runtime would when its main process exits.
            _killpg(proc.pid, signal.SIGKILL)
            status = proc.wait()
        finally:
            sel.close()
            os.close(pidfd)
        return RunResult(_signal_exit_code(status), self.term_signal is not None)


def _die_with_parent(parent: int) -> Callable[[], None]:
    """A preexec_fn: SIGKILL the child if the supervisor dies (only in fallback mode, where
    it costs a real fork instead of vfork)."""
    prctl = ctypes.CDLL(None, use_errno=True).prctl

    def setup() -> None:
        prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() != parent:  # died before prctl took effect
            os._exit(1)

    return setup


_PR_SET_PDEATHSIG = 1


def _credentials_for(launch: TaskLaunch, url: str) -> tuple[Any, ...]:
    """The submitter's DATA credential for ``url`` (longest matching endpoint), if any."""
    best: dict[str, str] | None = None
    for payload in launch.data_credentials:
        endpoint = payload.get("endpoint", "")
        if (
            endpoint
            and url.startswith(endpoint)
            and (best is None or len(endpoint) > len(best.get("endpoint", "")))
        ):
            best = payload
    if best is None:
        return ()
    from ..storage.credentials import Credentials

    fields = {k: v for k, v in best.items() if k in Credentials.model_fields}
    return (Credentials.model_validate(fields),)


def _killpg(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def _log_tail(path: Path, n: int = 400) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(max(0, f.seek(0, os.SEEK_END) - n))
            lines = f.read().decode(errors="replace").strip().splitlines()
        return lines[-1] if lines else "no message"
    except OSError:
        return "no message"


# ---------------------------------------------------------------------------------------------
# Entry points


def redirect_stdio(td: TaskDir) -> None:
    """stdin from /dev/null, stdout and stderr to supervisor.log (never the operator's pipes)."""
    null = os.open(os.devnull, os.O_RDONLY)
    out = os.open(td.supervisor_log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(null, 0)
    os.dup2(out, 1)
    os.dup2(out, 2)
    os.close(null)
    os.close(out)


def configure_logging() -> None:
    root = logging.getLogger()
    for h in list(root.handlers):
        root.removeHandler(h)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root.addHandler(handler)
    root.setLevel(logging.INFO)


@dataclass
class PendingSpawn:
    """A supervisor being forked: its pid and claim arrive on ``fd`` (see ``finish_detached``)."""

    task_dir: Path
    intermediate: int
    fd: int


def start_detached(task_dir: str | os.PathLike[str]) -> PendingSpawn:
    """Fork a supervisor for ``task_dir`` into its own session, without waiting for it.

    Double fork: the intermediate child exits at once, so the supervisor is nobody's child
    (init reaps it) and outlives whoever asked for it. Read ``fd`` to EOF and pass the bytes to
    ``finish_detached``; the zygote does that for many spawns at once.
    """
    td = TaskDir(task_dir)
    sys.stdout.flush()
    sys.stderr.flush()
    r, w = os.pipe()
    first = os.fork()
    if first == 0:  # intermediate: only exists to make the supervisor an orphan
        try:
            os.close(r)
            os.setsid()
            if os.fork() == 0:
                _supervisor_child(td, w)  # never returns
        finally:
            os._exit(0)
    os.close(w)
    return PendingSpawn(td.root, first, r)


def finish_detached(pending: PendingSpawn, reply: bytes) -> int:
    """The supervisor's pid, once ``pending.fd`` reached EOF with ``reply``; closes the fd.

    Raises RuntimeError if the supervisor could not claim the task dir (e.g. it already had a
    supervisor) or died first.
    """
    os.close(pending.fd)
    # EOF means the intermediate has exited too (it held the pipe), so this does not block.
    os.waitpid(pending.intermediate, 0)
    try:
        msg = json.loads(reply)
    except ValueError:
        raise RuntimeError(f"supervisor for {pending.task_dir} died before starting") from None
    if "pid" not in msg:
        raise RuntimeError(str(msg.get("error", "supervisor failed to start")))
    return int(msg["pid"])


def detach(task_dir: str | os.PathLike[str]) -> int:
    """Start a detached supervisor for ``task_dir`` and return its pid.

    supervisor.json exists when this returns (the supervisor claims the dir before replying).
    """
    pending = start_detached(task_dir)
    chunks = []
    while chunk := os.read(pending.fd, 4096):
        chunks.append(chunk)
    return finish_detached(pending, b"".join(chunks))


_early_signal: list[int] = []


def _record_early_signal(signum: int, _frame: FrameType | None) -> None:
    _early_signal.append(signum)


def _supervisor_child(td: TaskDir, report_fd: int) -> None:
    """Body of the detached supervisor: claim, report, detach from inherited state, run."""
    code = 1
    try:
        # A stop request may come as soon as our pid is out: remember it for Supervisor.run.
        signal.signal(signal.SIGTERM, _record_early_signal)
        signal.signal(signal.SIGINT, _record_early_signal)
        try:
            td.root.mkdir(parents=True, exist_ok=True)
            ok = claim(td)
            reply = {"pid": os.getpid()} if ok else {"error": f"{td.root} already has a supervisor"}
        except BaseException as e:
            reply = {"error": f"supervisor set-up failed: {e!r}"}
            ok = False
        # Reply first (the requester is waiting), then shed what we inherited.
        os.write(report_fd, json.dumps(reply).encode())
        os.close(report_fd)
        if not ok:
            return
        redirect_stdio(td)
        # Nothing of the parent's (operator/zygote pipes, sockets) may be held open.
        os.closerange(3, 65536)
        signal.signal(signal.SIGPIPE, signal.SIG_DFL)
        configure_logging()
        Supervisor(td).run()
        code = 0
    except BaseException:
        traceback.print_exc()
    finally:
        try:
            sys.stderr.flush()
        finally:
            os._exit(code)


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(
        prog="python -m osmo.runtime.supervisor", description="Supervise one osmo task."
    )
    parser.add_argument("task_dir")
    parser.add_argument(
        "--detach",
        action="store_true",
        help="run in the background, detached from the caller; print the supervisor pid",
    )
    ns = parser.parse_args(argv)
    if ns.detach:
        try:
            pid = detach(ns.task_dir)
        except RuntimeError as e:
            print(f"error: {e}", file=sys.stderr)
            return 1
        print(pid, flush=True)
        return 0
    td = TaskDir(ns.task_dir)
    td.root.mkdir(parents=True, exist_ok=True)
    configure_logging()
    if not claim(td):
        print(f"error: {td.root} already has a supervisor", file=sys.stderr)
        return 1
    Supervisor(td).run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
