"""Per-task isolation with bubblewrap: the paths a task would see in a container.

Inside the sandbox a task sees the host filesystem read-only, plus:

    /osmo/data/input/<i>   its downloaded inputs (read-only)
    /osmo/data/output      its output folder (writable)
    /osmo/home             its $HOME and working directory (writable)
    /tmp                   its private /tmp (writable)
    <absolute paths>       injected files

The root is a tmpfs built by bwrap in which every host top-level entry is bind-mounted read-only
(so nothing is ever created on the real host root), then remounted read-only. To inject a file
at a path whose folder does not exist on the host (``/opt/new/run.sh``), the deepest existing host
folder on the way (``/opt``) is rebuilt inside the tmpfs with each of its entries bound
individually, leaving room for the new folder. The task runs in its own pid namespace with no
capabilities, dies with its supervisor, and shares the host network.

Where bwrap is missing or fails its start-up probe (or ``OSMO_SANDBOX=none``), tasks run as
plain host processes ("fallback" mode) with tokens resolving to the real task-dir folders.
"""

from __future__ import annotations

import base64
import glob
import logging
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from .launch import FileSpec
from .taskdir import TaskDir

log = logging.getLogger("osmo.runtime.sandbox")

SandboxMode = Literal["bwrap", "none"]
SANDBOX_ENV = "OSMO_SANDBOX"  # "none" forces fallback; "bwrap" requires bwrap; unset: auto

SANDBOX_INPUT = "/osmo/data/input"
SANDBOX_OUTPUT = "/osmo/data/output"
SANDBOX_HOME = "/osmo/home"
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

# Host top-level entries the sandbox provides itself.
_OWN_TOP_LEVEL = frozenset({"proc", "dev", "tmp", "osmo"})
# Rebuilding a host folder costs one mount per entry (~0.3 ms each); beyond this, refuse.
MAX_SPLIT_ENTRIES = 256

# exec through sh so that a missing or non-executable command gives the usual 127 / 126 with a
# message in output.log, instead of bwrap's own exit status 1.
_EXEC_WRAPPER = ["/bin/sh", "-c", 'exec "$@"', "osmo-exec"]


class SandboxError(Exception):
    """The task cannot be set up as asked (e.g. an injected file path that cannot be made)."""


@dataclass(frozen=True)
class TaskView:
    """The folders as the task's command sees them: what tokens and $HOME resolve to."""

    output: str
    inputs: list[str]
    home: str
    tmp: str


def task_view(td: TaskDir, n_inputs: int, mode: SandboxMode) -> TaskView:
    if mode == "bwrap":
        return TaskView(
            output=SANDBOX_OUTPUT,
            inputs=[f"{SANDBOX_INPUT}/{i}" for i in range(n_inputs)],
            home=SANDBOX_HOME,
            tmp="/tmp",
        )
    return TaskView(
        output=str(td.output),
        inputs=[str(td.input(i)) for i in range(n_inputs)],
        home=str(td.home),
        tmp=str(td.tmp),
    )


# ---------------------------------------------------------------------------------------------
# Mode selection (probe cached per process)

_probe_cache: dict[str, str | None] = {}
_bwrap_exe: list[str] = []  # absolute path, resolved once: the task's PATH may not reach it


def _bwrap() -> str:
    if not _bwrap_exe:
        _bwrap_exe.append(shutil.which("bwrap") or "bwrap")
    return _bwrap_exe[0]


def _probe_bwrap() -> str | None:
    """None if bwrap can build our kind of sandbox here, else why not."""
    if shutil.which("bwrap") is None:
        return "bwrap is not installed"
    with tempfile.TemporaryDirectory(prefix="osmo-probe-") as tmp:
        td = TaskDir(tmp)
        for d in (td.output, td.tmp, td.home, td.files):
            d.mkdir()
        r_fd, w_fd = os.pipe()
        try:
            argv = bwrap_argv(td, n_inputs=0, binds=[], command=["true"], status_fd=w_fd)
            proc = subprocess.run(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                pass_fds=(w_fd,),
                timeout=20,
                env={"PATH": DEFAULT_PATH},
                check=False,
            )
        except (OSError, subprocess.SubprocessError, SandboxError) as e:
            return f"bwrap probe failed: {e}"
        finally:
            os.close(w_fd)
            os.close(r_fd)
        if proc.returncode != 0:
            err = proc.stderr.decode(errors="replace").strip().splitlines()
            return f"bwrap probe exited {proc.returncode}: {err[-1] if err else 'no message'}"
    return None


def sandbox_mode() -> SandboxMode:
    """``bwrap`` when usable, else ``none`` (logged once per process, naming the reason)."""
    want = os.environ.get(SANDBOX_ENV, "").strip().lower()
    if want in ("none", "off", "0", "false"):
        if "forced" not in _probe_cache:
            _probe_cache["forced"] = None
            log.warning(
                "osmo runtime: %s=%s, tasks run WITHOUT a sandbox (fallback mode: host "
                "processes, real task-dir paths, host filesystem writable)",
                SANDBOX_ENV,
                want,
            )
        return "none"
    if "bwrap" not in _probe_cache:
        reason = _probe_bwrap()
        _probe_cache["bwrap"] = reason
        if reason is not None:
            if want == "bwrap":
                raise SandboxError(f"{SANDBOX_ENV}=bwrap but bwrap is unusable: {reason}")
            log.warning(
                "osmo runtime: sandbox unavailable (%s); tasks run WITHOUT a sandbox "
                "(fallback mode: host processes, real task-dir paths)",
                reason,
            )
    return "none" if _probe_cache["bwrap"] is not None else "bwrap"


# ---------------------------------------------------------------------------------------------
# Injected files


@dataclass
class FilePlacement:
    """Where injected files went: written straight into a task folder, or bound from files/."""

    binds: list[tuple[str, str]] = field(default_factory=list)  # (host source, sandbox dest)
    remapped: list[tuple[str, str]] = field(default_factory=list)  # fallback: (spec, host)


def _under(path: str, prefix: str) -> str | None:
    """``path`` relative to ``prefix`` if it lies strictly below it."""
    if path.startswith(prefix.rstrip("/") + "/"):
        return path[len(prefix.rstrip("/")) + 1 :]
    return None


def _write_file(dest: Path, spec: FileSpec, contents: str) -> None:
    data = base64.b64decode(spec.contents, validate=True) if spec.base64 else contents.encode()
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_bytes(data)
    # Executable so that `command: [/path/run.sh]` works; the task owns its copy anyway.
    os.chmod(dest, 0o755)


def place_files(td: TaskDir, files: list[tuple[FileSpec, str]], mode: SandboxMode) -> FilePlacement:
    """Write injected files (spec, substituted contents) into the task dir.

    Files below /tmp or /osmo/data/output are written into the task's own tmp/ or output/;
    others are written below files/ and bind-mounted (bwrap) or just left there (fallback,
    which cannot put them at their absolute paths without writing to the host).
    """
    placement = FilePlacement()
    for spec, contents in files:
        if (rel := _under(spec.path, SANDBOX_OUTPUT)) is not None:
            host = td.output / rel
        elif mode == "bwrap" and (rel := _under(spec.path, "/tmp")) is not None:
            host = td.tmp / rel
        else:
            host = td.files / spec.path.lstrip("/")
            if mode == "bwrap":
                placement.binds.append((str(host), spec.path))
            else:
                placement.remapped.append((spec.path, str(host)))
        _write_file(host, spec, contents)
    return placement


# ---------------------------------------------------------------------------------------------
# bwrap command line


def _split_dirs(dests: list[str]) -> set[str]:
    """Host folders to rebuild in the tmpfs so that every bind destination can be created."""
    split: set[str] = set()
    for dest in dests:
        parts = dest.strip("/").split("/")
        cur = ""
        need: str | None = None
        for i, comp in enumerate(parts):
            nxt = f"{cur}/{comp}"
            last = i == len(parts) - 1
            if not os.path.lexists(nxt):
                need = cur or "/"  # nxt must be created inside cur
                break
            if os.path.islink(nxt):
                raise SandboxError(
                    f"injected file {dest}: {nxt} is a symlink on the host; use the path it "
                    f"points to ({os.path.realpath(nxt)})"
                )
            if last:
                if not os.path.isfile(nxt):
                    raise SandboxError(
                        f"injected file {dest}: the host has a non-file at that path"
                    )
                break  # an existing host file: bind over it, nothing to create
            if not os.path.isdir(nxt):
                raise SandboxError(f"injected file {dest}: {nxt} is a file on the host")
            cur = nxt
        if need is None or need == "/":
            continue  # the root is a tmpfs already
        # The folder and each of its ancestors get rebuilt, one bind per entry.
        chain = []
        while need != "/":
            chain.append(need)
            need = os.path.dirname(need)
        for folder in chain:
            n = len(os.listdir(folder))
            if n > MAX_SPLIT_ENTRIES:
                raise SandboxError(
                    f"injected file {dest}: creating it needs a copy of host folder {folder} "
                    f"inside the sandbox, and {folder} has {n} entries (limit "
                    f"{MAX_SPLIT_ENTRIES}); inject it under a folder that does not exist on "
                    "the host, such as /opt/<name>/"
                )
        split.update(chain)
    return split


def _mirror(host_dir: str, split: set[str], out: list[str]) -> None:
    """Bind every entry of ``host_dir`` read-only, recursing into folders being rebuilt."""
    try:
        entries = sorted(os.scandir(host_dir), key=lambda e: e.name)
    except OSError as e:
        raise SandboxError(f"cannot list host folder {host_dir}: {e}") from e
    for entry in entries:
        if host_dir == "/" and entry.name in _OWN_TOP_LEVEL:
            continue
        path = entry.path
        if path in split:
            mode = os.stat(path).st_mode & 0o7777
            out += ["--perms", f"{mode:04o}", "--dir", path]
            _mirror(path, split, out)
        elif entry.is_symlink():
            out += ["--symlink", os.readlink(path), path]
        else:
            out += ["--ro-bind", path, path]


def bwrap_argv(
    td: TaskDir,
    n_inputs: int,
    binds: list[tuple[str, str]],
    command: list[str],
    status_fd: int,
) -> list[str]:
    """The bwrap command line running ``command`` for the task in ``td``."""
    out: list[str] = [_bwrap(), "--tmpfs", "/"]
    _mirror("/", _split_dirs([dest for _, dest in binds]), out)
    out += ["--dev", "/dev"]
    for node in sorted(glob.glob("/dev/nvidia*")):
        out += ["--dev-bind", node, node]
    out += ["--proc", "/proc"]
    out += ["--bind", str(td.tmp), "/tmp"]
    out += ["--dir", SANDBOX_INPUT]
    for i in range(n_inputs):
        out += ["--ro-bind", str(td.input(i)), f"{SANDBOX_INPUT}/{i}"]
    out += ["--bind", str(td.output), SANDBOX_OUTPUT]
    out += ["--bind", str(td.home), SANDBOX_HOME]
    for src, dest in binds:
        out += ["--bind", src, dest]
    out += ["--remount-ro", "/"]
    out += ["--chdir", SANDBOX_HOME]
    out += ["--unshare-pid", "--die-with-parent", "--cap-drop", "ALL"]
    out += ["--json-status-fd", str(status_fd)]
    out += ["--", *_EXEC_WRAPPER, *command]
    return out
