"""Kubernetes executor throughput against the test API server (kube-apiserver + kwok).

One operator's executor launches a 1,000-task workflow into a real kube-apiserver (etcd,
kube-scheduler, kube-controller-manager, kwok nodes; the binaries of
scripts/k8s/build-test-binaries.sh) in two shapes: 1,000 single-task groups (each its own launch,
as the control plane sends them) and one 1,000-task gang group (PodGroup, headless Service,
barrier). Figures:

- pods created per second: from the first launch to the last pod accepted by the API server;
- until RUNNING: until every task was reported RUNNING (kube-scheduler and kwok included);
- API writes per task: every POST/PATCH/DELETE the executor sent, from launch to cleanup
  (creates, barrier releases, deletes by label), divided by the task count.

Prints the figures and writes ``bench/results/k8s.json``. Run: ``python bench/k8s.py``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "k8s"))

from cluster import KubeCluster, bin_dir  # noqa: E402

from osmo.operator.executors.kubernetes.config import KubernetesConfig  # noqa: E402
from osmo.operator.executors.kubernetes.executor import KubernetesExecutor  # noqa: E402
from osmo.protocol import LaunchGroup, TaskLaunchSpec, TaskRef, TaskReport  # noqa: E402

RESULTS = Path(__file__).parent / "results" / "k8s.json"
NS = "bench"


def _spec(wf: str, task: str, group: str, lead: bool = False) -> TaskLaunchSpec:
    return TaskLaunchSpec(
        workflow_id=wf,
        task=task,
        group=group,
        lead=lead,
        image="busybox:1.36",
        command=["sh", "-c", "echo hi"],
        output_url=f"s3://bench/{wf}/{task}/",
    )


async def _run_shape(kube: KubeCluster, shape: str, n: int, concurrency: int) -> dict[str, Any]:
    wf = f"bench-{shape}-{int(time.time())}"
    cfg = KubernetesConfig(
        namespace=NS,
        runtime_image="osmo:bench",
        scheduler={"type": "coscheduling"} if shape == "gang" else {},
        create_concurrency=concurrency,
        node_selector={"type": "kwok"},
    )
    ex = KubernetesExecutor(cfg, kubeconfig=str(kube.kubeconfig), housekeeping_interval=2.0)
    await ex.start()
    running: set[str] = set()
    final: set[str] = set()

    async def drain() -> None:
        while True:
            item = await ex.outbox.get()
            if isinstance(item, TaskReport):
                if item.status == "RUNNING":
                    running.add(item.task)
                elif item.status not in ("PROCESSING", "INITIALIZING"):
                    final.add(item.task)

    drainer = asyncio.create_task(drain())
    if shape == "gang":
        groups = [
            LaunchGroup(
                workflow_id=wf,
                group="g",
                barrier=True,
                tasks=[_spec(wf, f"t{i}", "g", lead=i == 0) for i in range(n)],
            )
        ]
    else:
        groups = [
            LaunchGroup(
                workflow_id=wf, group=f"g{i}", barrier=False, tasks=[_spec(wf, f"t{i}", f"g{i}")]
            )
            for i in range(n)
        ]
    writes0 = ex.k.writes
    t0 = time.perf_counter()
    await asyncio.gather(*(ex.launch(g) for g in groups))
    created = time.perf_counter() - t0
    create_writes = ex.k.writes - writes0
    deadline = time.monotonic() + 600
    while len(running) < n and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    all_running = time.perf_counter() - t0
    print(
        f"  {shape}: {len(running)}/{n} running after {all_running:.1f}s",
        file=sys.stderr,
        flush=True,
    )
    # End every pod (as the test harness: not counted among the executor's writes).
    pods = await asyncio.to_thread(kube.pods, NS, f"osmo.workflow_id={wf}")

    def end(pod: dict[str, Any]) -> None:
        kube.patch(
            f"/api/v1/namespaces/{NS}/pods/{pod['metadata']['name']}",
            {"metadata": {"annotations": {"osmo.test/exit-code": "0"}}},
        )

    sem = asyncio.Semaphore(32)

    async def end_one(pod: dict[str, Any]) -> None:
        async with sem:
            await asyncio.to_thread(end, pod)

    await asyncio.gather(*(end_one(p) for p in pods))
    while len(final) < n and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    all_final = time.perf_counter() - t0
    print(f"  {shape}: {len(final)}/{n} final after {all_final:.1f}s", file=sys.stderr, flush=True)
    await ex.acknowledged([TaskRef(workflow_id=wf, task=f"t{i}") for i in range(n)])
    while ex.groups and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    cleaned = time.perf_counter() - t0
    total_writes = ex.k.writes - writes0
    drainer.cancel()
    await asyncio.gather(drainer, return_exceptions=True)
    await ex.shutdown(stop_tasks=False)
    return {
        "tasks": n,
        "pods_created_per_s": round(n / created, 1),
        "create_seconds": round(created, 2),
        "all_running_seconds": round(all_running, 2),
        "running_per_s": round(n / all_running, 1),
        "all_final_seconds": round(all_final, 2),
        "through_cleanup_seconds": round(cleaned, 2),
        "cleanup_seconds": round(cleaned - all_final, 2),
        "api_writes_at_launch_per_task": round(create_writes / n, 3),
        "api_writes_per_task": round(total_writes / n, 3),
        "reached_running": len(running),
        "reached_final": len(final),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=64, help="API writes in flight")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    # SIGTERM (a timeout) still stops the cluster through the finally below.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    bins = bin_dir()
    root = Path(tempfile.mkdtemp(prefix="osmo-bench-k8s-"))
    kube = KubeCluster(root, bins, pod_watch_cache=True)
    results: dict[str, Any] = {}
    try:
        kube.start()
        # Room for 1,000 pods per shape: 20 more kwok nodes of 64 CPUs.
        for i in range(20):
            kube.create_node(f"kwok-bench-{i}", cpu="64", memory="512Gi", gpu=None)
        kube.wait_for("bench nodes", lambda: kube.nodes_ready_count() >= 23, 120)
        kube.create_namespace(NS)
        for level, value in (("high", 100000), ("normal", 10000), ("low", 1000)):
            kube.apply(
                {
                    "apiVersion": "scheduling.k8s.io/v1",
                    "kind": "PriorityClass",
                    "metadata": {"name": f"osmo-{level}"},
                    "value": value,
                }
            )
        for shape in ("independent", "gang"):
            results[shape] = asyncio.run(_run_shape(kube, shape, args.tasks, args.concurrency))
            print(f"{shape}: {json.dumps(results[shape])}", file=sys.stderr, flush=True)
    finally:
        kube.stop()
        shutil.rmtree(root, ignore_errors=True)
    report = {
        "benchmark": "k8s",
        "machine": {"cpus": __import__("os").cpu_count(), "python": platform.python_version()},
        "kubernetes": (bins / "versions.txt").read_text().strip().splitlines(),
        "concurrency": args.concurrency,
        "results": results,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
