"""Every example in examples/ validates offline, and each shows what it says it shows."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from spec_helpers import REPO

from osmo.spec import parse_workflow

EXAMPLES = sorted((REPO / "examples").glob("*.yaml"))


def test_the_examples_exist() -> None:
    names = {p.name for p in EXAMPLES}
    assert {"hello.yaml", "serial.yaml", "fanout.yaml", "group.yaml"} <= names


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_example_validates_offline(path: Path) -> None:
    result = subprocess.run(
        [str(Path(sys.executable).parent / "osmo"), "workflow", "validate", "--offline", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("valid: workflow ")
    assert result.stderr == ""


def test_serial_example_reads_its_input_by_index() -> None:
    spec = parse_workflow((REPO / "examples" / "serial.yaml").read_text()).spec
    consume = spec.groups[1].tasks[0]
    assert consume.name == "consume" and "{{input:0}}" in consume.args[0]
    assert spec.groups[1].upstream == ["produce-group"]


def test_fanout_example_follows_n() -> None:
    text = (REPO / "examples" / "fanout.yaml").read_text()
    assert len(parse_workflow(text).spec.tasks) == 5  # default n: 4, plus gather
    spec = parse_workflow(text, {"n": 8}).spec
    assert [t.name for t in spec.tasks] == [*(f"shard-{i}" for i in range(8)), "gather"]
    assert spec.groups[-1].upstream == [f"shard-{i}-group" for i in range(8)]


def test_group_example_has_a_lead_server_and_a_client_that_finds_it() -> None:
    spec = parse_workflow((REPO / "examples" / "group.yaml").read_text()).spec
    (group,) = spec.groups
    assert group.lead.name == "server"
    client = next(t for t in group.tasks if t.name == "client")
    assert "{{host:server}}" in client.args[0]
    assert group.lead.exit_action_for(124) == "COMPLETE"
