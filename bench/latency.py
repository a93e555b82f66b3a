"""Latency and throughput of the embedded platform, timed at the HTTP API.

Starts a real ``osmo standalone`` process (SQLite, local executor, bubblewrap sandbox) in a
temporary OSMO_HOME and drives it with an HTTP client in this process:

  (a) submit → RUNNING and submit → COMPLETED for a trivial task, over N sequential runs;
  (b) 200 independent trivial tasks submitted at once: tasks/s until all are terminal;
  (c) a 50-task chain (each depends on the previous): overhead per hop.

Prints the figures and writes JSON to bench/results/latency.json; the last line of output is
one JSON object with the headline figures.
"""

from __future__ import annotations

import argparse
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

import httpx

OSMO = str(Path(sys.executable).parent / "osmo")
TERMINAL_PREFIX = ("COMPLETED", "FAILED")
STARTED = {"RUNNING", "COMPLETED"}


def start_standalone(home: Path) -> tuple[subprocess.Popen[bytes], str]:
    env = dict(os.environ, OSMO_HOME=str(home))
    env.pop("OSMO_DATABASE_URL", None)
    proc = subprocess.Popen(
        [OSMO, "standalone", "--port", "0"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    assert proc.stdout is not None
    buf = b""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        r, _, _ = select.select([proc.stdout], [], [], 0.5)
        if r:
            chunk = os.read(proc.stdout.fileno(), 65536)
            if not chunk:
                break
            buf += chunk
            m = re.search(rb"serving (http://\S+)", buf)
            if m:
                return proc, m.group(1).decode()
    proc.kill()
    raise SystemExit(f"standalone did not start: {buf.decode(errors='replace')}")


def pct(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    k = min(len(ordered) - 1, max(0, round(p / 100 * (len(ordered) - 1))))
    return ordered[k]


def submit(client: httpx.Client, text: str) -> str:
    r = client.post("/api/pool/default/workflow", json={"file": text})
    r.raise_for_status()
    return str(r.json()["id"])


def status(client: httpx.Client, wf_id: str, groups: bool = True) -> dict:  # type: ignore[type-arg]
    r = client.get(f"/api/workflow/{wf_id}", params={} if groups else {"skip_groups": "true"})
    r.raise_for_status()
    return dict(r.json())


def wait_terminal(
    client: httpx.Client, wf_id: str, poll: float, timeout: float = 600
) -> tuple[dict, float]:  # type: ignore[type-arg]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        wf = status(client, wf_id, groups=False)
        if wf["status"].startswith(TERMINAL_PREFIX):
            return wf, time.perf_counter()
        time.sleep(poll)
    raise SystemExit(f"{wf_id} did not finish")


TRIVIAL = """
workflow:
  name: trivial
  tasks:
  - name: t
    image: busybox
    command: ["true"]
"""


def bench_single(client: httpx.Client, runs: int) -> dict[str, float]:
    to_running: list[float] = []
    to_completed: list[float] = []
    for _ in range(runs):
        t0 = time.perf_counter()
        wf_id = submit(client, TRIVIAL)
        running_at = None
        while True:
            wf = status(client, wf_id)
            now = time.perf_counter()
            task_status = wf["groups"][0]["tasks"][0]["status"]
            if running_at is None and task_status in STARTED:
                running_at = now
            if wf["status"].startswith(TERMINAL_PREFIX):
                if wf["status"] != "COMPLETED":
                    raise SystemExit(f"{wf_id} ended {wf['status']}")
                to_completed.append((now - t0) * 1000)
                break
            time.sleep(0.002)
        assert running_at is not None
        to_running.append((running_at - t0) * 1000)
    return {
        "runs": runs,
        "submit_to_running_p50_ms": statistics.median(to_running),
        "submit_to_running_p99_ms": pct(to_running, 99),
        "submit_to_completed_p50_ms": statistics.median(to_completed),
        "submit_to_completed_p99_ms": pct(to_completed, 99),
    }


def bench_fanout(client: httpx.Client, n: int) -> dict[str, float]:
    text = (
        "default-values: {n: %d}\nworkflow:\n  name: fanout\n  tasks:\n"  # noqa: UP031
        '{%% for i in range(n) %%}\n  - name: t{{i}}\n    image: busybox\n    command: ["true"]\n{%% endfor %%}\n'
        % n
    )
    t0 = time.perf_counter()
    wf_id = submit(client, text)
    wf, t1 = wait_terminal(client, wf_id, 0.01)
    if wf["status"] != "COMPLETED":
        raise SystemExit(f"fan-out ended {wf['status']}")
    elapsed = t1 - t0
    return {"fanout_tasks": n, "fanout_seconds": elapsed, "fanout_tasks_per_s": n / elapsed}


def bench_chain(client: httpx.Client, n: int, single_ms: float) -> dict[str, float]:
    text = (
        'default-values: {n: %d}\nworkflow:\n  name: chain\n  tasks:\n  - name: t0\n    image: busybox\n    command: ["true"]\n'  # noqa: UP031
        '{%% for i in range(1, n) %%}\n  - name: t{{i}}\n    image: busybox\n    command: ["true"]\n'
        "    inputs: [{task: t{{i - 1}}}]\n{%% endfor %%}\n" % n
    )
    t0 = time.perf_counter()
    wf_id = submit(client, text)
    wf, t1 = wait_terminal(client, wf_id, 0.01)
    if wf["status"] != "COMPLETED":
        raise SystemExit(f"chain ended {wf['status']}")
    total_ms = (t1 - t0) * 1000
    return {
        "chain_tasks": n,
        "chain_total_ms": total_ms,
        "chain_per_hop_ms": total_ms / n,
        "chain_per_hop_after_first_ms": (total_ms - single_ms) / max(1, n - 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick", action="store_true", help="fewer sequential runs (finishes within a minute)"
    )
    parser.add_argument("--runs", type=int, default=None)
    parser.add_argument("--fanout", type=int, default=200)
    parser.add_argument("--chain", type=int, default=50)
    args = parser.parse_args()
    runs = args.runs or (50 if args.quick else 200)
    home = Path(tempfile.mkdtemp(prefix="osmo-bench-"))
    proc, url = start_standalone(home)
    try:
        with httpx.Client(base_url=url, timeout=60) as client:
            submit(client, TRIVIAL)  # warm-up: zygote, sandbox probe, caches
            time.sleep(0.5)
            single = bench_single(client, runs)
            fanout = bench_fanout(client, args.fanout)
            chain = bench_chain(client, args.chain, single["submit_to_completed_p50_ms"])
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
        shutil.rmtree(home, ignore_errors=True)
    result = {
        **single,
        **fanout,
        **chain,
        "machine": f"{platform.machine()} {os.cpu_count()} cores, {platform.python_implementation()} {platform.python_version()}",
        "quick": args.quick,
    }
    print(f"(a) trivial task, {runs} sequential runs")
    print(
        f"    submit -> RUNNING    p50 {single['submit_to_running_p50_ms']:.1f} ms  p99 {single['submit_to_running_p99_ms']:.1f} ms"
    )
    print(
        f"    submit -> COMPLETED  p50 {single['submit_to_completed_p50_ms']:.1f} ms  p99 {single['submit_to_completed_p99_ms']:.1f} ms"
    )
    print(
        f"(b) {args.fanout} independent tasks: {fanout['fanout_seconds']:.2f} s, {fanout['fanout_tasks_per_s']:.1f} tasks/s"
    )
    print(
        f"(c) {args.chain}-task chain: {chain['chain_total_ms']:.0f} ms, {chain['chain_per_hop_ms']:.1f} ms/hop"
    )
    out = Path(__file__).parent / "results"
    out.mkdir(exist_ok=True)
    (out / "latency.json").write_text(json.dumps(result, indent=2))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
