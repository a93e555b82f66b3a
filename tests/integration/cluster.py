"""A control plane and operators as real processes (``osmo server start``, ``osmo operator start``)."""

from __future__ import annotations

import contextlib
import os
import re
import select
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

OSMO = str(Path(sys.executable).parent / "osmo")
TERMINAL = ("COMPLETED", "FAILED")


def _wait_line(proc: subprocess.Popen[bytes], pattern: bytes, timeout: float) -> bytes:
    assert proc.stdout is not None
    buf = b""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([proc.stdout], [], [], 0.2)
        if ready:
            chunk = os.read(proc.stdout.fileno(), 65536)
            if not chunk:
                break
            buf += chunk
            m = re.search(pattern, buf)
            if m:
                return m.group(1)
        if proc.poll() is not None:
            break
    raise RuntimeError(f"process did not print {pattern!r}: {buf.decode(errors='replace')}")


class Cluster:
    """One server with its own OSMO_HOME; operators are started per test."""

    def __init__(self, home: Path, database_url: str | None = None, **settings: str):
        self.home = home
        self.token = "integration-bootstrap-token"
        self.env = dict(os.environ)
        self.env.update(
            OSMO_HOME=str(home),
            OSMO_OPERATOR_TOKENS=self.token,
            OSMO_HEARTBEAT_INTERVAL="0.5",
            OSMO_BACKEND_OFFLINE_AFTER="3",
            OSMO_BACKEND_ERROR_AFTER="8",
        )
        self.env.pop("OSMO_URL", None)
        if database_url:
            self.env["OSMO_DATABASE_URL"] = database_url
        self.env.update(settings)
        self.server: subprocess.Popen[bytes] | None = None
        self.operators: dict[str, subprocess.Popen[bytes]] = {}
        self.url = ""
        (home / "token").write_text(self.token + "\n")
        self.http: httpx.Client | None = None

    def start_server(self, port: int = 0) -> None:
        """Start ``osmo server`` (on a free port, or ``port``: e.g. the old one after a crash)."""
        self.server = subprocess.Popen(
            [OSMO, "server", "start", "--port", str(port)],
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        self.url = _wait_line(self.server, rb"serving (http://\S+)", 60).decode()
        if self.http is not None:
            self.http.close()
        self.http = httpx.Client(base_url=self.url, timeout=30)

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1])

    def kill_server(self) -> None:
        """SIGKILL the server (no shutdown hooks run); ``start_server(self.port)`` brings it back."""
        assert self.server is not None
        self.server.kill()
        self.server.wait()
        if self.server.stdout:
            self.server.stdout.close()

    def start_operator(
        self,
        backend: str,
        *args: str,
        token_file: Path | None = None,
        wait: bool = True,
        state_dir: Path | None = None,
        key: str | None = None,
    ) -> subprocess.Popen[bytes]:
        """``key`` (default: the backend name) names the process in ``operators``; a second
        operator for one backend needs its own key. ``state_dir`` defaults to ``op-<backend>``."""
        proc = subprocess.Popen(
            [
                OSMO,
                "operator",
                "start",
                "--server",
                self.url,
                "--backend",
                backend,
                "--token-file",
                str(token_file or self.home / "token"),
                "--state-dir",
                str(state_dir or self.home / f"op-{backend}"),
                *args,
            ],
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        self.operators[key or backend] = proc
        if wait:
            self.wait_online(backend)
        return proc

    def wait_online(self, backend: str, online: bool = True, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            backends = {b["name"]: b for b in self.get("/api/configs/backend")["backends"]}
            if backends.get(backend, {}).get("online", False) == online:
                return
            time.sleep(0.1)
        raise AssertionError(
            f"backend {backend} did not become {'online' if online else 'offline'}"
        )

    def stop_operator(self, backend: str, sig: int = signal.SIGTERM) -> str:
        proc = self.operators.pop(backend)
        if proc.poll() is None:
            proc.send_signal(sig)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        out = proc.stdout.read().decode(errors="replace") if proc.stdout else ""
        if proc.stdout:
            proc.stdout.close()
        return out

    def stop(self) -> None:
        for backend in list(self.operators):
            proc = self.operators[backend]
            if proc.poll() is None:
                proc.send_signal(signal.SIGCONT)  # a test may have left it stopped
            self.stop_operator(backend)
        if self.http is not None:
            self.http.close()
        if self.server is not None:
            if self.server.poll() is None:
                self.server.send_signal(signal.SIGCONT)  # a test may have left it stopped
                self.server.send_signal(signal.SIGINT)
            try:
                self.server.wait(30)
            except subprocess.TimeoutExpired:
                self.server.kill()
                self.server.wait()
            if self.server.stdout:
                self.server.stdout.close()
        self.sweep()

    def sweep(self) -> None:
        """Kill whatever this cluster left running (local-executor supervisors and tasks
        outlive their operator by design): every process with this OSMO_HOME in its environment."""
        marker = f"OSMO_HOME={self.home}".encode()
        for pid_dir in Path("/proc").iterdir():
            if not pid_dir.name.isdigit() or int(pid_dir.name) == os.getpid():
                continue
            try:
                environ = (pid_dir / "environ").read_bytes()
            except OSError:
                continue
            if marker in environ.split(b"\0"):
                with contextlib.suppress(OSError):  # a supervisor leads its task's group
                    os.killpg(int(pid_dir.name), signal.SIGKILL)
                with contextlib.suppress(OSError):
                    os.kill(int(pid_dir.name), signal.SIGKILL)

    def osmo(
        self, *args: str, check: bool = True, timeout: float = 60
    ) -> subprocess.CompletedProcess[str]:
        """The installed ``osmo`` CLI against this server; never a traceback."""
        env = dict(self.env, OSMO_URL=self.url)
        result = subprocess.run(
            [OSMO, *args], env=env, capture_output=True, text=True, timeout=timeout
        )
        assert "Traceback" not in result.stdout + result.stderr, result.stdout + result.stderr
        if check and result.returncode != 0:
            raise AssertionError(
                f"osmo {' '.join(args)} exited {result.returncode}:\n{result.stdout}\n{result.stderr}"
            )
        return result

    # ---- API helpers --------------------------------------------------------------------------

    def get(self, path: str, **params: Any) -> Any:
        assert self.http is not None
        r = self.http.get(path, params=params)
        r.raise_for_status()
        return r.json()

    def put_pool(self, name: str, config: dict[str, Any]) -> None:
        assert self.http is not None
        r = self.http.put(f"/api/configs/pool/{name}", json=config)
        assert r.status_code == 200, r.text

    def submit(
        self, text: str, pool: str = "default", priority: str = "NORMAL", expect: int = 200
    ) -> Any:
        assert self.http is not None
        r = self.http.post(
            f"/api/pool/{pool}/workflow", params={"priority": priority}, json={"file": text}
        )
        assert r.status_code == expect, r.text
        return r.json()["id"] if expect == 200 else r.json()

    def query(self, wf_id: str, verbose: bool = False) -> dict[str, Any]:
        return dict(self.get(f"/api/workflow/{wf_id}", verbose=verbose))

    def wait(
        self, wf_id: str, statuses: tuple[str, ...] = TERMINAL, timeout: float = 60
    ) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        wf: dict[str, Any] = {}
        while time.monotonic() < deadline:
            wf = self.query(wf_id)
            if wf["status"].startswith(statuses):
                return wf
            time.sleep(0.1)
        raise AssertionError(f"{wf_id} did not reach {statuses}: {wf}")

    def wait_tasks(self, wf_id: str, status: str, timeout: float = 60) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        wf: dict[str, Any] = {}
        while time.monotonic() < deadline:
            wf = self.query(wf_id)
            if all(t["status"] == status for g in wf["groups"] for t in g["tasks"]):
                return wf
            time.sleep(0.1)
        raise AssertionError(f"{wf_id} tasks did not all reach {status}: {wf}")


def tasks(wf: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {t["name"]: t for g in wf["groups"] for t in g["tasks"]}


def sim_workflow(
    name: str,
    n: int = 1,
    gpu: int = 0,
    duration: float = 0,
    exit_code: int = 0,
    group: bool = False,
    platform: str | None = None,
) -> str:
    res = f"gpu: {gpu}" + (f", platform: {platform}" if platform else "")
    env = f'{{OSMO_SIM_DURATION: "{duration}", OSMO_SIM_EXIT_CODE: "{exit_code}"}}'
    if group:
        body = "\n".join(
            f"    - {{name: t{i}, image: sim, command: [run], environment: {env}{', lead: true' if i == 0 else ''}}}"
            for i in range(n)
        )
        return f"workflow:\n  name: {name}\n  resources:\n    default: {{{res}}}\n  groups:\n  - name: g\n    tasks:\n{body}\n"
    body = "\n".join(
        f"  - {{name: t{i}, image: sim, command: [run], environment: {env}}}" for i in range(n)
    )
    return f"workflow:\n  name: {name}\n  resources:\n    default: {{{res}}}\n  tasks:\n{body}\n"
