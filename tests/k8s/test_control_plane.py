"""Workflows through the real control plane (``osmo server start``) and an operator process
(``osmo operator start --executor kubernetes``) running with only the chart's RBAC."""

from __future__ import annotations

import os
import re
import select
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from cluster import WORKFLOW_NS, KubeCluster

pytestmark = pytest.mark.k8s
OSMO = str(Path(sys.executable).parent / "osmo")
NS = WORKFLOW_NS
BACKEND = "k8s-test"


def _wait_line(proc: subprocess.Popen[bytes], pattern: bytes, timeout: float) -> str:
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
                return m.group(1).decode()
        if proc.poll() is not None:
            break
    raise RuntimeError(f"no {pattern!r} in: {buf.decode(errors='replace')}")


class ControlPlane:
    def __init__(self, home: Path, kubeconfig: Path):
        self.home = home
        self.kubeconfig = kubeconfig
        self.token = "k8s-bootstrap-token"
        (home / "token").write_text(self.token)
        self.env = dict(os.environ)
        self.env.pop("OSMO_URL", None)
        self.env.update(
            OSMO_HOME=str(home),
            OSMO_OPERATOR_TOKENS=self.token,
            OSMO_HEARTBEAT_INTERVAL="0.5",
            OSMO_BACKEND_OFFLINE_AFTER="5",
            OSMO_BACKEND_ERROR_AFTER="120",
        )
        self.config = home / "executor.yaml"
        self.config.write_text(
            yaml.safe_dump(
                {
                    "namespace": NS,
                    "runtime_image": "osmo:test",
                    "scheduler": {"type": "coscheduling"},
                    "node_selector": {"osmo.test/node": "yes"},
                }
            )
        )
        self.server: subprocess.Popen[bytes] | None = None
        self.operator: subprocess.Popen[bytes] | None = None
        self.url = ""
        self.http: httpx.Client | None = None

    def start(self) -> None:
        self.server = subprocess.Popen(
            [OSMO, "server", "start", "--port", "0"],
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        self.url = _wait_line(self.server, rb"serving (http://\S+)", 60)
        self.http = httpx.Client(base_url=self.url, timeout=30)
        r = self.http.put(f"/api/configs/pool/{BACKEND}", json={"backend": BACKEND})
        assert r.status_code == 200, r.text
        self.start_operator()

    def start_operator(self) -> None:
        self.operator = subprocess.Popen(
            [
                OSMO, "operator", "start",
                "--server", self.url,
                "--backend", BACKEND,
                "--token-file", str(self.home / "token"),
                "--executor", "kubernetes",
                "--namespace", NS,
                "--kubeconfig", str(self.kubeconfig),
                "--config", str(self.config),
            ],
            env=self.env,
            stdout=open(self.home / "operator.log", "ab"),  # noqa: SIM115
            stderr=subprocess.STDOUT,
        )  # fmt: skip
        self.wait_online()

    def wait_online(self, timeout: float = 60) -> None:
        assert self.http is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.operator is not None
            if self.operator.poll() is not None:
                raise AssertionError(
                    "operator exited: " + (self.home / "operator.log").read_text()[-3000:]
                )
            backends = self.http.get("/api/configs/backend").json()["backends"]
            if any(b["name"] == BACKEND and b.get("online") for b in backends):
                return
            time.sleep(0.2)
        raise AssertionError("the kubernetes backend did not come online")

    def kill_operator(self) -> None:
        assert self.operator is not None
        self.operator.send_signal(signal.SIGKILL)
        self.operator.wait()

    def stop(self) -> None:
        for proc in (self.operator, self.server):
            if proc is not None and proc.poll() is None:
                proc.send_signal(signal.SIGINT)
                try:
                    proc.wait(30)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        if self.server is not None and self.server.stdout is not None:
            self.server.stdout.close()
        if self.http is not None:
            self.http.close()

    def submit(self, text: str) -> str:
        assert self.http is not None
        r = self.http.post(f"/api/pool/{BACKEND}/workflow", json={"file": text})
        assert r.status_code == 200, r.text
        return str(r.json()["id"])

    def query(self, wf_id: str) -> dict[str, Any]:
        assert self.http is not None
        r = self.http.get(f"/api/workflow/{wf_id}")
        assert r.status_code == 200, r.text
        return dict(r.json())

    def tasks(self, wf_id: str) -> dict[str, dict[str, Any]]:
        return {t["name"]: t for g in self.query(wf_id)["groups"] for t in g["tasks"]}

    def wait_tasks(self, wf_id: str, want: dict[str, str], timeout: float = 60) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        got: dict[str, dict[str, Any]] = {}
        while time.monotonic() < deadline:
            got = self.tasks(wf_id)
            if all(got.get(t, {}).get("status") == s for t, s in want.items()):
                return got
            time.sleep(0.2)
        raise AssertionError(
            f"{wf_id}: wanted {want}, got { ({t: (v['status'], v.get('exit_code')) for t, v in got.items()}) }"
            + "\n"
            + (self.home / "operator.log").read_text()[-3000:]
        )


@pytest.fixture
def plane(tmp_path: Path, operator_kubeconfig: Path) -> Iterator[ControlPlane]:
    p = ControlPlane(tmp_path, operator_kubeconfig)
    try:
        p.start()
        yield p
    finally:
        p.stop()


def _set_exit(kube: KubeCluster, wf_id: str, task: str, code: int, timeout: float = 60) -> None:
    def running() -> dict[str, Any] | None:
        for pod in kube.pods(NS, f"osmo.workflow_id={wf_id}"):
            if (
                pod["metadata"]["annotations"]["osmo.io/task"] == task
                and pod["status"].get("phase") == "Running"
            ):
                return pod
        return None

    pod = kube.wait_for(f"{wf_id}/{task} running", running, timeout)
    kube.patch(
        f"/api/v1/namespaces/{NS}/pods/{pod['metadata']['name']}",
        {"metadata": {"annotations": {"osmo.test/exit-code": str(code)}}},
    )


def _objects(kube: KubeCluster, wf_id: str) -> int:
    sel = f"osmo.workflow_id={wf_id}"
    total = 0
    for path in (
        f"/api/v1/namespaces/{NS}/pods",
        f"/api/v1/namespaces/{NS}/secrets",
        f"/api/v1/namespaces/{NS}/services",
        f"/apis/scheduling.x-k8s.io/v1alpha1/namespaces/{NS}/podgroups",
    ):
        total += len(kube.get(path, labelSelector=sel)["items"])
    return total


WORKFLOW = """
workflow:
  name: k8s-e2e
  resources:
    default: {cpu: 1, memory: 1Gi}
  groups:
  - name: train
    tasks:
    - name: lead
      lead: true
      image: busybox:1.36
      command: [sh, -c, "echo lead on {{host:worker-1}}"]
      files:
      - path: /etc/osmo-test.txt
        contents: "workflow {{workflow_id}}"
    - name: worker-1
      image: busybox:1.36
      command: [sh, -c, "echo worker"]
    - name: worker-2
      image: busybox:1.36
      command: [sh, -c, "echo worker"]
  - name: after
    tasks:
    - name: report
      image: busybox:1.36
      command: [sh, -c, "exit 7"]
      inputs: [{task: lead}]
"""


def test_workflow_through_control_plane_and_operator(
    plane: ControlPlane, kube: KubeCluster
) -> None:
    wf_id = plane.submit(WORKFLOW)
    # The first group: three pods, one PodGroup of minMember 3, a headless Service, Secrets.
    kube.wait_for("three pods", lambda: len(kube.pods(NS, f"osmo.workflow_id={wf_id}")) == 3, 60)
    pgs = kube.get(
        f"/apis/scheduling.x-k8s.io/v1alpha1/namespaces/{NS}/podgroups",
        labelSelector=f"osmo.workflow_id={wf_id}",
    )["items"]
    assert [p["spec"]["minMember"] for p in pgs] == [3]
    services = kube.get(
        f"/api/v1/namespaces/{NS}/services", labelSelector=f"osmo.workflow_id={wf_id}"
    )["items"]
    assert len(services) == 1
    secrets = kube.get(
        f"/api/v1/namespaces/{NS}/secrets", labelSelector=f"osmo.workflow_id={wf_id}"
    )["items"]
    assert len(secrets) == 1
    plane.wait_tasks(wf_id, {"lead": "RUNNING", "worker-1": "RUNNING", "worker-2": "RUNNING"})

    # An operator crash while the tasks run: a task ends meanwhile; nothing is lost.
    plane.kill_operator()
    _set_exit(kube, wf_id, "worker-2", 5)
    _set_exit(kube, wf_id, "worker-1", 0)
    time.sleep(1)
    plane.start_operator()
    plane.wait_tasks(wf_id, {"worker-1": "COMPLETED", "worker-2": "FAILED"})
    _set_exit(kube, wf_id, "lead", 0)
    plane.wait_tasks(wf_id, {"lead": "COMPLETED"})
    _set_exit(kube, wf_id, "report", 7)
    got = plane.wait_tasks(wf_id, {"report": "FAILED"})
    assert got["report"]["exit_code"] == 7
    assert got["worker-2"]["exit_code"] == 5
    assert got["lead"]["exit_code"] == 0
    deadline = time.monotonic() + 30
    wf = plane.query(wf_id)
    while wf["status"] in ("PENDING", "RUNNING") and time.monotonic() < deadline:
        time.sleep(0.2)
        wf = plane.query(wf_id)
    assert wf["status"] == "FAILED", wf
    # Cleanup leaves nothing behind.
    kube.wait_for("cleanup", lambda: _objects(kube, wf_id) == 0, 60)
