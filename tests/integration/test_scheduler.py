"""Backends, pools and the scheduler with real processes: a server and simulated operators.

Each test asserts which task ran where and in what order, from the nodes and times the
control plane recorded.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from .cluster import Cluster, sim_workflow, tasks

pytestmark = pytest.mark.integration


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    c = Cluster(tmp_path)
    c.start_server()
    try:
        yield c
    finally:
        c.stop()


def gpu_pool(
    backend: str, guarantee: int = -1, maximum: int = -1, weight: float = 1.0, **extra: object
) -> dict[str, object]:
    return {
        "backend": backend,
        "resources": {"gpu": {"guarantee": guarantee, "maximum": maximum, "weight": weight}},
        **extra,
    }


def test_two_backends_run_their_pools_concurrently(cluster: Cluster) -> None:
    cluster.start_operator(
        "east", "--executor", "simulated", "--nodes", "2", "--node-prefix", "east"
    )
    cluster.start_operator(
        "west", "--executor", "simulated", "--nodes", "2", "--node-prefix", "west"
    )
    cluster.put_pool("pool-east", {"backend": "east"})
    cluster.put_pool("pool-west", {"backend": "west"})
    a = cluster.submit(sim_workflow("a", n=3, duration=1.5), pool="pool-east")
    b = cluster.submit(sim_workflow("b", n=3, duration=1.5), pool="pool-west")
    wa, wb = cluster.wait(a), cluster.wait(b)
    assert wa["status"] == wb["status"] == "COMPLETED"
    assert {t["node"].split("-")[0] for t in tasks(wa).values()} == {"east"}
    assert {t["node"].split("-")[0] for t in tasks(wb).values()} == {"west"}
    assert {t["backend"] for t in tasks(wa).values()} == {"east"}
    # They overlapped in time: both started before either finished.
    starts = [t["started_at"] for w in (wa, wb) for t in tasks(w).values()]
    ends = [t["finished_at"] for w in (wa, wb) for t in tasks(w).values()]
    assert max(starts) < min(ends)
    backends = {b["name"]: b for b in cluster.get("/api/configs/backend")["backends"]}
    assert backends["east"]["online"] and backends["east"]["nodes"] == 2
    assert backends["east"]["pools"] == ["pool-east"]


def test_gang_is_all_or_nothing_and_small_groups_pass_a_big_one(cluster: Cluster) -> None:
    cluster.start_operator("local", "--executor", "simulated", "--nodes", "2", "--node-gpus", "8")
    # Hold 12 of 16 GPUs for a while.
    hog = cluster.submit(sim_workflow("hog", n=3, gpu=4, duration=3, group=True))
    cluster.wait_tasks(hog, "RUNNING")
    # A gang of 2 x 4 GPUs cannot fit in the 4 free GPUs (only one node has 4 free)...
    big = cluster.submit(sim_workflow("big", n=2, gpu=4, duration=0.2, group=True))
    time.sleep(0.5)
    # ...and none of its tasks starts while it does not fit as a whole.
    assert {t["status"] for t in tasks(cluster.query(big)).values()} == {"SCHEDULING"}
    # A smaller group behind it runs at once (no head-of-line blocking).
    small = cluster.submit(sim_workflow("small", n=1, gpu=2, duration=0.2))
    ws = cluster.wait(small, timeout=20)
    assert ws["status"] == "COMPLETED"
    wb = cluster.wait(big, timeout=30)
    assert wb["status"] == "COMPLETED"
    big_tasks = tasks(wb)
    # Admitted together: the whole gang started after the hog released its GPUs.
    hog_end = max(t["finished_at"] for t in tasks(cluster.query(hog)).values() if t["lead"])
    assert all(t["started_at"] >= hog_end for t in big_tasks.values())
    assert tasks(ws)["t0"]["started_at"] < hog_end


def test_priority_orders_waiting_work(cluster: Cluster) -> None:
    cluster.start_operator("local", "--executor", "simulated", "--nodes", "1", "--node-gpus", "4")
    hog = cluster.submit(sim_workflow("hog", gpu=4, duration=2))
    cluster.wait_tasks(hog, "RUNNING")
    normal = cluster.submit(sim_workflow("normal", gpu=4, duration=1))
    low = cluster.submit(sim_workflow("low", gpu=4, duration=1), priority="LOW")
    high = cluster.submit(sim_workflow("high", gpu=4, duration=1), priority="HIGH")
    order = sorted(
        (
            (tasks(cluster.wait(w, timeout=40))["t0"]["started_at"], name)
            for w, name in ((normal, "normal"), (low, "low"), (high, "high"))
        )
    )
    assert [name for _, name in order] == ["high", "normal", "low"]


def test_guarantee_borrowing_and_preemption(cluster: Cluster) -> None:
    cluster.start_operator("local", "--executor", "simulated", "--nodes", "2", "--node-gpus", "8")
    cluster.put_pool("team-a", gpu_pool("local", guarantee=8))
    cluster.put_pool(
        "team-b", gpu_pool("local", guarantee=8, default_exit_actions={"RESCHEDULE": "3006"})
    )
    # NORMAL work beyond the guarantee is refused at submit, with the way out.
    refused = cluster.submit(
        sim_workflow("greedy", n=3, gpu=4, group=True), pool="team-a", expect=400
    )
    assert "guarantees" in refused["message"] and "LOW" in refused["message"]
    # LOW work of team-b borrows every GPU (16 > its guarantee of 8).
    borrowers = [
        cluster.submit(
            sim_workflow(f"borrow{i}", gpu=4, duration=60), pool="team-b", priority="LOW"
        )
        for i in range(4)
    ]
    for w in borrowers:
        cluster.wait_tasks(w, "RUNNING")
    pools = {p["name"]: p for p in cluster.get("/api/pool")["pools"]}
    assert pools["team-b"]["gpu_quota"]["borrowed"] == 16
    assert pools["team-b"]["gpu_quota"]["used"] == 0
    # team-a's NORMAL work within its guarantee preempts borrowed LOW work (newest first).
    need = cluster.submit(sim_workflow("need", n=2, gpu=4, duration=0.5, group=True), pool="team-a")
    assert cluster.wait(need, timeout=30)["status"] == "COMPLETED"
    verbose = [cluster.query(w, verbose=True) for w in borrowers]
    preempted = [w for w in verbose if any(t["exit_code"] == 3006 for t in tasks_all(w))]
    assert len(preempted) == 2
    assert {w["id"] for w in preempted} == set(borrowers[2:])  # the two newest
    for w in preempted:
        first = next(t for t in tasks_all(w) if t["retry_id"] == 0)
        assert first["status"] == "RESCHEDULED" and first["exit_code"] == 3006
    # team-b maps 3006 to RESCHEDULE: preempted work is queued again and runs when GPUs free.
    for w in borrowers[2:]:
        retried = cluster.wait_tasks(w, "RUNNING", timeout=30)
        assert tasks(retried)["t0"]["retry_id"] == 1


def test_preemption_without_reschedule_fails_the_workflow(cluster: Cluster) -> None:
    cluster.start_operator("local", "--executor", "simulated", "--nodes", "1", "--node-gpus", "8")
    cluster.put_pool("a", gpu_pool("local", guarantee=8))
    cluster.put_pool("b", gpu_pool("local", guarantee=0))
    low = cluster.submit(sim_workflow("low", gpu=8, duration=60), pool="b", priority="LOW")
    cluster.wait_tasks(low, "RUNNING")
    urgent = cluster.submit(sim_workflow("urgent", gpu=8, duration=0.2), pool="a")
    assert cluster.wait(urgent)["status"] == "COMPLETED"
    w = cluster.wait(low)
    assert w["status"] == "FAILED_PREEMPTED"
    assert (tasks(w)["t0"]["status"], tasks(w)["t0"]["exit_code"]) == ("FAILED_PREEMPTED", 3006)


def test_fair_share_by_weight_for_borrowed_gpus(cluster: Cluster) -> None:
    cluster.start_operator("local", "--executor", "simulated", "--nodes", "2", "--node-gpus", "8")
    cluster.put_pool("light", gpu_pool("local", guarantee=0, weight=1))
    cluster.put_pool("heavy", gpu_pool("local", guarantee=0, weight=3))
    # Queue both pools' LOW work while the backend is busy, then free it all at once.
    hog = cluster.submit(sim_workflow("hog", n=2, gpu=8, duration=2, group=True), pool="default")
    cluster.wait_tasks(hog, "RUNNING")
    light = [
        cluster.submit(sim_workflow(f"l{i}", gpu=1, duration=60), pool="light", priority="LOW")
        for i in range(16)
    ]
    heavy = [
        cluster.submit(sim_workflow(f"h{i}", gpu=1, duration=60), pool="heavy", priority="LOW")
        for i in range(16)
    ]
    cluster.wait(hog)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        pools = {p["name"]: p["gpu_quota"]["borrowed"] for p in cluster.get("/api/pool")["pools"]}
        if pools["light"] + pools["heavy"] == 16:
            break
        time.sleep(0.2)
    assert (pools["light"], pools["heavy"]) == (4, 12)
    assert len(light) == len(heavy) == 16


def test_queue_timeout_while_waiting(cluster: Cluster) -> None:
    cluster.start_operator("local", "--executor", "simulated", "--nodes", "1", "--node-gpus", "1")
    hog = cluster.submit(sim_workflow("hog", gpu=1, duration=30))
    cluster.wait_tasks(hog, "RUNNING")
    text = sim_workflow("waits", gpu=1).replace(
        "workflow:\n", "workflow:\n  timeout: {queue_timeout: 1s}\n", 1
    )
    w = cluster.submit(text)
    started = time.monotonic()
    wf = cluster.wait(w, timeout=20)
    assert wf["status"] == "FAILED_QUEUE_TIMEOUT"
    assert time.monotonic() - started < 15


def test_submit_checks_platforms_permissions_and_per_node_fit(cluster: Cluster) -> None:
    cluster.start_operator(
        "local",
        "--executor",
        "simulated",
        "--nodes",
        "3",
        "--node-gpus",
        "8",
        "--node-label",
        "kind=dgx",
    )
    cluster.put_pool(
        "p",
        {
            "backend": "local",
            "default_platform": "dgx",
            "platforms": {
                "dgx": {"node_labels": {"kind": "dgx"}, "allowed_mounts": ["/data"]},
                "jetson": {"node_labels": {"kind": "jetson"}},
            },
            "common_resource_validations": [
                {
                    "operator": "LE",
                    "left_operand": "USER_CPU",
                    "right_operand": "6",
                    "assert_message": "at most 6 CPUs per task",
                }
            ],
        },
    )
    bad = cluster.submit(sim_workflow("toobig", gpu=16), pool="p", expect=400)
    assert (
        "fits no node of platform 'dgx'" in bad["message"]
        and "needs 16 GPUs, has 8" in bad["message"]
    )
    assert "sim-node-00000" in bad["message"]
    unknown = cluster.submit(sim_workflow("nope", platform="tpu"), pool="p", expect=400)
    assert (
        "platform 'tpu' is not in pool 'p'" in unknown["message"]
        and "dgx, jetson" in unknown["message"]
    )
    none = cluster.submit(sim_workflow("edge", platform="jetson"), pool="p", expect=400)
    assert "no node of the backend" in none["message"]
    priv = "workflow:\n  name: priv\n  tasks:\n  - {name: a, image: x, command: [x], privileged: true, volumeMounts: [/etc]}\n"
    errs = cluster.submit(priv, pool="p", expect=400)
    messages = [e["message"] for e in errs["errors"]]
    assert any("privileged containers are not allowed on platform 'dgx'" in m for m in messages)
    assert any("mount /etc is not allowed" in m for m in messages)
    cpu = "workflow:\n  name: cpu\n  resources: {default: {cpu: 7}}\n  tasks:\n  - {name: a, image: x, command: [x]}\n"
    assert "at most 6 CPUs per task" in cluster.submit(cpu, pool="p", expect=400)["message"]
    ok = cluster.submit(sim_workflow("fits", gpu=8), pool="p")
    assert cluster.wait(ok)["status"] == "COMPLETED"
    cluster.put_pool("p", {"backend": "local", "enable_maintenance": True})
    assert "maintenance" in cluster.submit(sim_workflow("later"), pool="p", expect=409)["message"]
    assert [p["status"] for p in cluster.get("/api/pool")["pools"] if p["name"] == "p"] == [
        "MAINTENANCE"
    ]


def tasks_all(wf: dict[str, object]) -> list[dict[str, object]]:
    return [t for g in wf["groups"] for t in g["tasks"]]  # type: ignore[index,union-attr]


def test_heterogeneous_gang_spans_platforms(cluster: Cluster) -> None:
    """One group, a GPU trainer on a DGX node and a robot stack on a Jetson, admitted together."""
    cluster.start_operator(
        "local",
        "--executor",
        "simulated",
        "--nodes",
        "2",
        "--node-gpus",
        "8",
        "--node-prefix",
        "dgx",
        "--node-label",
        "kind=dgx",
        "--node-group",
        "count=3,gpus=1,cpus=6,memory=8Gi,prefix=jetson,label.kind=jetson,gpu_type=orin",
    )
    cluster.put_pool(
        "hil",
        {
            "backend": "local",
            "default_platform": "dgx",
            "platforms": {
                "dgx": {"node_labels": {"kind": "dgx"}},
                "jetson": {"node_labels": {"kind": "jetson"}},
            },
        },
    )
    text = """
workflow:
  name: hil
  resources:
    train: {gpu: 8, platform: dgx}
    robot: {gpu: 1, cpu: 4, platform: jetson}
  groups:
  - name: loop
    tasks:
    - {name: trainer, lead: true, image: x, command: [x], resource: train, environment: {OSMO_SIM_DURATION: "0.5"}}
    - {name: robot-a, image: x, command: [x], resource: robot}
    - {name: robot-b, image: x, command: [x], resource: robot}
"""
    wf = cluster.wait(cluster.submit(text, pool="hil"))
    assert wf["status"] == "COMPLETED"
    nodes = {name: t["node"] for name, t in tasks(wf).items()}
    assert nodes["trainer"].startswith("dgx-")
    assert nodes["robot-a"].startswith("jetson-") and nodes["robot-b"].startswith("jetson-")
    assert nodes["robot-a"] != nodes["robot-b"]  # 1 GPU each, one per Jetson
    # A robot asking for more than any Jetson has is refused with per-node reasons.
    too_big = text.replace(
        "{gpu: 1, cpu: 4, platform: jetson}", "{gpu: 2, cpu: 4, platform: jetson}"
    )
    refused = cluster.submit(too_big, pool="hil", expect=400)
    messages = [e["message"] for e in refused["errors"]]
    assert len(messages) == 2  # both robots, each with its reasons
    assert all(
        "fits no node of platform 'jetson'" in m and "needs 2 GPUs, has 1" in m for m in messages
    )
    info = cluster.get("/api/resources/jetson-00000")
    assert info["gpu_type"] == "orin" and info["platforms"] == ["hil/jetson"]
