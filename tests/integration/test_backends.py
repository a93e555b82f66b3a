"""Backends with real processes: operator tokens (create, rotate, revoke), registration (one
operator per backend, one cluster per backend name), ``osmo backend list`` and the nodes that
operators report in their hellos and heartbeats.

Every operator here is a real ``osmo operator start`` process (simulated executor) dialing a real
``osmo server start`` on 127.0.0.1; tokens and listings go through the installed ``osmo`` CLI.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from websockets.sync.client import ClientConnection, connect

from osmo import __version__
from osmo.protocol import Envelope, Heartbeat, Hello, NodeInfo

from .cluster import Cluster, sim_workflow, tasks

pytestmark = pytest.mark.integration

OVERLAP = 6.0  # OSMO_TOKEN_OVERLAP_SECONDS: old tokens stay valid this long after a rotation
SIM = ("--executor", "simulated", "--nodes", "2")
REFUSED_TOKEN = "invalid, expired or revoked operator token for backend 'east'"


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    c = Cluster(tmp_path, OSMO_TOKEN_OVERLAP_SECONDS=f"{OVERLAP:g}")
    c.start_server()
    try:
        yield c
    finally:
        c.stop()


def new_token(cluster: Cluster, backend: str, name: str) -> tuple[str, Path]:
    """``osmo backend token create``; returns the token and a token file holding it."""
    out = cluster.osmo("backend", "token", "create", backend)
    lines = out.stdout.splitlines()
    assert len(lines) == 1, out.stdout  # the token, and nothing else on stdout
    token = lines[0]
    assert len(token) >= 32 and " " not in token
    path = cluster.home / f"{name}.token"
    path.write_text(token + "\n")
    return token, path


def exits(cluster: Cluster, key: str, timeout: float = 30) -> tuple[int, str]:
    """Wait for an operator process to exit on its own; its exit code and output."""
    proc = cluster.operators[key]
    proc.wait(timeout)
    return proc.returncode, cluster.stop_operator(key)


def backends(cluster: Cluster) -> dict[str, dict[str, Any]]:
    result = json.loads(cluster.osmo("backend", "list", "-t", "json").stdout)
    return {b["name"]: b for b in result["backends"]}


def resources(cluster: Cluster, *args: str) -> dict[str, dict[str, Any]]:
    result = json.loads(cluster.osmo("resource", "list", *args, "-t", "json").stdout)
    return {n["name"]: n for n in result["resources"]}


def info_lines(cluster: Cluster, node: str) -> dict[str, str]:
    """``osmo resource info`` as {field: value}."""
    out = cluster.osmo("resource", "info", node).stdout
    fields = {}
    for line in out.splitlines():
        key, sep, value = line.partition(" : ")
        assert sep, out
        fields[key.strip()] = value.strip()
    return fields


# ---- tokens -------------------------------------------------------------------------------


def test_token_is_printed_once_and_admits_only_its_backend(cluster: Cluster) -> None:
    token, good = new_token(cluster, "east", "east")
    # Stored hashed: the token is nowhere in the database files.
    for path in cluster.home.glob("osmo.db*"):
        assert token.encode() not in path.read_bytes(), path
    # A wrong token: refused with a clear message; the operator exits non-zero.
    wrong = cluster.home / "wrong.token"
    wrong.write_text("not-the-token\n")
    cluster.start_operator("east", *SIM, token_file=wrong, wait=False)
    code, out = exits(cluster, "east")
    assert code == 1, out
    assert f"error: the server refused this operator: {REFUSED_TOKEN}" in out
    assert "Traceback" not in out
    # A valid token of another backend does not open this one.
    _, west = new_token(cluster, "west", "west")
    cluster.start_operator("east", *SIM, token_file=west, wait=False)
    code, out = exits(cluster, "east")
    assert code == 1 and REFUSED_TOKEN in out, out
    # Refused operators registered nothing.
    assert "east" not in backends(cluster)
    # The right token: connected, and it runs work.
    cluster.start_operator("east", *SIM, token_file=good)
    b = backends(cluster)["east"]
    assert (b["online"], b["executor"], b["nodes"]) == (True, "simulated", 2)
    cluster.put_pool("east-pool", {"backend": "east"})
    wf = cluster.submit(sim_workflow("hello", exit_code=0), pool="east-pool")
    assert cluster.wait(wf)["status"] == "COMPLETED"


def test_rotation_keeps_the_old_token_for_the_overlap_only(cluster: Cluster) -> None:
    _, first = new_token(cluster, "east", "first")
    cluster.start_operator("east", *SIM, token_file=first)
    cluster.stop_operator("east")
    cluster.wait_online("east", online=False)

    before = time.time()
    out = cluster.osmo("backend", "token", "create", "east")
    second_token = out.stdout.strip()
    assert "earlier tokens of east stay valid until" in out.stderr
    second = cluster.home / "second.token"
    second.write_text(second_token + "\n")
    window_ends = before + OVERLAP

    # Within the overlap the old token still connects (an operator not yet given the new one).
    cluster.start_operator("east", *SIM, token_file=first)
    cluster.stop_operator("east")
    cluster.wait_online("east", online=False)

    # After it, the old token is refused and the operator exits non-zero...
    time.sleep(max(0.0, window_ends - time.time()) + 1.0)
    cluster.start_operator("east", *SIM, token_file=first, wait=False)
    code, output = exits(cluster, "east")
    assert code == 1 and REFUSED_TOKEN in output, output
    # ...while the new one connects.
    cluster.start_operator("east", *SIM, token_file=second)
    assert backends(cluster)["east"]["online"]
    # Rotating again without an overlap to wait for: JSON names when the previous one ends.
    again = json.loads(cluster.osmo("backend", "token", "create", "east", "-t", "json").stdout)
    assert again["backend"] == "east" and again["token"] not in (second_token, "")
    ends = datetime.fromisoformat(again["previous_valid_until"].replace("Z", "+00:00"))
    assert abs(ends.timestamp() - (time.time() + OVERLAP)) < 30


def test_revoke_disconnects_the_operator_and_its_reconnect_is_refused(cluster: Cluster) -> None:
    _, old = new_token(cluster, "east", "old")
    _, current = new_token(cluster, "east", "current")  # old is in its overlap window
    cluster.start_operator("east", *SIM, token_file=current)
    out = cluster.osmo("backend", "token", "revoke", "east")
    assert out.stdout.strip() == "revoked 2 token(s) of backend east"
    # Disconnected at once; it dials again, is refused, and exits non-zero.
    code, output = exits(cluster, "east")
    assert code == 1, output
    assert REFUSED_TOKEN in output
    cluster.wait_online("east", online=False)
    # Revocation covers tokens still in an overlap window.
    cluster.start_operator("east", *SIM, token_file=old, wait=False)
    code, output = exits(cluster, "east")
    assert code == 1 and REFUSED_TOKEN in output, output
    # Nothing left to revoke: a clear error, exit 1.
    again = cluster.osmo("backend", "token", "revoke", "east", check=False)
    assert (again.returncode, again.stderr.strip()) == (
        1,
        "error: backend 'east' has no active tokens",
    )
    # A fresh token lets the backend back in.
    _, fresh = new_token(cluster, "east", "fresh")
    cluster.start_operator("east", *SIM, token_file=fresh)
    assert backends(cluster)["east"]["online"]


# ---- registration -------------------------------------------------------------------------


def test_second_operator_for_a_connected_backend_is_refused(cluster: Cluster) -> None:
    cluster.start_operator("east", *SIM)
    # Same cluster (same state folder), same name: a duplicate, refused.
    cluster.start_operator("east", *SIM, key="east-again", wait=False)
    code, out = exits(cluster, "east-again")
    assert code == 1, out
    assert "error: the server refused this operator: backend 'east' is already connected" in out
    # The first one was not disturbed: still online, still running work.
    assert cluster.operators["east"].poll() is None
    cluster.put_pool("east-pool", {"backend": "east"})
    wf = cluster.submit(sim_workflow("still", exit_code=3), pool="east-pool")
    done = cluster.wait(wf)
    assert (done["status"], tasks(done)["t0"]["exit_code"]) == ("FAILED", 3)
    assert backends(cluster)["east"]["online"]


def test_another_cluster_takes_a_backend_name_only_after_delete(cluster: Cluster) -> None:
    first_dir, other_dir = cluster.home / "cluster-a", cluster.home / "cluster-b"
    a_args = (*SIM, "--node-prefix", "a-node")
    b_args = ("--executor", "simulated", "--nodes", "3", "--node-prefix", "b-node")
    cluster.start_operator("east", *a_args, state_dir=first_dir)
    first_id = (first_dir / "cluster-id").read_text().strip()
    assert backends(cluster)["east"]["cluster_id"] == first_id
    # Delete is refused while the backend is connected...
    busy = cluster.osmo("backend", "delete", "east", check=False)
    assert (busy.returncode, busy.stderr.strip()) == (
        1,
        "error: backend 'east' is connected; stop its operator first",
    )
    cluster.put_pool("east-pool", {"backend": "east"})  # no RESCHEDULE for 3001
    wf = cluster.submit(sim_workflow("long", duration=600), pool="east-pool")
    cluster.wait_tasks(wf, "RUNNING")

    # Another cluster claiming the name: refused, naming both clusters and the way out.
    cluster.start_operator("east", *b_args, state_dir=other_dir, key="east-b", wait=False)
    code, out = exits(cluster, "east-b")
    other_id = (other_dir / "cluster-id").read_text().strip()
    assert other_id != first_id
    assert code == 1, out
    assert f"backend 'east' belongs to cluster '{first_id}'" in out
    assert f"this operator runs in cluster '{other_id}'" in out
    assert "osmo backend delete east" in out

    # ...and, with its operator gone, while it has active tasks.
    cluster.stop_operator("east")
    cluster.wait_online("east", online=False)
    busy = cluster.osmo("backend", "delete", "east", check=False)
    assert (busy.returncode, busy.stderr.strip()) == (
        1,
        "error: backend 'east' still has 1 active task(s)",
    )
    # Still refused while the name belongs to the first cluster, even with it gone.
    cluster.start_operator("east", *b_args, state_dir=other_dir, key="east-b", wait=False)
    code, out = exits(cluster, "east-b")
    assert code == 1 and f"belongs to cluster '{first_id}'" in out, out
    # The lost task fails with a backend error after the error window; then delete works.
    failed = cluster.wait(wf, timeout=60)
    assert failed["status"] == "FAILED_BACKEND_ERROR"
    assert tasks(failed)["t0"]["exit_code"] == 3001
    assert cluster.osmo("backend", "delete", "east").stdout.strip() == "backend east deleted"
    assert "east" not in backends(cluster)
    assert not [n for n in resources(cluster) if n.startswith("a-node")]

    # Now the other cluster registers the name, with its own nodes, and runs work.
    cluster.start_operator("east", *b_args, state_dir=other_dir, key="east-b")
    b = backends(cluster)["east"]
    assert (b["online"], b["cluster_id"], b["nodes"]) == (True, other_id, 3)
    assert sorted(resources(cluster)) == ["b-node-00000", "b-node-00001", "b-node-00002"]
    wf2 = cluster.submit(sim_workflow("moved", exit_code=0), pool="east-pool")
    done = cluster.wait(wf2)
    assert done["status"] == "COMPLETED"
    assert tasks(done)["t0"]["node"].startswith("b-node")
    # And the first cluster is the stranger now.
    cluster.start_operator("east", *a_args, state_dir=first_dir, key="east-a", wait=False)
    code, out = exits(cluster, "east-a")
    assert code == 1 and f"belongs to cluster '{other_id}'" in out, out
    gone = cluster.osmo("backend", "delete", "nope", check=False)
    assert (gone.returncode, gone.stderr.strip()) == (1, "error: backend 'nope' does not exist")


# ---- listing ------------------------------------------------------------------------------


def test_backend_list_shows_state_version_nodes_and_advancing_heartbeat(cluster: Cluster) -> None:
    cluster.start_operator("east", "--executor", "simulated", "--nodes", "3")
    cluster.put_pool("east-pool", {"backend": "east"})
    table = cluster.osmo("backend", "list").stdout.splitlines()
    assert table[0].split() == [
        "BACKEND",
        "STATE",
        "EXECUTOR",
        "VERSION",
        "NODES",
        "LAST",
        "HEARTBEAT",
        "POOLS",
    ]
    row = next(line.split() for line in table[2:] if line.startswith("east "))
    assert row[:5] == ["east", "online", "simulated", __version__, "3"]
    assert row[6] == "east-pool"
    first = datetime.fromisoformat(row[5].replace("Z", "+00:00"))

    def beat() -> datetime:
        b = backends(cluster)["east"]
        return datetime.fromisoformat(b["last_heartbeat"].replace("Z", "+00:00"))

    # Heartbeats every 0.5s: the last one moves on.
    deadline = time.monotonic() + 20
    while beat() <= first:
        assert time.monotonic() < deadline, "heartbeat did not advance"
        time.sleep(0.3)
    # Stopped: offline, and the heartbeat stays where it was.
    cluster.stop_operator("east")
    cluster.wait_online("east", online=False)
    row = next(
        line.split()
        for line in cluster.osmo("backend", "list").stdout.splitlines()
        if line.startswith("east ")
    )
    assert row[1] == "offline"
    last = beat()
    time.sleep(1.5)
    assert beat() == last


class FakeOperator:
    """Speaks the protocol by hand over a real WebSocket, heartbeating ``self.nodes`` every
    0.5s, so a test can change the nodes a heartbeat carries."""

    def __init__(self, ws: ClientConnection, backend: str, nodes: list[NodeInfo]):
        self.ws = ws
        self.nodes: list[NodeInfo] | None = nodes
        hello = Hello(backend=backend, version="fake-1", executor="fake", nodes=nodes)
        self._send(hello.model_dump(mode="json"))
        first = Envelope.model_validate_json(self.ws.recv(timeout=20))
        assert first.type == "welcome", first
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, daemon=True)
        self._thread.start()

    def _send(self, body: dict[str, Any]) -> None:
        kind = body.pop("type")
        self.ws.send(Envelope(type=kind, body=body).model_dump_json())

    def _beat(self) -> None:
        while not self._stop.wait(0.5):
            hb = Heartbeat(ts=time.time(), nodes=self.nodes)
            self._send(hb.model_dump(mode="json"))

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)


@contextlib.contextmanager
def fake_operator(cluster: Cluster, backend: str, nodes: list[NodeInfo]) -> Iterator[FakeOperator]:
    url = cluster.url.replace("http://", "ws://") + f"/api/agent/operator/{backend}"
    headers = {"Authorization": f"Bearer {cluster.token}"}
    with connect(url, additional_headers=headers, open_timeout=10) as ws:
        op = FakeOperator(ws, backend, nodes)
        try:
            yield op
        finally:
            op.stop()


def wait_for(check: Any, what: str, timeout: float = 20) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        assert time.monotonic() < deadline, what
        time.sleep(0.2)


def test_reported_nodes_appear_in_resource_list_and_info(cluster: Cluster) -> None:
    cluster.start_operator(
        "east",
        "--executor",
        "simulated",
        "--nodes",
        "2",
        "--node-cpus",
        "16",
        "--node-memory",
        "64Gi",
        "--node-gpus",
        "4",
        "--gpu-type",
        "NVIDIA-A100",
        "--node-label",
        "rack=r7",
        "--node-prefix",
        "dgx",
    )
    cluster.put_pool("gpu", {"backend": "east"})
    table = cluster.osmo("resource", "list").stdout.splitlines()
    assert table[0].split() == ["NODE", "BACKEND", "POOLS", "CPU", "GPU", "MEMORY", "AVAILABLE"]
    rows = sorted(line.split() for line in table[2:] if line.strip())
    assert rows == [
        ["dgx-00000", "east", "gpu", "0/16", "0/4", "0.0Gi/64.0Gi", "yes"],
        ["dgx-00001", "east", "gpu", "0/16", "0/4", "0.0Gi/64.0Gi", "yes"],
    ]
    info = info_lines(cluster, "dgx-00001")
    assert info["Node"] == "dgx-00001" and info["Backend"] == "east"
    assert (info["CPU"], info["GPU"], info["Memory"]) == ("0/16", "0/4 (NVIDIA-A100)", "0.0/64.0Gi")
    assert info["Available"] == "yes" and info["Pools"] == "gpu"
    assert "rack=r7" in info["Labels"].split(", ")
    # Admitted work shows as used on the node it runs on.
    wf = cluster.submit(sim_workflow("busy", gpu=3, duration=600), pool="gpu")
    running = cluster.wait_tasks(wf, "RUNNING")
    node = tasks(running)["t0"]["node"]
    assert info_lines(cluster, node)["GPU"] == "3/4 (NVIDIA-A100)"
    missing = cluster.osmo("resource", "info", "dgx-99999", check=False)
    assert (missing.returncode, missing.stderr.strip()) == (
        1,
        "error: node 'dgx-99999' is not reported by any backend",
    )
    # The simulated operator sends its nodes with every heartbeat: they stay as reported.
    time.sleep(1.5)
    assert resources(cluster, "--pool", "gpu")["dgx-00000"]["gpus"] == 4


def test_heartbeat_with_changed_nodes_is_reflected(cluster: Cluster) -> None:
    cluster.put_pool("edge", {"backend": "jetson"})
    orin = NodeInfo(
        name="orin-1",
        cpus=12,
        memory_bytes=32 * 2**30,
        gpus=1,
        gpu_type="Orin",
        labels={"site": "lab"},
    )
    with fake_operator(cluster, "jetson", [orin]) as op:
        node = resources(cluster)["orin-1"]
        assert (node["cpus"], node["gpus"], node["gpu_type"], node["labels"]) == (
            12,
            1,
            "Orin",
            {"site": "lab"},
        )
        assert backends(cluster)["jetson"]["nodes"] == 1
        # A node joins and the first one is relabelled: the next heartbeat says so.
        nano = NodeInfo(name="nano-1", cpus=4, memory_bytes=8 * 2**30, labels={"site": "field"})
        op.nodes = [orin.model_copy(update={"labels": {"site": "lab", "role": "lead"}}), nano]
        wait_for(lambda: "nano-1" in resources(cluster), "the new node was not listed")
        assert resources(cluster)["orin-1"]["labels"] == {"site": "lab", "role": "lead"}
        info = info_lines(cluster, "nano-1")
        assert (info["CPU"], info["GPU"], info["Memory"]) == ("0/4", "0/0", "0.0/8.0Gi")
        assert info["Pools"] == "edge" and info["Labels"] == "site=field"
        assert backends(cluster)["jetson"]["nodes"] == 2
        # A node reported unavailable shows so, and a node dropped from the heartbeat goes.
        op.nodes = [orin.model_copy(update={"available": False})]
        wait_for(lambda: "nano-1" not in resources(cluster), "the dropped node is still listed")
        assert info_lines(cluster, "orin-1")["Available"] == "no"
        # Heartbeats without nodes keep the last reported ones.
        op.nodes = None
        time.sleep(1.5)
        assert sorted(resources(cluster)) == ["orin-1"]
        assert backends(cluster)["jetson"]["nodes"] == 1
