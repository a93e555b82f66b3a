"""The Kubernetes executor against a real API server, as the chart's ServiceAccount.

kube-scheduler binds the pods to kwok's nodes, kwok runs them (Pending → Running) and ends them
with the exit code a test writes into the ``osmo.test/exit-code`` annotation.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from cluster import WORKFLOW_NS, KubeCluster

from osmo.operator.executors.kubernetes.config import KubernetesConfig
from osmo.operator.executors.kubernetes.executor import KubernetesExecutor
from osmo.operator.executors.kubernetes.objects import group_uuid
from osmo.protocol import LaunchGroup, LogChunk, TaskFile, TaskLaunchSpec, TaskRef, TaskReport

pytestmark = pytest.mark.k8s
NS = WORKFLOW_NS


class Reports:
    """Drains an executor's outbox; the latest report per task."""

    def __init__(self, ex: KubernetesExecutor, wf: str):
        self.ex = ex
        self.wf = wf
        self.latest: dict[str, TaskReport] = {}
        self.all: list[TaskReport] = []
        self._task = asyncio.create_task(self._drain())

    async def _drain(self) -> None:
        while True:
            item = await self.ex.outbox.get()
            if isinstance(item, TaskReport) and item.workflow_id == self.wf:
                self.latest[item.task] = item
                self.all.append(item)
            else:
                assert isinstance(item, TaskReport | LogChunk)

    async def wait(self, want: dict[str, str], timeout: float = 30) -> dict[str, TaskReport]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if all(self.latest.get(t) and self.latest[t].status == s for t, s in want.items()):
                return {t: self.latest[t] for t in want}
            await asyncio.sleep(0.05)
        got = {t: (r.status, r.exit_code, r.message) for t, r in self.latest.items()}
        raise AssertionError(f"wanted {want}, got {got}")

    async def close(self) -> None:
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)


def spec(wf: str, task: str, **kw: Any) -> TaskLaunchSpec:
    return TaskLaunchSpec(
        workflow_id=wf,
        task=task,
        group=kw.pop("group", "g"),
        image="busybox:1.36",
        command=["sh", "-c", "echo hi"],
        cpu=1,
        memory_bytes=1 << 30,
        **kw,
    )


def run(
    kubeconfig: Path,
    wf: str,
    body: Callable[[KubernetesExecutor, Reports], Awaitable[None]],
    **cfg: Any,
) -> None:
    async def main() -> None:
        ex = KubernetesExecutor(
            KubernetesConfig(namespace=NS, runtime_image="osmo:test", **cfg),
            kubeconfig=str(kubeconfig),
            housekeeping_interval=0.5,
        )
        await ex.start()
        reports = Reports(ex, wf)
        try:
            await body(ex, reports)
        finally:
            await reports.close()
            await ex.shutdown(stop_tasks=False)

    asyncio.run(main())


async def finish(kube: KubeCluster, wf: str, codes: dict[str, int]) -> None:
    """Set each task's exit code once its pod runs (kwok then ends it)."""
    pending = dict(codes)
    deadline = time.monotonic() + 30
    while pending and time.monotonic() < deadline:
        for pod in await asyncio.to_thread(kube.pods, NS, f"osmo.workflow_id={wf}"):
            task = pod["metadata"]["annotations"]["osmo.io/task"]
            if task in pending and pod["status"].get("phase") == "Running":
                await asyncio.to_thread(
                    kube.patch,
                    f"/api/v1/namespaces/{NS}/pods/{pod['metadata']['name']}",
                    {"metadata": {"annotations": {"osmo.test/exit-code": str(pending.pop(task))}}},
                )
        await asyncio.sleep(0.1)
    assert not pending, f"pods never ran: {pending}"


def leftovers(kube: KubeCluster, wf: str, gname: str = "g") -> dict[str, int]:
    sel = f"osmo.group_uuid={group_uuid(wf, gname)}"
    paths = {
        "pods": f"/api/v1/namespaces/{NS}/pods",
        "secrets": f"/api/v1/namespaces/{NS}/secrets",
        "services": f"/api/v1/namespaces/{NS}/services",
        "kai": f"/apis/scheduling.run.ai/v2alpha2/namespaces/{NS}/podgroups",
        "cosched": f"/apis/scheduling.x-k8s.io/v1alpha1/namespaces/{NS}/podgroups",
    }
    return {k: len(kube.get(p, labelSelector=sel)["items"]) for k, p in paths.items()}


async def wait_clean(kube: KubeCluster, wf: str, gname: str = "g", timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    left: dict[str, int] = {}
    while time.monotonic() < deadline:
        left = await asyncio.to_thread(leftovers, kube, wf, gname)
        if not any(left.values()):
            return
        await asyncio.sleep(0.2)
    raise AssertionError(f"objects left behind: {left}")


def refs(wf: str, *tasks: str) -> list[TaskRef]:
    return [TaskRef(workflow_id=wf, task=t) for t in tasks]


def test_gang_group_lifecycle_coscheduling(kube: KubeCluster, operator_kubeconfig: Path) -> None:
    wf = "gang-1"

    async def body(ex: KubernetesExecutor, reports: Reports) -> None:
        group = LaunchGroup(
            workflow_id=wf,
            group="g",
            barrier=True,
            priority="HIGH",
            tasks=[
                spec(wf, "lead", lead=True, files=[TaskFile(path="/etc/a.txt", contents="x")]),
                spec(wf, "w1", args=["ping {{host:lead}}"]),
                spec(wf, "w2", gpu=2),
            ],
        )
        await ex.launch(group)
        pgs = kube.get(f"/apis/scheduling.x-k8s.io/v1alpha1/namespaces/{NS}/podgroups")["items"]
        mine = [p for p in pgs if p["metadata"]["labels"]["osmo.group_uuid"] == group_uuid(wf, "g")]
        assert len(mine) == 1 and mine[0]["spec"]["minMember"] == 3
        pods = kube.pods(NS, f"osmo.workflow_id={wf}")
        assert len(pods) == 3
        for p in pods:
            assert p["spec"]["priorityClassName"] == "osmo-high"
            assert p["spec"]["priority"] == 100000  # admission resolved the chart's class
            assert (
                p["metadata"]["labels"]["scheduling.x-k8s.io/pod-group"]
                == mine[0]["metadata"]["name"]
            )
        gpu_pod = next(p for p in pods if p["metadata"]["annotations"]["osmo.io/task"] == "w2")
        svc = kube.get(f"/api/v1/namespaces/{NS}/services", labelSelector=f"osmo.workflow_id={wf}")
        assert len(svc["items"]) == 1 and svc["items"][0]["spec"]["clusterIP"] == "None"
        # kube-scheduler binds, kwok starts them; the operator releases the barrier.
        await reports.wait({"lead": "RUNNING", "w1": "RUNNING", "w2": "RUNNING"})
        bound = kube.get(f"/api/v1/namespaces/{NS}/pods/{gpu_pod['metadata']['name']}")
        assert bound["spec"]["nodeName"] == "kwok-gpu-0"
        for p in kube.pods(NS, f"osmo.workflow_id={wf}"):
            assert p["metadata"]["annotations"]["osmo.io/barrier"] == "released"
        await finish(kube, wf, {"lead": 0, "w1": 3, "w2": 0})
        got = await reports.wait({"lead": "COMPLETED", "w1": "FAILED", "w2": "COMPLETED"})
        assert got["w1"].exit_code == 3 and got["lead"].exit_code == 0
        assert got["lead"].node and got["lead"].node.startswith("kwok-")
        assert leftovers(kube, wf)["pods"] == 3  # nothing goes before the control plane has it
        await ex.acknowledged(refs(wf, "lead", "w1", "w2"))
        await wait_clean(kube, wf)

    run(operator_kubeconfig, wf, body, scheduler={"type": "coscheduling"})


def test_kai_podgroup_and_queue_labels_accepted(
    kube: KubeCluster, operator_kubeconfig: Path
) -> None:
    wf = "kai-1"

    async def body(ex: KubernetesExecutor, reports: Reports) -> None:
        group = LaunchGroup(
            workflow_id=wf,
            group="g",
            barrier=True,
            pool="gpu-pool",
            tasks=[spec(wf, f"t{i}", lead=i == 0) for i in range(3)],
        )
        await ex.launch(group)
        pgs = kube.get(f"/apis/scheduling.run.ai/v2alpha2/namespaces/{NS}/podgroups")["items"]
        mine = [p for p in pgs if p["metadata"]["labels"]["osmo.group_uuid"] == group_uuid(wf, "g")]
        assert len(mine) == 1
        assert mine[0]["spec"] == {
            "minMember": 3,
            "queue": f"osmo-pool-{NS}-gpu-pool",
            "priorityClassName": "osmo-normal",
        }
        pods = kube.pods(NS, f"osmo.workflow_id={wf}")
        assert len(pods) == 3
        for p in pods:
            assert p["spec"]["schedulerName"] == "kai-scheduler"
            assert p["metadata"]["labels"]["kai.scheduler/queue"] == f"osmo-pool-{NS}-gpu-pool"
            assert p["metadata"]["annotations"]["pod-group-name"] == mine[0]["metadata"]["name"]
            assert "nodeName" not in p["spec"]  # no KAI here: nothing binds them
        await asyncio.sleep(1)
        assert all(r.status == "PROCESSING" for r in ex.known_tasks())
        await ex.stop(refs(wf, "t0", "t1", "t2"), "canceled")
        got = await reports.wait({"t0": "FAILED", "t1": "FAILED", "t2": "FAILED"})
        assert {r.exit_code for r in got.values()} == {143}
        await ex.acknowledged(refs(wf, "t0", "t1", "t2"))
        await wait_clean(kube, wf)

    run(operator_kubeconfig, wf, body, scheduler={"type": "kai", "name": "kai-scheduler"})


CUSTOM = {"metadata": {"annotations": {"kwok.x-k8s.io/status": "custom"}}}


def _status_patch(kube: KubeCluster, name: str, status: dict[str, Any]) -> None:
    kube.patch(f"/api/v1/namespaces/{NS}/pods/{name}", {"status": status}, "/status")


def test_failure_reasons_map_to_statuses(kube: KubeCluster, operator_kubeconfig: Path) -> None:
    """kwok leaves these pods alone; the test writes the status a kubelet or KAI would."""
    wf = "fail-1"
    now = "2026-01-01T00:00:00Z"

    def waiting(reason: str) -> dict[str, Any]:
        return {
            "phase": "Pending",
            "conditions": [{"type": "PodScheduled", "status": "True", "lastTransitionTime": now}],
            "containerStatuses": [
                {
                    "name": "pull",
                    "image": "busybox:1.36",
                    "imageID": "",
                    "ready": False,
                    "restartCount": 0,
                    "state": {"waiting": {"reason": reason, "message": "no such image"}},
                }
            ],
        }

    cases: dict[str, tuple[dict[str, Any], str, int]] = {
        "pull": (waiting("ImagePullBackOff"), "FAILED_IMAGE_PULL", 3003),
        "oom": (
            {
                "phase": "Failed",
                "containerStatuses": [
                    {
                        "name": "oom",
                        "image": "busybox:1.36",
                        "imageID": "",
                        "ready": False,
                        "restartCount": 0,
                        "state": {"terminated": {"exitCode": 137, "reason": "OOMKilled"}},
                    }
                ],
            },
            "FAILED_EVICTED",
            3004,
        ),
        "preempted": (
            {
                "phase": "Failed",
                "conditions": [
                    {
                        "type": "DisruptionTarget",
                        "status": "True",
                        "reason": "PreemptionByScheduler",
                        "lastTransitionTime": now,
                    }
                ],
            },
            "FAILED_PREEMPTED",
            3006,
        ),
        "nodelost": (
            {
                "phase": "Failed",
                "conditions": [
                    {
                        "type": "DisruptionTarget",
                        "status": "True",
                        "reason": "DeletionByTaintManager",
                        "lastTransitionTime": now,
                    }
                ],
            },
            "FAILED_BACKEND_ERROR",
            3001,
        ),
        "evicted": (
            {"phase": "Failed", "reason": "Evicted", "message": "low disk"},
            "FAILED_EVICTED",
            3004,
        ),
        "stuck": (
            {
                "phase": "Pending",
                "conditions": [
                    {"type": "PodScheduled", "status": "True", "lastTransitionTime": now}
                ],
            },
            "FAILED_START_TIMEOUT",
            3005,
        ),
    }

    async def body(ex: KubernetesExecutor, reports: Reports) -> None:
        for name in cases:
            await ex.launch(
                LaunchGroup(
                    workflow_id=wf,
                    group=name,
                    barrier=False,
                    pool="custom",
                    tasks=[spec(wf, name, group=name)],
                )
            )
        for pod in kube.pods(NS, f"osmo.workflow_id={wf}"):
            task = pod["metadata"]["annotations"]["osmo.io/task"]
            _status_patch(kube, pod["metadata"]["name"], cases[task][0])
        got = await reports.wait({name: c[1] for name, c in cases.items()})
        for name, (_, status, code) in cases.items():
            assert (got[name].status, got[name].exit_code) == (status, code), got[name]
        assert "no such image" in (got["pull"].message or "")
        await ex.acknowledged(refs(wf, *cases))
        for name in cases:
            await wait_clean(kube, wf, name)

    run(
        operator_kubeconfig,
        wf,
        body,
        start_timeout=60,
        pod_templates={"custom": CUSTOM},
        pools={"custom": {"common_pod_template": ["custom"]}},
    )


def test_watch_interruption_and_410_lose_no_status(
    kube: KubeCluster, operator_kubeconfig: Path
) -> None:
    wf = "watch-1"

    async def body(ex: KubernetesExecutor, reports: Reports) -> None:
        await ex.launch(
            LaunchGroup(
                workflow_id=wf, group="g", barrier=False, tasks=[spec(wf, "a"), spec(wf, "b")]
            )
        )
        await reports.wait({"a": "RUNNING", "b": "RUNNING"})
        # A dropped connection: the watch resumes from the last resourceVersion it saw.
        ex.interrupt_watch()
        await finish(kube, wf, {"a": 4})
        await reports.wait({"a": "FAILED"})
        # A resourceVersion the server no longer has (410 Gone): list again, nothing lost.
        before = ex.relists
        await asyncio.to_thread(
            kube.wait_for, "compaction", lambda: kube.version_expired(NS, "1"), 60
        )
        ex.interrupt_watch(resume_from="1")
        await finish(kube, wf, {"b": 0})
        got = await reports.wait({"b": "COMPLETED"})
        assert got["b"].exit_code == 0
        assert ex.relists > before
        await ex.acknowledged(refs(wf, "a", "b"))
        await wait_clean(kube, wf)

    run(operator_kubeconfig, wf, body)


def test_operator_restart_adopts_pods(kube: KubeCluster, operator_kubeconfig: Path) -> None:
    wf = "restart-1"

    async def first(ex: KubernetesExecutor, reports: Reports) -> None:
        await ex.launch(
            LaunchGroup(
                workflow_id=wf,
                group="g",
                barrier=True,
                tasks=[spec(wf, "a", lead=True), spec(wf, "b"), spec(wf, "c")],
            )
        )
        await reports.wait({"a": "RUNNING", "b": "RUNNING", "c": "RUNNING"})

    run(operator_kubeconfig, wf, first)
    # While no operator runs: one task ends, one pod is deleted by someone else.
    asyncio.run(finish(kube, wf, {"a": 0}))
    victim = next(
        p
        for p in kube.pods(NS, f"osmo.workflow_id={wf}")
        if p["metadata"]["annotations"]["osmo.io/task"] == "c"
    )
    kube.delete(f"/api/v1/namespaces/{NS}/pods/{victim['metadata']['name']}")
    kube.wait_for(
        "pod c deleted", lambda: len(kube.pods(NS, f"osmo.workflow_id={wf}")) == 2, timeout=30
    )

    async def second(ex: KubernetesExecutor, reports: Reports) -> None:
        known = {r.task: r.status for r in ex.known_tasks() if r.workflow_id == wf}
        assert known == {"a": "COMPLETED", "b": "RUNNING"}, known
        ex.set_log_offsets({})  # a new connection: everything is reported again
        await reports.wait({"a": "COMPLETED", "b": "RUNNING"})
        await finish(kube, wf, {"b": 1})
        await reports.wait({"b": "FAILED"})
        await ex.acknowledged(refs(wf, "a", "b"))
        await wait_clean(kube, wf)

    run(operator_kubeconfig, wf, second)


def test_nodes_report_capacity(kube: KubeCluster, operator_kubeconfig: Path) -> None:
    async def body(ex: KubernetesExecutor, reports: Reports) -> None:
        nodes = {n.name: n for n in ex.nodes()}
        assert {"kwok-cpu-0", "kwok-cpu-1", "kwok-gpu-0"} <= set(nodes)
        gpu = nodes["kwok-gpu-0"]
        assert (gpu.cpus, gpu.gpus, gpu.memory_bytes, gpu.available) == (64, 8, 512 << 30, True)
        assert gpu.gpu_type == "NVIDIA-H100" and gpu.conditions.get("Ready") == "True"
        assert ex.cluster_id and ex.cluster_id.startswith("k8s:")
        # Cordon a node: the watch reports it unavailable.
        kube.patch("/api/v1/nodes/kwok-cpu-1", {"spec": {"unschedulable": True}})
        try:
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                n = {x.name: x for x in ex.nodes()}["kwok-cpu-1"]
                if not n.available:
                    break
                await asyncio.sleep(0.1)
            assert n.unschedulable and not n.available
        finally:
            kube.patch("/api/v1/nodes/kwok-cpu-1", {"spec": {"unschedulable": None}})

    wf = "none"
    run(operator_kubeconfig, wf, body, node_selector={"type": "kwok"})


def test_operator_rbac_is_least_privilege(kube: KubeCluster, operator_kubeconfig: Path) -> None:
    """The chart's ServiceAccount can do what the executor needs and not more."""
    import httpx
    import yaml

    token = yaml.safe_load(operator_kubeconfig.read_text())["users"][0]["user"]["token"]
    with httpx.Client(
        base_url=kube.url, verify=False, headers={"Authorization": f"Bearer {token}"}
    ) as c:
        assert c.get(f"/api/v1/namespaces/{NS}/pods").status_code == 200
        assert c.get("/api/v1/nodes").status_code == 200
        assert c.get(f"/api/v1/namespaces/{NS}/secrets").status_code == 403  # never reads secrets
        assert c.get("/api/v1/namespaces/default/pods").status_code == 403  # other namespaces
        assert c.get("/api/v1/namespaces/kube-system/pods").status_code == 403
        assert c.get("/api/v1/namespaces").status_code == 403
        assert c.post("/api/v1/namespaces", json={"metadata": {"name": "x"}}).status_code == 403
