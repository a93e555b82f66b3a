"""Drive a real ``osmo standalone`` process and the installed ``osmo`` CLI from tests."""

from __future__ import annotations

import contextlib
import json
import os
import re
import select
import shutil
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import psycopg
from sqlalchemy.engine import make_url

OSMO = str(Path(sys.executable).parent / "osmo")
TERMINAL = {
    "COMPLETED",
    "FAILED",
    "FAILED_SUBMISSION",
    "FAILED_SERVER_ERROR",
    "FAILED_EXEC_TIMEOUT",
    "FAILED_QUEUE_TIMEOUT",
    "FAILED_CANCELED",
    "FAILED_BACKEND_ERROR",
    "FAILED_IMAGE_PULL",
    "FAILED_EVICTED",
    "FAILED_START_ERROR",
    "FAILED_START_TIMEOUT",
    "FAILED_PREEMPTED",
}


def create_postgres_database(server_url: str) -> tuple[str, str]:
    """A fresh database on the test PostgreSQL; returns (sqlalchemy url, name)."""
    url = make_url(server_url)
    name = f"osmo_e2e_{uuid.uuid4().hex[:10]}"
    conninfo = url.set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return url.set(database=name).render_as_string(hide_password=False), name


def drop_postgres_database(server_url: str, name: str) -> None:
    url = make_url(server_url)
    conninfo = url.set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


class Platform:
    """One ``osmo standalone`` with its own OSMO_HOME and database."""

    def __init__(self, home: Path, database_url: str, extra_env: dict[str, str] | None = None):
        self.home = home
        self.database_url = database_url
        self.proc: subprocess.Popen[bytes] | None = None
        self.url = ""
        self.extra_env = extra_env or {}
        self.output: list[str] = []

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            OSMO_HOME=str(self.home),
            OSMO_DATABASE_URL=self.database_url,
            OSMO_HEARTBEAT_INTERVAL="1",
            OSMO_BACKEND_OFFLINE_AFTER="5",
        )
        env.update(self.extra_env)
        if self.url:
            env["OSMO_URL"] = self.url
        return env

    def start(self, timeout: float = 60) -> None:
        env = self.env()
        env.pop("OSMO_URL", None)
        self.proc = subprocess.Popen(
            [OSMO, "standalone", "--port", "0"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        assert self.proc.stdout is not None
        deadline = time.monotonic() + timeout
        buf = b""
        while time.monotonic() < deadline:
            ready, _, _ = select.select([self.proc.stdout], [], [], 0.5)
            if ready:
                chunk = os.read(self.proc.stdout.fileno(), 65536)
                if not chunk:
                    break
                buf += chunk
                m = re.search(rb"serving (http://\S+)", buf)
                if m:
                    self.url = m.group(1).decode()
                    self.output.append(buf.decode(errors="replace"))
                    return
            if self.proc.poll() is not None:
                break
        raise RuntimeError(f"osmo standalone did not start: {buf.decode(errors='replace')}")

    def stop(self, sig: int = signal.SIGINT, timeout: float = 60) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            rc = self.proc.wait()
        if self.proc.stdout is not None:
            rest = self.proc.stdout.read() or b""
            self.output.append(rest.decode(errors="replace"))
            self.proc.stdout.close()
        return rc

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait()
        if self.proc.stdout is not None:
            self.proc.stdout.close()

    def sweep(self) -> None:
        """Kill anything still running that this platform started (supervisors, tasks)."""
        marker = f"OSMO_HOME={self.home}".encode()
        for pid_dir in Path("/proc").iterdir():
            if not pid_dir.name.isdigit() or int(pid_dir.name) == os.getpid():
                continue
            try:
                environ = (pid_dir / "environ").read_bytes()
            except OSError:
                continue
            if marker in environ.split(b"\0"):
                with contextlib.suppress(OSError):
                    os.killpg(int(pid_dir.name), signal.SIGKILL)
                with contextlib.suppress(OSError):
                    os.kill(int(pid_dir.name), signal.SIGKILL)

    def osmo(
        self, *args: str, check: bool = True, timeout: float = 120, input: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [OSMO, *args],
            env=self.env(),
            capture_output=True,
            text=True,
            timeout=timeout,
            input=input,
        )
        assert "Traceback" not in result.stdout + result.stderr, result.stdout + result.stderr
        if check and result.returncode != 0:
            raise AssertionError(
                f"osmo {' '.join(args)} exited {result.returncode}:\n{result.stdout}\n{result.stderr}"
            )
        return result

    def submit(self, path: Path, *args: str) -> str:
        out = self.osmo("workflow", "submit", str(path), *args, "-t", "json")
        return str(json.loads(out.stdout)["id"])

    def query(self, wf_id: str, verbose: bool = False) -> dict[str, Any]:
        args = ["workflow", "query", wf_id, "-t", "json"] + (["-v"] if verbose else [])
        return dict(json.loads(self.osmo(*args).stdout))

    def wait(
        self, wf_id: str, timeout: float = 90, statuses: set[str] | None = None
    ) -> dict[str, Any]:
        want = statuses or TERMINAL
        deadline = time.monotonic() + timeout
        wf: dict[str, Any] = {}
        while time.monotonic() < deadline:
            wf = self.query(wf_id)
            if wf["status"] in want:
                return wf
            time.sleep(0.3)
        raise AssertionError(
            f"{wf_id} did not reach {sorted(want)} in {timeout}s: {json.dumps(wf, indent=1)}"
        )

    def wait_task(self, wf_id: str, task: str, status: str, timeout: float = 60) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for t in tasks_of(self.query(wf_id)):
                if t["name"] == task and t["status"] == status:
                    return t
            time.sleep(0.2)
        raise AssertionError(f"{wf_id}/{task} did not reach {status}: {self.query(wf_id)}")

    def logs(self, wf_id: str, *args: str) -> str:
        return self.osmo("workflow", "logs", wf_id, *args).stdout


def tasks_of(wf: dict[str, Any]) -> list[dict[str, Any]]:
    return [t for g in wf["groups"] for t in g["tasks"]]


def task(wf: dict[str, Any], name: str) -> dict[str, Any]:
    return next(t for t in tasks_of(wf) if t["name"] == name)


def group(wf: dict[str, Any], name: str) -> dict[str, Any]:
    return next(g for g in wf["groups"] if g["name"] == name)


def pids_with(marker: str) -> list[int]:
    """Processes whose command line contains ``marker`` (to check tasks really stopped)."""
    out = []
    for pid_dir in Path("/proc").iterdir():
        if not pid_dir.name.isdigit():
            continue
        try:
            cmd = (pid_dir / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if marker in cmd:
            out.append(int(pid_dir.name))
    return out


def wait_gone(marker: str, timeout: float = 20) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not pids_with(marker):
            return True
        time.sleep(0.2)
    return False


def rmtree(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)
