"""End to end through the installed CLI against a real ``osmo standalone`` (SQLite and PostgreSQL)."""

from __future__ import annotations

import json
import socket
import time
import uuid
from pathlib import Path

import pytest

from .platform import Platform, group, pids_with, task, tasks_of, wait_gone

pytestmark = pytest.mark.e2e


def write(tmp_path: Path, text: str, name: str = "wf.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_hello_world(platform: Platform, tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
workflow:
  name: hello
  tasks:
  - name: hello
    image: ubuntu:24.04
    command: [sh, -c]
    args: ["echo hello from $OSMO_TASK_NAME in {{workflow_id}}"]
""",
    )
    wf_id = platform.submit(path)
    assert wf_id.startswith("hello-")
    wf = platform.wait(wf_id)
    assert wf["status"] == "COMPLETED"
    assert {"id", "status", "pool", "priority", "submitted_by", "groups"} <= set(wf)
    assert wf["pool"] == "default" and wf["priority"] == "NORMAL"
    t = task(wf, "hello")
    assert {"name", "status", "exit_code", "retry_id", "lead"} <= set(t)
    assert (t["status"], t["exit_code"], t["retry_id"], t["lead"]) == ("COMPLETED", 0, 0, True)
    assert f"hello from hello in {wf_id}" in platform.logs(wf_id)
    # Ids count per name.
    second = platform.submit(path)
    assert int(second.rsplit("-", 1)[1]) == int(wf_id.rsplit("-", 1)[1]) + 1
    platform.wait(second)
    listed = json.loads(platform.osmo("workflow", "list", "-t", "json", "--name", "hello").stdout)
    assert [w["id"] for w in listed["workflows"]][:2] == [second, wf_id]


def test_serial_data_flow(platform: Platform, tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
workflow:
  name: serial
  tasks:
  - name: produce
    image: alpine
    command: [sh, -c]
    args: ["echo payload-1 > {{output}}/data.txt"]
  - name: transform
    image: alpine
    command: [sh, -c]
    args: ["tr a-z A-Z < {{input:0}}/data.txt > {{output}}/data.txt"]
    inputs: [{task: produce}]
  - name: consume
    image: alpine
    command: [sh, -c]
    args: ["cat {{input:transform}}/data.txt"]
    inputs: [{task: transform}]
""",
    )
    wf_id = platform.submit(path)
    wf = platform.wait(wf_id)
    assert wf["status"] == "COMPLETED", wf
    assert platform.logs(wf_id, "--task", "consume").strip() == "PAYLOAD-1"
    assert (platform.home / "data" / wf_id / "transform" / "data.txt").read_text() == "PAYLOAD-1\n"


def test_fanout_fanin_from_jinja_loop(platform: Platform, tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
default-values:
  n: 2
  greeting: hi
workflow:
  name: fan
  tasks:
  - name: prep
    image: alpine
    command: [sh, -c]
    args: ["echo {{greeting}} > {{output}}/seed"]
{% for i in range(n) %}
  - name: work-{{i}}
    image: alpine
    command: [sh, -c]
    args: ["echo $(cat {{input:0}}/seed)-{{i}} > {{output}}/part"]
    inputs: [{task: prep}]
{% endfor %}
  - name: join
    image: alpine
    command: [sh, -c]
    args: ["cat /osmo/data/input/*/part | sort"]
    inputs:
{% for i in range(n) %}
    - task: work-{{i}}
{% endfor %}
""",
    )
    wf_id = platform.submit(path, "--set", "n=4", "--set-string", "greeting=007")
    wf = platform.wait(wf_id)
    assert wf["status"] == "COMPLETED", wf
    assert next(g["name"] for g in wf["groups"]) == "prep-group"
    assert len(wf["groups"]) == 6
    assert platform.logs(wf_id, "--task", "join").split() == [f"007-{i}" for i in range(4)]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_group_lead_client_talks_to_server_via_host_token(
    platform: Platform, tmp_path: Path
) -> None:
    port = _free_port()
    path = write(
        tmp_path,
        f"""
workflow:
  name: group-host
  groups:
  - name: pair
    tasks:
    - name: server
      image: python
      command: [python3, -c]
      args:
      - |
        import http.server
        class H(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                self.send_response(200); self.end_headers(); self.wfile.write(b"pong")
        http.server.HTTPServer(("127.0.0.1", {port}), H).serve_forever()
    - name: client
      lead: true
      image: python
      command: [python3, -c]
      args:
      - |
        import time, urllib.request
        for _ in range(100):
            try:
                print(urllib.request.urlopen("http://{{{{host:server}}}}:{port}/").read().decode()); break
            except OSError:
                time.sleep(0.1)
        else:
            raise SystemExit(9)
""",
    )
    wf_id = platform.submit(path)
    wf = platform.wait(wf_id)
    assert wf["status"] == "COMPLETED", wf
    assert "pong" in platform.logs(wf_id, "--task", "client")
    # The lead ended the group: the server was stopped and takes the lead's status.
    assert task(wf, "server")["status"] == "COMPLETED"
    assert wait_gone(f'HTTPServer(("127.0.0.1", {port})')


def test_failure_cascades_downstream(platform: Platform, tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
workflow:
  name: cascade
  tasks:
  - name: a
    image: alpine
    command: [sh, -c, "echo failing; exit 3"]
  - name: b
    image: alpine
    command: [sh, -c, "echo never"]
    inputs: [{task: a}]
  - name: c
    image: alpine
    command: [sh, -c, "echo never"]
    inputs: [{task: b}]
  - name: side
    image: alpine
    command: [sh, -c, "echo independent"]
""",
    )
    wf_id = platform.submit(path)
    wf = platform.wait(wf_id)
    assert wf["status"] == "FAILED"
    assert (task(wf, "a")["status"], task(wf, "a")["exit_code"]) == ("FAILED", 3)
    for name in ("b", "c"):
        assert (task(wf, name)["status"], task(wf, name)["exit_code"]) == ("FAILED_UPSTREAM", 3000)
    assert task(wf, "side")["status"] == "COMPLETED"
    assert "never" not in platform.logs(wf_id)
    errors = platform.osmo("workflow", "logs", wf_id, "--error").stdout
    assert "failing" in errors and "exit code 3" in errors


def test_exit_actions_complete_and_reschedule(platform: Platform, tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
workflow:
  name: actions
  tasks:
  - name: soft
    image: alpine
    command: [sh, -c, "exit 5"]
    exitActions: {COMPLETE: "0,5", FAIL: 1-4}
  - name: flaky
    image: alpine
    command: [sh, -c, "echo attempt $OSMO_RETRY_ID; [ \\"$OSMO_RETRY_ID\\" = 2 ] || exit 7"]
    exitActions: {RESCHEDULE: 7}
  - name: hopeless
    image: alpine
    command: [sh, -c, "exit 7"]
    exitActions: {reschedule: 7}
""",
    )
    wf_id = platform.submit(path)
    wf = platform.wait(wf_id)
    assert (task(wf, "soft")["status"], task(wf, "soft")["exit_code"]) == ("COMPLETED", 5)
    flaky = task(wf, "flaky")
    assert (flaky["status"], flaky["retry_id"]) == ("COMPLETED", 2)
    hopeless = task(wf, "hopeless")
    # max_retry_per_task is 3 by default: retries 0..3, then the RESCHEDULE becomes a failure.
    assert (hopeless["status"], hopeless["retry_id"], hopeless["exit_code"]) == ("FAILED", 3, 7)
    verbose = platform.query(wf_id, verbose=True)
    retries = [t for t in tasks_of(verbose) if t["name"] == "flaky"]
    assert [(t["retry_id"], t["status"]) for t in retries] == [
        (0, "RESCHEDULED"),
        (1, "RESCHEDULED"),
        (2, "COMPLETED"),
    ]
    assert "attempt 0" in platform.logs(wf_id, "--task", "flaky", "--retry-id", "0")
    assert wf["status"] == "FAILED"


def test_exec_timeout(platform: Platform, tmp_path: Path) -> None:
    marker = f"sleep 31{uuid.uuid4().int % 1000:03d}"
    path = write(
        tmp_path,
        f"""
workflow:
  name: slow
  timeout: {{exec_timeout: 2s}}
  tasks:
  - name: sleeper
    image: alpine
    command: [sh, -c, "{marker}"]
""",
    )
    started = time.monotonic()
    wf_id = platform.submit(path)
    wf = platform.wait(wf_id, timeout=60)
    elapsed = time.monotonic() - started
    assert wf["status"] == "FAILED_EXEC_TIMEOUT"
    assert task(wf, "sleeper")["status"] == "FAILED_EXEC_TIMEOUT"
    assert elapsed < 30  # generous: the expiry is enforced within a second or two
    assert wait_gone(marker)


def test_cancel_stops_processes(platform: Platform, tmp_path: Path) -> None:
    marker = f"sleep 32{uuid.uuid4().int % 1000:03d}"
    path = write(
        tmp_path,
        f"""
workflow:
  name: cancel-me
  tasks:
  - name: one
    image: alpine
    command: [sh, -c, "{marker}"]
  - name: two
    image: alpine
    command: [sh, -c, "({marker}) & wait"]
  - name: later
    image: alpine
    command: [sh, -c, "echo never"]
    inputs: [{{task: one}}]
""",
    )
    wf_id = platform.submit(path)
    platform.wait_task(wf_id, "one", "RUNNING")
    platform.wait_task(wf_id, "two", "RUNNING")
    assert pids_with(marker)
    out = platform.osmo("workflow", "cancel", wf_id, "-m", "no longer needed")
    assert "canceled" in out.stdout
    wf = platform.wait(wf_id, timeout=30)
    assert wf["status"] == "FAILED_CANCELED"
    assert {t["status"] for t in tasks_of(wf)} == {"FAILED_CANCELED"}
    assert wait_gone(marker, timeout=20), pids_with(marker)
    again = platform.osmo("workflow", "cancel", wf_id, check=False)
    assert again.returncode == 1 and "already finished" in again.stderr


def test_lead_ending_group_stops_others(platform: Platform, tmp_path: Path) -> None:
    marker = f"sleep 33{uuid.uuid4().int % 1000:03d}"
    path = write(
        tmp_path,
        f"""
workflow:
  name: lead-ends
  groups:
  - name: g
    tasks:
    - name: lead
      lead: true
      image: alpine
      command: [sh, -c, "sleep 1; echo lead done"]
    - name: worker
      image: alpine
      command: [sh, -c, "{marker}"]
""",
    )
    wf_id = platform.submit(path)
    wf = platform.wait(wf_id, timeout=60)
    assert wf["status"] == "COMPLETED"
    assert group(wf, "g")["status"] == "COMPLETED"
    assert task(wf, "worker")["status"] == "COMPLETED"
    assert wait_gone(marker)


def test_strict_group_fails_on_nonlead_failure(platform: Platform, tmp_path: Path) -> None:
    marker = f"sleep 34{uuid.uuid4().int % 1000:03d}"
    path = write(
        tmp_path,
        f"""
workflow:
  name: strict
  groups:
  - name: g
    ignoreNonleadStatus: false
    tasks:
    - name: lead
      lead: true
      image: alpine
      command: [sh, -c, "{marker}"]
    - name: worker
      image: alpine
      command: [sh, -c, "exit 4"]
  - name: tolerant
    tasks:
    - name: lead2
      lead: true
      image: alpine
      command: [sh, -c, "sleep 1"]
    - name: worker2
      image: alpine
      command: [sh, -c, "exit 4"]
""",
    )
    wf_id = platform.submit(path)
    wf = platform.wait(wf_id, timeout=60)
    assert group(wf, "g")["status"] == "FAILED"
    assert (task(wf, "worker")["status"], task(wf, "worker")["exit_code"]) == ("FAILED", 4)
    assert task(wf, "lead")["status"] == "FAILED"
    assert wait_gone(marker)
    # ignoreNonleadStatus: true (the default) — the group follows its lead.
    assert group(wf, "tolerant")["status"] == "COMPLETED"
    assert task(wf, "worker2")["status"] == "FAILED"
    assert wf["status"] == "FAILED"


def test_restart_after_failure(platform: Platform, tmp_path: Path) -> None:
    flag = Path("/var/tmp") / f"osmo-e2e-{uuid.uuid4().hex}"
    path = write(
        tmp_path,
        f"""
workflow:
  name: restartable
  tasks:
  - name: make
    image: alpine
    command: [sh, -c, "echo made-once > {{{{output}}}}/thing"]
  - name: use
    image: alpine
    command: [sh, -c, "test -e {flag} || exit 2; cat {{{{input:0}}}}/thing"]
    inputs: [{{task: make}}]
""",
    )
    try:
        wf_id = platform.submit(path)
        wf = platform.wait(wf_id)
        assert wf["status"] == "FAILED"
        assert task(wf, "make")["status"] == "COMPLETED"
        flag.touch()
        new_id = json.loads(platform.osmo("workflow", "restart", wf_id, "-t", "json").stdout)["id"]
        assert new_id != wf_id
        new = platform.wait(new_id)
        assert new["status"] == "COMPLETED", new
        assert [g["name"] for g in new["groups"]] == ["use-group"]
        assert platform.logs(new_id, "--task", "use").strip() == "made-once"
        again = platform.osmo("workflow", "restart", new_id, check=False)
        assert again.returncode == 1 and "only failed workflows" in again.stderr
    finally:
        flag.unlink(missing_ok=True)


def test_bad_input_is_rejected_and_nothing_stored(platform: Platform, tmp_path: Path) -> None:
    bad = write(
        tmp_path,
        """
workflow:
  name: broken
  tasks:
  - name: a
    image: alpine
    command: [sh]
    resource: huge
""",
        "bad.yaml",
    )
    out = platform.osmo("workflow", "submit", str(bad), check=False)
    assert out.returncode == 1
    assert out.stderr.startswith(f"{bad}:8:15: ") and "huge" in out.stderr
    listed = json.loads(platform.osmo("workflow", "list", "--name", "broken", "-t", "json").stdout)
    assert listed["workflows"] == []
    good = write(
        tmp_path, "workflow: {name: ok, tasks: [{name: a, image: x, command: [true]}]}", "good.yaml"
    )
    out = platform.osmo("workflow", "submit", str(good), "--pool", "nope", check=False)
    assert out.returncode == 1 and "pool 'nope' does not exist" in out.stderr
    out = platform.osmo("workflow", "query", "ghost-1", check=False)
    assert out.returncode == 1 and "not found" in out.stderr
    out = platform.osmo("workflow", "submit", str(good), "--set", "novalue", check=False)
    assert out.returncode == 1 and "KEY=VALUE" in out.stderr


def test_validate_and_spec_and_pools(platform: Platform, tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "default-values: {n: 1}\nworkflow: {name: v{{n}}, tasks: [{name: a, image: x, command: [echo, '{{output}}']}]}\n",
    )
    out = platform.osmo("workflow", "validate", str(path), "--set", "n=7")
    assert "valid" in out.stdout and "v7" in out.stdout
    wf_id = platform.submit(path)
    platform.wait(wf_id)
    assert "name: v1" in platform.osmo("workflow", "spec", wf_id).stdout
    assert "{{n}}" in platform.osmo("workflow", "spec", wf_id, "--template").stdout
    pools = json.loads(platform.osmo("pool", "list", "-t", "json").stdout)["pools"]
    assert [(p["name"], p["backend"], p["online"]) for p in pools] == [("default", "local", True)]
    assert pools[0]["capacity"]["cpus"] >= 1
    nodes = json.loads(platform.osmo("resource", "list", "-t", "json").stdout)["resources"]
    assert len(nodes) == 1 and nodes[0]["memory_bytes"] > 0
