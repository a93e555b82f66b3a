"""The admin surface of the installed ``osmo`` CLI against a real ``osmo standalone``: pools,
backends and their operator tokens, and the nodes operators report.

Every command is checked for its output and exit code: 0 on success; 1 with ``error: ...`` on
stderr for a request the server refuses; 2 with click's usage message for malformed flags; never a
traceback (``Platform.osmo`` asserts that for every call).
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from .platform import OSMO, Platform, task

pytestmark = pytest.mark.e2e


def fails(p: Platform, *args: str) -> str:
    """Run a command that must be refused: exit 1, one ``error: ...`` message; returns it."""
    result = p.osmo(*args, check=False)
    assert result.returncode == 1, (args, result.returncode, result.stdout, result.stderr)
    assert result.stdout == "", result.stdout
    message = result.stderr.strip()
    assert message.startswith("error: "), message
    return message


def table(text: str) -> list[list[str]]:
    """Rows of a CLI table (header and rule dropped), split on runs of two or more spaces."""
    lines = [line for line in text.splitlines() if line.strip()]
    assert len(lines) >= 2 and set(lines[1]) <= {"-", " "}, text
    return [re.split(r"\s{2,}", line.strip()) for line in lines[2:]]


def header(text: str) -> list[str]:
    return re.split(r"\s{2,}", text.splitlines()[0].strip())


def backends(p: Platform) -> dict[str, dict[str, Any]]:
    out = json.loads(p.osmo("backend", "list", "-t", "json").stdout)
    return {b["name"]: b for b in out["backends"]}


def pool_names(p: Platform) -> set[str]:
    return {x["name"] for x in json.loads(p.osmo("pool", "list", "-t", "json").stdout)["pools"]}


def wait_backend(p: Platform, name: str, online: bool, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while backends(p).get(name, {}).get("online", False) != online:
        assert time.monotonic() < deadline, f"backend {name} never became online={online}"
        time.sleep(0.2)


@pytest.fixture
def sim_operator(platform: Platform, tmp_path: Path) -> Iterator[subprocess.Popen[str]]:
    """A simulated operator for backend ``sim`` (2 nodes x 8 H100s), with a token made by
    ``osmo backend token create``."""
    out = platform.osmo("backend", "token", "create", "sim")
    token = out.stdout.strip()
    assert len(out.stdout.splitlines()) == 1 and len(token) >= 32
    token_file = tmp_path / "sim.token"
    token_file.write_text(token + "\n")
    proc = subprocess.Popen(
        [
            OSMO,
            "operator",
            "start",
            "--server",
            platform.url,
            "--backend",
            "sim",
            "--token-file",
            str(token_file),
            "--executor",
            "simulated",
            "--nodes",
            "2",
            "--node-gpus",
            "8",
            "--gpu-type",
            "H100",
            "--node-label",
            "zone=a",
            "--node-prefix",
            "h100",
            "--state-dir",
            str(tmp_path / "sim-state"),
        ],
        env=platform.env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        wait_backend(platform, "sim", online=True)
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()


def test_pool_create_show_update_list(platform: Platform, tmp_path: Path) -> None:
    p = platform
    out = p.osmo("pool", "create", "team-a", "--backend", "sim", "--gpu-guarantee", "4")
    assert out.stdout.strip() == "pool team-a created on backend sim"
    config = yaml.safe_load(p.osmo("pool", "show", "team-a").stdout)
    assert config["backend"] == "sim"
    assert config["resources"]["gpu"]["guarantee"] == 4
    assert config["enable_maintenance"] is False

    # Refusals: exit 1 and one clear line.
    assert fails(p, "pool", "create", "team-a", "--backend", "sim") == (
        "error: pool 'team-a' exists; use 'osmo pool update'"
    )
    assert "a pool needs a backend" in fails(p, "pool", "create", "orphan")
    assert "invalid pool name 'bad name'" in fails(
        p, "pool", "create", "bad name", "--backend", "sim"
    )
    assert fails(p, "pool", "show", "nope") == "error: pool 'nope' does not exist"
    assert fails(p, "pool", "update", "nope", "--maintenance") == (
        "error: pool 'nope' does not exist"
    )
    bad = tmp_path / "bad.yaml"
    bad.write_text("backend: sim\nresources: {gpu: {guarantee: lots}}\n")
    message = fails(p, "pool", "create", "typed", "--file", str(bad))
    assert "resources.gpu.guarantee" in message, message
    broken = tmp_path / "broken.yaml"
    broken.write_text("backend: [sim\n")
    assert "invalid YAML" in fails(p, "pool", "create", "typed", "--file", str(broken))
    assert "cannot read" in fails(p, "pool", "create", "typed", "--file", str(tmp_path / "no.yaml"))
    assert "typed" not in pool_names(p)
    # Malformed flags are click usage errors (exit 2), still without a traceback.
    usage = p.osmo(
        "pool", "create", "x", "--backend", "sim", "--gpu-guarantee", "four", check=False
    )
    assert usage.returncode == 2 and "Invalid value for '--gpu-guarantee'" in usage.stderr

    # Update changes the fields named and keeps the rest.
    out = p.osmo("pool", "update", "team-a", "--maintenance", "--gpu-maximum", "8")
    assert out.stdout.strip() == "pool team-a updated"
    config = yaml.safe_load(p.osmo("pool", "show", "team-a").stdout)
    assert config["enable_maintenance"] is True
    assert config["resources"]["gpu"] == {"guarantee": 4, "maximum": 8, "weight": 1.0}
    assert config["backend"] == "sim"

    text = p.osmo("pool", "list").stdout
    assert header(text) == [
        "POOL",
        "BACKEND",
        "STATUS",
        "GPU QUOTA USED",
        "BORROWED",
        "GPU",
        "CPU",
        "MEMORY",
        "QUEUED",
    ]
    rows = {r[0]: r for r in table(text)}
    assert rows["team-a"][1:5] == ["sim", "MAINTENANCE", "0/4 (free 4)", "0"]
    assert rows["default"][1:3] == ["local", "ONLINE"]
    listed = {
        x["name"]: x for x in json.loads(p.osmo("pool", "list", "-t", "json").stdout)["pools"]
    }
    quota = listed["team-a"]["gpu_quota"]
    assert (listed["team-a"]["status"], quota["guarantee"], quota["maximum"]) == (
        "MAINTENANCE",
        4,
        8,
    )
    # A pool in maintenance takes no workflows.
    spec = tmp_path / "wf.yaml"
    spec.write_text("workflow:\n  name: m\n  tasks:\n  - {name: a, image: x, command: [x]}\n")
    refused = p.osmo("workflow", "submit", str(spec), "--pool", "team-a", check=False)
    assert refused.returncode == 1 and "maintenance" in refused.stderr, refused.stderr
    p.osmo("pool", "update", "team-a", "--no-maintenance")
    rows = {r[0]: r for r in table(p.osmo("pool", "list").stdout)}
    assert rows["team-a"][2] == "OFFLINE"  # its backend has no operator yet
    # A whole config from a file replaces the old one.
    whole = tmp_path / "team-a.yaml"
    whole.write_text("backend: sim\ndescription: from a file\n")
    p.osmo("pool", "update", "team-a", "--file", str(whole))
    config = yaml.safe_load(p.osmo("pool", "show", "team-a").stdout)
    assert config["description"] == "from a file"
    assert config["resources"]["gpu"]["guarantee"] == -1
    p.osmo("pool", "delete", "team-a")


def test_pool_delete_refused_while_work_is_unfinished(platform: Platform, tmp_path: Path) -> None:
    p = platform
    p.osmo("pool", "create", "busy", "--backend", "local", "--description", "deletable")
    spec = tmp_path / "long.yaml"
    spec.write_text(
        textwrap.dedent(
            f"""\
            workflow:
              name: holds-pool
              tasks:
              - name: long
                image: alpine
                command: [sh, -c, "sleep 7{os.getpid() % 1000:03d}"]
            """
        )
    )
    wf_id = p.submit(spec, "--pool", "busy")
    p.wait_task(wf_id, "long", "RUNNING")
    message = fails(p, "pool", "delete", "busy")
    assert message == (
        "error: pool 'busy' has 1 unfinished group(s); cancel them or wait before deleting it"
    )
    assert "busy" in pool_names(p)
    p.osmo("workflow", "cancel", wf_id)
    wf = p.wait(wf_id)
    assert wf["status"] == "FAILED_CANCELED"
    assert task(wf, "long")["status"] == "FAILED_CANCELED"
    assert p.osmo("pool", "delete", "busy").stdout.strip() == "pool busy deleted"
    assert "busy" not in pool_names(p)
    assert fails(p, "pool", "delete", "busy") == "error: pool 'busy' does not exist"


def test_backend_list_tokens_and_resources(
    platform: Platform, sim_operator: subprocess.Popen[str]
) -> None:
    p = platform
    p.osmo("pool", "create", "gpu", "--backend", "sim", "--gpu-guarantee", "4")
    try:
        text = p.osmo("backend", "list").stdout
        assert header(text) == [
            "BACKEND",
            "STATE",
            "EXECUTOR",
            "VERSION",
            "NODES",
            "LAST HEARTBEAT",
            "POOLS",
        ]
        rows = {r[0]: r for r in table(text)}
        assert rows["sim"][1:3] == ["online", "simulated"] and rows["sim"][4] == "2"
        assert rows["sim"][6] == "gpu"
        assert rows["local"][1:3] == ["online", "local"] and "default" in rows["local"][6]

        # Nodes, as reported by the operator.
        text = p.osmo("resource", "list", "--pool", "gpu").stdout
        assert header(text) == ["NODE", "BACKEND", "POOLS", "CPU", "GPU", "MEMORY", "AVAILABLE"]
        assert sorted(table(text)) == [
            ["h100-00000", "sim", "gpu", "0/8", "0/8", "0.0Gi/32.0Gi", "yes"],
            ["h100-00001", "sim", "gpu", "0/8", "0/8", "0.0Gi/32.0Gi", "yes"],
        ]
        everything = json.loads(p.osmo("resource", "list", "-t", "json").stdout)["resources"]
        assert {n["backend"] for n in everything} == {"local", "sim"}
        info = p.osmo("resource", "info", "h100-00001").stdout
        fields = {
            k.strip(): v.strip()
            for k, _, v in (line.partition(" : ") for line in info.splitlines())
        }
        assert fields["Backend"] == "sim" and fields["GPU"] == "0/8 (H100)"
        assert fields["Pools"] == "gpu" and "zone=a" in fields["Labels"]
        as_json = json.loads(p.osmo("resource", "info", "h100-00001", "-t", "json").stdout)
        assert (as_json["gpus"], as_json["gpu_type"], as_json["labels"]["zone"]) == (8, "H100", "a")
        assert fails(p, "resource", "info", "nope") == (
            "error: node 'nope' is not reported by any backend"
        )

        # Token errors.
        assert "invalid backend name 'bad name'" in fails(
            p, "backend", "token", "create", "bad name"
        )
        # Revoke: the operator is disconnected, refused when it dials again, and exits 1.
        out = p.osmo("backend", "token", "revoke", "sim")
        assert out.stdout.strip() == "revoked 1 token(s) of backend sim"
        sim_operator.wait(30)
        assert sim_operator.returncode == 1
        assert sim_operator.stdout is not None
        log = sim_operator.stdout.read()
        assert "error: the server refused this operator: invalid, expired or revoked" in log
        assert "Traceback" not in log
        wait_backend(p, "sim", online=False)
        assert {r[0]: r for r in table(p.osmo("backend", "list").stdout)}["sim"][1] == "offline"
        assert fails(p, "backend", "token", "revoke", "sim") == (
            "error: backend 'sim' has no active tokens"
        )
        # Delete the (offline, idle) backend: gone from the lists, with its nodes.
        assert p.osmo("backend", "delete", "sim").stdout.strip() == "backend sim deleted"
        assert "sim" not in backends(p)
        assert not [
            n
            for n in json.loads(p.osmo("resource", "list", "-t", "json").stdout)["resources"]
            if n["backend"] == "sim"
        ]
        assert fails(p, "backend", "delete", "sim") == "error: backend 'sim' does not exist"
        assert fails(p, "backend", "delete", "local") == (
            "error: backend 'local' is connected; stop its operator first"
        )
    finally:
        p.osmo("pool", "delete", "gpu", check=False)


def test_no_server_is_a_clear_error(platform: Platform) -> None:
    env = dict(platform.env(), OSMO_URL="http://127.0.0.1:9")
    for args in (["backend", "list"], ["pool", "list"], ["resource", "info", "x"]):
        result = subprocess.run([OSMO, *args], env=env, capture_output=True, text=True, timeout=60)
        assert result.returncode == 1, result
        assert result.stderr.startswith("error: cannot reach the osmo server at http://127.0.0.1:9")
        assert "Traceback" not in result.stderr
