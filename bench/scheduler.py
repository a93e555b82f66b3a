"""Scheduler and control-plane figures with the simulated executor (real processes, HTTP API).

  workflows_per_s       single-task workflows submitted through the HTTP API (concurrently) until
                        every one is RUNNING on the simulated backend;
  tasks_dispatched_per_s  launch messages sent for a large fan-out workflow (scheduler stats);
  decision_p99_ms       one group's admission, from the pass that considers it to its launch
                        message, with 1,000 nodes and 5,000 queued tasks;
  list_p99_ms / server_rss_mb  `workflow list` latency and server memory with 10,000 finished
                        workflows and 100,000 tasks in the database.

Prints the figures, writes bench/results/scheduler.json, and ends with one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import re
import select
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

OSMO = str(Path(sys.executable).parent / "osmo")
TOKEN = "bench-token"


def wait_line(proc: subprocess.Popen[bytes], pattern: bytes, timeout: float = 60) -> str:
    assert proc.stdout is not None
    buf = b""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        r, _, _ = select.select([proc.stdout], [], [], 0.2)
        if r:
            chunk = os.read(proc.stdout.fileno(), 65536)
            if not chunk:
                break
            buf += chunk
            m = re.search(pattern, buf)
            if m:
                return m.group(1).decode()
    raise SystemExit(f"process did not start: {buf.decode(errors='replace')}")


class Platform:
    def __init__(self, home: Path, database_url: str | None = None):
        self.home = home
        self.env = dict(
            os.environ, OSMO_HOME=str(home), OSMO_OPERATOR_TOKENS=TOKEN, OSMO_MAX_NUM_TASKS="20000"
        )
        self.env.pop("OSMO_DATABASE_URL", None)
        if database_url:
            self.env["OSMO_DATABASE_URL"] = database_url
        self.env.pop("OSMO_URL", None)
        (home / "token").write_text(TOKEN)
        self.server: subprocess.Popen[bytes] | None = None
        self.operator: subprocess.Popen[bytes] | None = None
        self.url = ""

    def start_server(self) -> None:
        self.server = subprocess.Popen(
            [OSMO, "server", "start", "--port", "0"],
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        self.url = wait_line(self.server, rb"serving (http://\S+)")

    def start_operator(self, nodes: int) -> None:
        self.operator = subprocess.Popen(
            [
                OSMO,
                "operator",
                "start",
                "--server",
                self.url,
                "--backend",
                "local",
                "--token-file",
                str(self.home / "token"),
                "--executor",
                "simulated",
                "--nodes",
                str(nodes),
                "--node-cpus",
                "64",
                "--node-gpus",
                "8",
                "--node-memory",
                "512Gi",
                "--state-dir",
                str(self.home / "sim"),
            ],
            env=self.env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        with httpx.Client(base_url=self.url) as c:
            for _ in range(300):
                backends = c.get("/api/configs/backend").json()["backends"]
                if any(b["name"] == "local" and b["online"] for b in backends):
                    return
                time.sleep(0.1)
        raise SystemExit("simulated operator did not connect")

    def stop_operator(self) -> None:
        if self.operator is not None:
            self.operator.send_signal(signal.SIGTERM)
            self.operator.wait(30)
            self.operator = None

    def stop(self) -> None:
        self.stop_operator()
        if self.server is not None:
            self.server.send_signal(signal.SIGINT)
            try:
                self.server.wait(30)
            except subprocess.TimeoutExpired:
                self.server.kill()
            self.server = None

    def rss_mb(self) -> float:
        assert self.server is not None
        for line in Path(f"/proc/{self.server.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return float("nan")


def one_task(name: str, duration: float) -> str:
    return (
        f"workflow:\n  name: {name}\n  tasks:\n  - name: t\n    image: sim\n    command: [run]\n"
        f'    environment: {{OSMO_SIM_DURATION: "{duration}"}}\n'
    )


def fanout(name: str, n: int, duration: float, gpu: int = 0) -> str:
    res = f"  resources: {{default: {{gpu: {gpu}}}}}\n" if gpu else ""
    return (
        f"default-values: {{n: {n}}}\nworkflow:\n  name: {name}\n{res}  tasks:\n"
        "{% for i in range(n) %}\n  - name: t{{i}}\n    image: sim\n    command: [run]\n"
        f'    environment: {{OSMO_SIM_DURATION: "{duration}"}}\n' + "{% endfor %}\n"
    )


async def submit_many(url: str, texts: list[str], concurrency: int) -> list[str]:
    ids: list[str] = []
    queue = list(enumerate(texts))
    out: list[str | None] = [None] * len(texts)

    async def worker(client: httpx.AsyncClient) -> None:
        while queue:
            i, text = queue.pop()
            r = await client.post("/api/pool/default/workflow", json={"file": text})
            r.raise_for_status()
            out[i] = r.json()["id"]

    async with httpx.AsyncClient(base_url=url, timeout=120) as client:
        await asyncio.gather(*(worker(client) for _ in range(concurrency)))
    ids = [x for x in out if x]
    return ids


def count(client: httpx.Client, name: str, status: str) -> bool:
    r = client.get("/api/workflow", params={"name": name, "statuses": status, "limit": 1})
    return bool(r.json()["workflows"])


def bench_workflows_per_s(p: Platform, n: int) -> dict[str, float]:
    texts = [one_task("wps", 600) for _ in range(n)]
    t0 = time.perf_counter()
    asyncio.run(submit_many(p.url, texts, 16))
    t_submitted = time.perf_counter()
    with httpx.Client(base_url=p.url, timeout=60) as c:
        while count(c, "wps", "PENDING"):
            time.sleep(0.05)
    t1 = time.perf_counter()
    return {
        "workflows": n,
        "workflows_per_s": n / (t1 - t0),
        "submit_only_per_s": n / (t_submitted - t0),
    }


def bench_fanout(p: Platform, n: int) -> dict[str, float]:
    with httpx.Client(base_url=p.url, timeout=600) as c:
        c.post("/api/scheduler/stats/reset")
        t0 = time.perf_counter()
        wf = c.post("/api/pool/default/workflow", json={"file": fanout("fan", n, 600)}).json()["id"]
        t_sub = time.perf_counter()
        while True:
            s = c.get("/api/scheduler/stats").json()
            if s["dispatched_tasks"] >= n:
                break
            time.sleep(0.05)
        t1 = time.perf_counter()
        c.post(f"/api/workflow/{wf}/cancel")
    span = (s["last_dispatch"] - s["first_dispatch"]) or 1e-9
    return {
        "fanout_tasks": n,
        "tasks_dispatched_per_s": n / span,
        "fanout_submit_s": t_sub - t0,
        "fanout_submit_to_all_dispatched_s": t1 - t0,
    }


def bench_decisions(p: Platform, nodes: int, queued: int) -> dict[str, Any]:
    p.stop_operator()
    with httpx.Client(base_url=p.url, timeout=600) as c:
        for _ in range(100):
            if not any(b["online"] for b in c.get("/api/configs/backend").json()["backends"]):
                break
            time.sleep(0.1)
        wf = c.post(
            "/api/pool/default/workflow", json={"file": fanout("queued", queued, 600, gpu=1)}
        ).json()["id"]
        c.post("/api/scheduler/stats/reset")
        p.start_operator(nodes)
        while True:
            s = c.get("/api/scheduler/stats").json()
            if s["dispatched_tasks"] >= queued:
                break
            time.sleep(0.05)
        c.post(f"/api/workflow/{wf}/cancel")
    return {
        "nodes": nodes,
        "queued_tasks": queued,
        "decision_p50_ms": s["decision_p50_ms"],
        "decision_p99_ms": s["decision_p99_ms"],
        "decision_max_ms": s["decision_max_ms"],
        "admission_span_s": s["last_dispatch"] - s["first_dispatch"],
    }


def populate(home: Path, workflows: int, tasks_per: int) -> float:
    """Insert finished workflows straight into the database (as the server would have left them)."""
    code = f"""
import asyncio, time, json
from osmo.settings import Settings
from osmo.service.db.engine import create_engine
from osmo.service.db.migrate import upgrade
from osmo.service.db.models import Workflow, Group, Task, Event
from sqlalchemy import insert, select, func
from osmo.spec import parse_workflow

async def main():
    s = Settings()
    engine = create_engine(s.resolved_database_url)
    await upgrade(engine)
    text = "workflow:\\n  name: done\\n  tasks:\\n" + "".join(f"  - {{{{name: t{{i}}, image: x, command: [x]}}}}\\n" for i in range({tasks_per}))
    spec = parse_workflow(text).spec
    spec_json = spec.model_dump_json()
    now = time.time() - 86400
    async with engine.begin() as conn:
        start = (await conn.execute(select(func.coalesce(func.max(Workflow.pk), 0)))).scalar()
        for base in range(0, {workflows}, 1000):
            n = min(1000, {workflows} - base)
            wrows = [dict(pk=start+base+i+1, workflow_id=f"done-{{base+i+1}}", name="done", seq=base+i+1, status="COMPLETED", pool="default",
                          priority="NORMAL", submitted_by=f"user{{(base+i)%20}}", submitted_at=now+base+i, started_at=now+base+i, finished_at=now+base+i+1,
                          spec_json=spec_json, rendered_spec=text, template_spec=text, labels={{}}, env_vars={{}}, max_retry_per_task=3)
                     for i in range(n)]
            await conn.execute(insert(Workflow), wrows)
            grows, trows = [], []
            for w in wrows:
                for j in range({tasks_per}):
                    gpk = w["pk"] * {tasks_per} + j
                    grows.append(dict(pk=gpk, workflow_pk=w["pk"], name=f"t{{j}}-group", position=j, status="COMPLETED", upstream=[], lead_task=f"t{{j}}",
                                      barrier=True, ignore_nonlead=True, backend="local", pool="default", priority_rank=1, submitted_at=w["submitted_at"]))
                    trows.append(dict(workflow_pk=w["pk"], group_pk=gpk, name=f"t{{j}}", retry_id=0, status="COMPLETED", exit_code=0, lead=True,
                                      backend="local", node="n", created_at=w["submitted_at"], started_at=w["submitted_at"], finished_at=w["finished_at"]))
            await conn.execute(insert(Group), grows)
            await conn.execute(insert(Task), trows)
    await engine.dispose()

asyncio.run(main())
"""
    t0 = time.perf_counter()
    subprocess.run(
        [sys.executable, "-c", code], env=dict(os.environ, OSMO_HOME=str(home)), check=True
    )
    return time.perf_counter() - t0


def bench_list(p: Platform, runs: int) -> dict[str, float]:
    lat: dict[str, list[float]] = {"plain": [], "user": [], "status": [], "page50": []}
    params = {
        "plain": {"limit": 20},
        "user": {"users": "user7", "limit": 20},
        "status": {"statuses": "COMPLETED", "limit": 20, "offset": 500},
        "page50": {"limit": 50, "offset": 5000},
    }
    with httpx.Client(base_url=p.url, timeout=60) as c:
        for _ in range(5):
            c.get("/api/workflow", params={"limit": 20})
        for _ in range(runs):
            for k, prm in params.items():
                t0 = time.perf_counter()
                r = c.get("/api/workflow", params=prm)
                lat[k].append((time.perf_counter() - t0) * 1000)
                assert r.status_code == 200
    every = [x for v in lat.values() for x in v]
    every.sort()
    return {
        "list_p50_ms": statistics.median(every),
        "list_p99_ms": every[min(len(every) - 1, round(0.99 * (len(every) - 1)))],
        **{
            f"list_{k}_p99_ms": sorted(v)[min(len(v) - 1, round(0.99 * (len(v) - 1)))]
            for k, v in lat.items()
        },
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="smaller shapes; finishes within a minute")
    args = ap.parse_args()
    q = args.quick
    shape = {
        "workflows": 300 if q else 2000,
        "fanout": 2000 if q else 10_000,
        "nodes": 1000,
        "queued": 1000 if q else 5000,
        "finished_workflows": 1000 if q else 10_000,
        "tasks_per_workflow": 10,
        "list_runs": 50 if q else 200,
    }
    result: dict[str, Any] = {"quick": q, "shape": shape}
    home = Path(tempfile.mkdtemp(prefix="osmo-bench-sched-"))
    p = Platform(home)
    try:
        p.start_server()
        p.start_operator(shape["nodes"])
        result.update(bench_workflows_per_s(p, shape["workflows"]))
        print(
            f"workflows/s (submit → RUNNING, {shape['workflows']} single-task, 16 clients): {result['workflows_per_s']:.1f}"
        )
        result.update(bench_fanout(p, shape["fanout"]))
        print(
            f"tasks dispatched/s ({shape['fanout']}-task fan-out): {result['tasks_dispatched_per_s']:.0f} "
            f"(submit {result['fanout_submit_s']:.2f} s, submit→all dispatched {result['fanout_submit_to_all_dispatched_s']:.2f} s)"
        )
        result.update(bench_decisions(p, shape["nodes"], shape["queued"]))
        print(
            f"decision latency, {shape['nodes']} nodes, {shape['queued']} queued: p50 {result['decision_p50_ms']:.1f} ms, p99 {result['decision_p99_ms']:.1f} ms"
        )
        p.stop()
        # A fresh server on a database holding many finished workflows.
        home2 = Path(tempfile.mkdtemp(prefix="osmo-bench-list-"))
        p2 = Platform(home2)
        result["populate_s"] = populate(
            home2, shape["finished_workflows"], shape["tasks_per_workflow"]
        )
        p2.start_server()
        try:
            result.update(bench_list(p2, shape["list_runs"]))
            result["server_rss_mb"] = p2.rss_mb()
        finally:
            p2.stop()
            shutil.rmtree(home2, ignore_errors=True)
        print(
            f"workflow list p99 with {shape['finished_workflows']} workflows / {shape['finished_workflows'] * shape['tasks_per_workflow']} tasks: "
            f"{result['list_p99_ms']:.1f} ms; server RSS {result['server_rss_mb']:.0f} MB"
        )
    finally:
        p.stop()
        shutil.rmtree(home, ignore_errors=True)
    result["machine"] = (
        f"{platform.machine()} {os.cpu_count()} cores, CPython {platform.python_version()}"
    )
    out = Path(__file__).parent / "results"
    out.mkdir(exist_ok=True)
    (out / "scheduler.json").write_text(json.dumps(result, indent=2))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
