"""Task start-up cost of the local runtime: trivial tasks through the zygote, end to end.

Run: .venv/bin/python bench/runtime_spawn.py [--tasks 200] [--sequential 30]

Burst: all tasks are spawned at once (pipelined requests to one zygote) and the clock stops when
the last exit.json appears; its latencies are mostly queueing. Paced: the same number of tasks
arriving at --rate per second (the platform target is 50/s). Sequential: one task at a time.
Latencies are measured from the spawn() call to the ``started_at`` the supervisor records when
it launches the command (spawn→running), and to exit.json's ``finished_at`` (spawn→done).
Figures, not asserts.
Prints the figures and writes bench/results/runtime_spawn.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from osmo.runtime import TaskLaunch, ZygoteClient, read_status, write_task
from osmo.runtime.taskdir import read_json

RESULTS = Path(__file__).parent / "results" / "runtime_spawn.json"


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _summary(values_s: list[float]) -> dict[str, float]:
    ms = [v * 1000 for v in values_s]
    return {
        "p50_ms": round(statistics.median(ms), 2),
        "p95_ms": round(_pct(ms, 0.95), 2),
        "max_ms": round(max(ms), 2),
    }


def _prepare(root: Path, n: int, prefix: str) -> list[Path]:
    dirs = []
    for i in range(n):
        td = root / f"{prefix}{i}"
        write_task(
            td,
            TaskLaunch(
                workflow_id="bench-1",
                group=f"g{i}",
                task=f"t{i}",
                command=["true"],
                output_url=(root / "data" / f"t{i}").as_uri() + "/",
            ),
        )
        dirs.append(td)
    return dirs


async def _wait_all_done(dirs: list[Path]) -> None:
    pending = set(dirs)
    while pending:
        pending = {td for td in pending if not (td / "exit.json").exists()}
        if pending:
            await asyncio.sleep(0.005)


def _latencies(dirs: list[Path], t_spawn: dict[Path, float]) -> tuple[list[float], list[float]]:
    to_running, to_done = [], []
    for td in dirs:
        ex = read_json(td / "exit.json")
        assert isinstance(ex, dict)
        if ex["exit_code"] != 0:
            raise SystemExit(f"task {td} failed: {ex}")
        to_running.append(ex["started_at"] - t_spawn[td])
        to_done.append(ex["finished_at"] - t_spawn[td])
    return to_running, to_done


async def run(n_burst: int, n_seq: int, rate: float, root: Path) -> dict[str, Any]:
    z = ZygoteClient()
    t0 = time.perf_counter()
    await z.start()
    zygote_start = time.perf_counter() - t0

    # Sequential: one task at a time, nothing else running.
    seq = _prepare(root, n_seq, "s")
    t_seq: dict[Path, float] = {}
    call_seq: list[float] = []
    for td in seq:
        t_seq[td] = time.time()
        c0 = time.perf_counter()
        await z.spawn(td)
        call_seq.append(time.perf_counter() - c0)
        await _wait_all_done([td])
    seq_running, seq_done = _latencies(seq, t_seq)

    # Burst: everything at once.
    burst = _prepare(root, n_burst, "b")
    t_burst: dict[Path, float] = {}
    call_burst: list[float] = []

    async def one(td: Path) -> None:
        t_burst[td] = time.time()
        c0 = time.perf_counter()
        await z.spawn(td)
        call_burst.append(time.perf_counter() - c0)

    start = time.perf_counter()
    await asyncio.gather(*(one(td) for td in burst))
    spawned = time.perf_counter() - start
    await _wait_all_done(burst)
    total = time.perf_counter() - start
    burst_running, burst_done = _latencies(burst, t_burst)
    # Paced: tasks arrive at the platform's target rate, as they would from the scheduler.
    paced = _prepare(root, n_burst, "p")
    t_paced: dict[Path, float] = {}
    spawns = []
    start_paced = time.perf_counter()
    for i, td in enumerate(paced):
        delay = start_paced + i / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        t_paced[td] = time.time()
        spawns.append(asyncio.create_task(z.spawn(td)))
    await asyncio.gather(*spawns)
    await _wait_all_done(paced)
    paced_total = time.perf_counter() - start_paced
    paced_running, paced_done = _latencies(paced, t_paced)

    mode = z.sandbox
    await z.close()
    # Every supervisor exits right after exit.json; make sure none is left behind.
    for td in seq + burst + paced:
        while read_status(td).supervisor_alive:
            await asyncio.sleep(0.01)

    return {
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "python": sys.version.split()[0],
        },
        "sandbox": mode,
        "zygote_start_s": round(zygote_start, 3),
        "sequential": {
            "tasks": n_seq,
            "spawn_call": _summary(call_seq),
            "spawn_to_running": _summary(seq_running),
            "spawn_to_done": _summary(seq_done),
        },
        "burst": {
            "tasks": n_burst,
            "all_spawned_s": round(spawned, 3),
            "spawns_per_s": round(n_burst / spawned, 1),
            "all_done_s": round(total, 3),
            "tasks_done_per_s": round(n_burst / total, 1),
            "spawn_call": _summary(call_burst),
            "spawn_to_running": _summary(burst_running),
            "spawn_to_done": _summary(burst_done),
        },
        "paced": {
            "tasks": n_burst,
            "rate_per_s": rate,
            "all_done_s": round(paced_total, 3),
            "spawn_to_running": _summary(paced_running),
            "spawn_to_done": _summary(paced_done),
        },
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--tasks", type=int, default=200)
    parser.add_argument("--sequential", type=int, default=30)
    parser.add_argument("--rate", type=float, default=50.0, help="arrival rate of the paced run")
    parser.add_argument("--out", type=Path, default=RESULTS)
    ns = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="osmo-bench-runtime-"))
    try:
        result = asyncio.run(run(ns.tasks, ns.sequential, ns.rate, root))
    finally:
        shutil.rmtree(root, ignore_errors=True)
    b, s = result["burst"], result["sequential"]
    print(f"sandbox: {result['sandbox']}   cpus: {result['machine']['cpus']}")
    print(f"zygote start: {result['zygote_start_s'] * 1000:.0f} ms")
    print(
        f"sequential ({s['tasks']}): spawn call p50 {s['spawn_call']['p50_ms']} ms, "
        f"spawn→running p50 {s['spawn_to_running']['p50_ms']} ms "
        f"(p95 {s['spawn_to_running']['p95_ms']}), "
        f"spawn→done p50 {s['spawn_to_done']['p50_ms']} ms"
    )
    print(
        f"burst ({b['tasks']}): {b['spawns_per_s']} spawns/s, all done in {b['all_done_s']} s "
        f"({b['tasks_done_per_s']} tasks/s); spawn→running p50 "
        f"{b['spawn_to_running']['p50_ms']} ms, p95 {b['spawn_to_running']['p95_ms']} ms; "
        f"spawn→done p50 {b['spawn_to_done']['p50_ms']} ms"
    )
    p = result["paced"]
    print(
        f"paced ({p['tasks']} at {p['rate_per_s']}/s): spawn→running p50 "
        f"{p['spawn_to_running']['p50_ms']} ms, p95 {p['spawn_to_running']['p95_ms']} ms; "
        f"spawn→done p50 {p['spawn_to_done']['p50_ms']} ms"
    )
    ns.out.parent.mkdir(parents=True, exist_ok=True)
    ns.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {ns.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
