"""Conformance table: valid files parse to exactly these model fields; invalid files report
exactly these ``LINE:COL: message`` lines (kept next to each file in ``NAME.expected``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest
from spec_helpers import INVALID, VALID, dig, issue_lines, read_expected

from osmo.spec import SpecError, parse_workflow

GiB = 1024**3


@dataclass
class Valid:
    file: str
    expect: dict[str, Any]
    order: list[str]  # group names in topological order
    upstream: dict[str, list[str]] = field(default_factory=dict)  # group -> upstream groups
    set_values: dict[str, Any] = field(default_factory=dict)
    set_strings: dict[str, Any] = field(default_factory=dict)
    id: str = ""


VALID_CASES = [
    Valid(
        "hello.yaml",
        {
            "version": 2,
            "name": "hello-osmo",
            "declared_as": "tasks",
            "groups[0].tasks[0].name": "hello",
            "groups[0].tasks[0].image": "ubuntu:24.04",
            "groups[0].tasks[0].command": ["echo"],
            "groups[0].tasks[0].args": ["Hello from OSMO"],
            "groups[0].tasks[0].lead": True,
            "groups[0].tasks[0].resource": "default",
            "groups[0].barrier": True,
            "groups[0].ignore_nonlead_status": True,
            "resources": {
                "default": {
                    "cpu": None,
                    "gpu": None,
                    "memory": None,
                    "memory_bytes": None,
                    "storage": None,
                    "storage_bytes": None,
                    "platform": None,
                    "nodes_excluded": [],
                    "topology": [],
                }
            },
            "timeout": {"exec_timeout": None, "queue_timeout": None},
            "labels": {},
            "pool": None,
            "default_values": {},
        },
        order=["hello-group"],
        upstream={"hello-group": []},
    ),
    Valid(
        "serial.yaml",
        {
            "name": "serial",
            "groups[0].tasks[0].args": ["seq 1 100 > {{output}}/numbers.txt"],
            "groups[1].tasks[0].inputs": [
                {
                    "kind": "task",
                    "task": "generate",
                    "workflow_id": None,
                    "url": None,
                    "dataset": None,
                    "regex": None,
                }
            ],
            "groups[2].tasks[0].args": [
                "wc -l {{input:0}}/* {{input:generate}}/numbers.txt > {{output}}/report.txt"
            ],
            "groups[2].tasks[0].inputs[1].task": "generate",
            "groups[2].tasks[0].inputs[1].regex": r".*\.txt$",
            "groups[2].tasks[0].outputs": [
                {"kind": "url", "url": "s3://results/serial/", "dataset": None, "regex": None}
            ],
        },
        order=["generate-group", "square-group", "report-group"],
        upstream={
            "generate-group": [],
            "square-group": ["generate-group"],
            "report-group": ["generate-group", "square-group"],
        },
    ),
    Valid(
        "parallel.yaml",
        {"groups[3].tasks[0].command": ["cat", "{{input:0}}", "{{input:1}}", "{{input:2}}"]},
        order=["shard-a-group", "shard-b-group", "shard-c-group", "merge-group"],
        upstream={
            "shard-a-group": [],
            "merge-group": ["shard-a-group", "shard-b-group", "shard-c-group"],
        },
    ),
    Valid(
        "groups.yaml",
        {
            "declared_as": "groups",
            "groups[0].name": "prepare",
            "groups[0].tasks[0].lead": True,  # a single-task group's task is lead
            "groups[1].name": "serving",
            "groups[1].barrier": False,
            "groups[1].ignore_nonlead_status": False,
            "groups[1].tasks[0].name": "server",
            "groups[1].tasks[0].lead": True,
            "groups[1].tasks[1].name": "client",
            "groups[1].tasks[1].lead": False,
            "groups[1].tasks[1].args": ["curl --retry 10 http://{{host:server}}:8000/"],
            "groups[1].tasks[1].resources.cpu": 1,
            "groups[2].name": "heterogeneous",
            "groups[2].barrier": True,
            "groups[2].ignore_nonlead_status": True,
            "groups[2].tasks[0].name": "sim",
            "groups[2].tasks[0].lead": False,
            "groups[2].tasks[0].resources.platform": "dgx-a100",
            "groups[2].tasks[0].resources.gpu": 1,
            "groups[2].tasks[1].name": "robot",
            "groups[2].tasks[1].lead": True,
            "groups[2].tasks[1].command": ["run-robot", "--sim={{host:sim}}"],
            "groups[2].tasks[1].resources.platform": "agx-orin",
        },
        # Among groups that are ready, declaration order wins: a file written upstream-first
        # comes out unchanged.
        order=["prepare", "serving", "heterogeneous"],
        upstream={"prepare": [], "serving": ["prepare"], "heterogeneous": []},
    ),
    Valid(
        "template_loop.yaml",
        {
            "name": "fan-3",
            "default_values": {"n": 3, "image": "ubuntu:24.04", "prefix": "shard"},
            "groups[1].tasks[0].name": "shard-1",
            "groups[1].tasks[0].args": ["echo 1 of 3 > {{output}}/part.txt"],
            "groups[3].tasks[0].inputs[2].task": "shard-2",
            "groups[3].tasks[0].args": ["cat {{input:0}}/part.txt"],
        },
        order=["shard-0-group", "shard-1-group", "shard-2-group", "gather-group"],
        upstream={"gather-group": ["shard-0-group", "shard-1-group", "shard-2-group"]},
        id="template_loop-defaults",
    ),
    Valid(
        "template_loop.yaml",
        {
            "name": "fan-5",
            "groups[4].tasks[0].name": "part-4",
            "groups[4].tasks[0].image": "busybox",
            "groups[4].tasks[0].args": ["echo 4 of 5 > {{output}}/part.txt"],
            "groups[5].tasks[0].inputs[4].task": "part-4",
            # default_values records the file's defaults, not the overrides
            "default_values.n": 3,
        },
        order=[*(f"part-{i}-group" for i in range(5)), "gather-group"],
        set_values={"n": 5, "prefix": "part"},
        set_strings={"image": "busybox"},
        id="template_loop-set",
    ),
    Valid(
        "template_conditionals.yaml",
        {
            "resources.default.cpu": 4,
            "resources.default.gpu": None,
            "resources.default.memory_bytes": 8 * GiB,
            "groups[0].tasks[0].args": ["--epochs=10", "--lr=0.001", "--note=none"],
        },
        order=["train-group"],
        id="template_conditionals-defaults",
    ),
    Valid(
        "template_conditionals.yaml",
        {
            "resources.default.cpu": None,
            "resources.default.gpu": 1,
            "resources.default.memory_bytes": 32 * GiB,
            "groups[0].tasks[0].args": [
                "--epochs=2.5",
                "--lr=1e-4",
                "--note=hello world",
                "--seed=0042",
            ],
        },
        order=["train-group"],
        set_values={"use_gpu": 1, "epochs": 2.5, "note": "hello world"},
        set_strings={"lr": "1e-4", "seed": "0042"},
        id="template_conditionals-set",
    ),
    Valid(
        "tokens.yaml",
        {
            "groups[0].tasks[0].command": [
                "bash",
                "-c",
                "echo {{workflow_id}} > {{output}}/id.txt",
            ],
            # ``{{ input:prep }}`` with spaces is normalized; a default value named ``output``
            # cannot override the token.
            "groups[1].tasks[0].args": [
                "cat {{input:0}}/id.txt {{input:prep}}/id.txt; echo {{uuid}}"
            ],
            "groups[1].tasks[0].environment": {"RUN_ID": "{{workflow_id}}", "OUT": "{{output}}"},
            "groups[1].tasks[0].files[0].contents": "echo {{workflow_id}} {{input:0}}\n",
        },
        order=["prep-group", "use-group"],
    ),
    Valid(
        "resources.yaml",
        {
            "resources.default.cpu": 2,
            "resources.default.memory": "4Gi",
            "resources.default.memory_bytes": 4 * GiB,
            "resources.default.storage_bytes": 10 * GiB,
            "resources.gpu": {
                "cpu": 16,
                "gpu": 8,
                "memory": "512Gi",
                "memory_bytes": 512 * GiB,
                "storage": "1Ti",
                "storage_bytes": 1024**4,
                "platform": "dgx-h100",
                "nodes_excluded": ["node-7", "node-9"],
                "topology": [
                    {"key": "nvlink-domain", "group": "default", "requirement_type": "required"},
                    {"key": "rack", "group": "racks", "requirement_type": "preferred"},
                ],
            },
            "resources.small.memory_bytes": 512 * 1024**2,
            "resources.small.storage": "2048",
            "resources.small.storage_bytes": 2048,
            "groups[0].tasks[0].resource": "default",
            "groups[0].tasks[0].resources.cpu": 2,
            "groups[1].tasks[0].resource": "gpu",
            "groups[1].tasks[0].resources.platform": "dgx-h100",
            "groups[1].tasks[0].resources.gpu": 8,
            "groups[2].tasks[0].resources.memory_bytes": 512 * 1024**2,
        },
        order=["cpu-task-group", "gpu-task-group", "small-task-group"],
    ),
    Valid(
        "exit_actions.yaml",
        {
            "groups[0].tasks[0].exit_actions": {
                "COMPLETE": [(0, 0), (2, 2)],
                "RESCHEDULE": [(3, 10), (42, 42)],
                "FAIL": [(11, 255)],
            },
            "groups[1].tasks[0].exit_actions": {"FAIL": [(1, 1)]},
        },
        order=["flaky-group", "simple-group"],
    ),
    Valid(
        "timeouts.yaml",
        {"timeout": {"exec_timeout": 8 * 3600, "queue_timeout": 90 * 60}},
        order=["long-group"],
    ),
    Valid(
        "checkpoints.yaml",
        {
            "groups[0].tasks[0].checkpoint": [
                {"path": "/ckpt", "url": "s3://bucket/ckpt/", "frequency_s": 600, "regex": None},
                {
                    "path": "/logs",
                    "url": "azure://account/container/logs",
                    "frequency_s": 300,
                    "regex": r".*\.log$",
                },
            ]
        },
        order=["train-group"],
    ),
    Valid(
        "credentials.yaml",
        {
            "groups[0].tasks[0].credentials": {
                "wandb": {"WANDB_API_KEY": "api_key"},
                "hf": {"HF_TOKEN": "token", "HF_USER": "user"},
                "aws-creds": "/root/.aws",
            }
        },
        order=["upload-group"],
    ),
    Valid(
        "datasets.yaml",
        {
            "groups[0].tasks[0].inputs": [
                {
                    "kind": "dataset",
                    "task": None,
                    "workflow_id": None,
                    "url": None,
                    "dataset": {
                        "name": "imagenet",
                        "version": "3",
                        "regex": r".*\.JPEG$",
                        "metadata": {},
                        "labels": {},
                    },
                    "regex": None,
                },
                {
                    "kind": "dataset",
                    "task": None,
                    "workflow_id": None,
                    "url": None,
                    "dataset": {
                        "name": "team/coco",
                        "version": "validated",
                        "regex": None,
                        "metadata": {},
                        "labels": {},
                    },
                    "regex": None,
                },
                {
                    "kind": "dataset",
                    "task": None,
                    "workflow_id": None,
                    "url": None,
                    "dataset": {
                        "name": "cifar",
                        "version": None,
                        "regex": None,
                        "metadata": {},
                        "labels": {},
                    },
                    "regex": None,
                },
                {
                    "kind": "url",
                    "task": None,
                    "workflow_id": None,
                    "url": "gs://public-bucket/extra/",
                    "dataset": None,
                    "regex": r".*\.json",
                },
            ],
            "groups[0].tasks[0].outputs": [
                {
                    "kind": "dataset",
                    "url": None,
                    "dataset": {
                        "name": "resnet-weights",
                        "version": "best",
                        "regex": r".*\.pt$",
                        "metadata": {"epochs": "90", "top1": "76.1"},
                        "labels": {"stage": "candidate"},
                    },
                    "regex": None,
                },
                {"kind": "url", "url": "s3://bucket/train-logs/", "dataset": None, "regex": None},
            ],
        },
        order=["train-group"],
    ),
    Valid(
        "later_upstream.yaml",
        {"groups[2].tasks[0].inputs[0].task": "train", "groups[1].tasks[0].name": "train"},
        order=["download-group", "train-group", "evaluate-group", "lint-group"],
        upstream={
            "evaluate-group": ["train-group"],
            "train-group": ["download-group"],
            "download-group": [],
            "lint-group": [],
        },
    ),
    Valid(
        "all_task_keys.yaml",
        {
            "pool": "gpu-pool",
            "labels": {"team": "robotics", "example.com/project": "nav2"},
            "groups[0].tasks[0].args": ["/tmp/run.sh", "1"],
            "groups[0].tasks[0].environment": {
                "MODE": "fast",
                "RETRIES": "3",
                "VERBOSE": "true",
                "RATIO": "0.5",
            },
            "groups[0].tasks[0].files": [
                {
                    "path": "/tmp/run.sh",
                    "contents": '#!/bin/bash\necho "$MODE"\n',
                    "localpath": None,
                    "base64": False,
                },
                {
                    "path": "/osmo/data/output/seed.bin",
                    "contents": "AAEC",
                    "localpath": None,
                    "base64": True,
                },
            ],
            "groups[0].tasks[0].volume_mounts": ["/dev/shm", "/data/cache:/cache"],
            "groups[0].tasks[0].privileged": True,
            "groups[0].tasks[0].host_network": True,
            "groups[0].tasks[0].kpis": [{"index": "accuracy", "path": "kpi/accuracy.json"}],
            "groups[0].tasks[0].download_type": "download",
            "groups[0].tasks[0].cache_size": "50%",
            "groups[1].tasks[0].cache_size": "10Gi",
            "groups[1].tasks[0].privileged": False,
            "groups[1].tasks[0].host_network": False,
            "groups[1].tasks[0].args": [],
            "groups[1].tasks[0].download_type": None,
        },
        order=["everything-group", "sized-cache-group"],
    ),
    Valid(
        "merge_keys.yaml",
        {
            "groups[0].tasks[0].command": ["echo", "first"],
            "groups[1].tasks[0].name": "second",
            "groups[1].tasks[0].image": "ubuntu:24.04",
            "groups[1].tasks[0].command": ["echo", "second"],
            "groups[1].tasks[0].environment": {"LEVEL": "info"},
            "groups[2].tasks[0].name": "third",
            "groups[2].tasks[0].image": "python:3.11",
            "groups[2].tasks[0].command": ["echo", "first"],
        },
        order=["first-group", "second-group", "third-group"],
    ),
]


@pytest.mark.parametrize("case", VALID_CASES, ids=lambda c: c.id or c.file.removesuffix(".yaml"))
def test_valid_file(case: Valid) -> None:
    text = (VALID / case.file).read_text(encoding="utf-8")
    result = parse_workflow(text, case.set_values, case.set_strings)
    spec = result.spec
    data = spec.model_dump()
    for path, expected in case.expect.items():
        actual = dig(data, path)
        if isinstance(expected, dict) and path.endswith("exit_actions"):
            actual = {k: [tuple(r) for r in v] for k, v in actual.items()}
        assert actual == expected, path
    assert [g.name for g in spec.groups] == case.order
    for group, upstream in case.upstream.items():
        assert next(g for g in spec.groups if g.name == group).upstream == upstream, group
    # Every group has exactly one lead, and upstream groups come first.
    seen: set[str] = set()
    for g in spec.groups:
        assert sum(t.lead for t in g.tasks) == 1, g.name
        assert set(g.upstream) <= seen, g.name
        seen.add(g.name)
    if spec.declared_as == "tasks":
        assert all(len(g.tasks) == 1 and g.name == f"{g.tasks[0].name}-group" for g in spec.groups)


def test_every_valid_file_is_in_the_table() -> None:
    assert {p.name for p in VALID.glob("*.yaml")} == {c.file for c in VALID_CASES}


# ---- invalid files ---------------------------------------------------------------------------

# File -> (--set values, --set-string values) where a file needs them.
INVALID_SET: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    "set_value_bad_unit.yaml": ({"memory": "16GB"}, {}),
}

# Problems about the file as a whole have no position.
UNLOCATED = {"empty_file.yaml"}

INVALID_FILES = sorted(p.name for p in INVALID.glob("*.yaml"))


@pytest.mark.parametrize("name", INVALID_FILES, ids=lambda n: n.removesuffix(".yaml"))
def test_invalid_file(name: str) -> None:
    path = INVALID / name
    expected_path = path.with_suffix(".expected")
    assert expected_path.exists(), f"{expected_path.name} is missing"
    set_values, set_strings = INVALID_SET.get(name, ({}, {}))
    with pytest.raises(SpecError) as info:
        parse_workflow(path.read_text(encoding="utf-8"), set_values, set_strings)
    assert issue_lines(info.value) == read_expected(expected_path)
    if name in UNLOCATED:
        return
    n_lines = len(path.read_text(encoding="utf-8").splitlines())
    for issue in info.value.issues:
        assert issue.line is not None and 1 <= issue.line <= n_lines, issue
        assert issue.column is not None and issue.column >= 1, issue


def test_invalid_table_is_complete() -> None:
    assert len(INVALID_FILES) >= 30
    expected = {p.with_suffix(".yaml").name for p in INVALID.glob("*.expected")}
    assert expected == set(INVALID_FILES)
    assert set(INVALID_SET) <= set(INVALID_FILES)


def test_several_errors_name_task_and_key() -> None:
    """Beyond line and column, each issue names the task and the key path it is about."""
    with pytest.raises(SpecError) as info:
        parse_workflow((INVALID / "several_errors.yaml").read_text(encoding="utf-8"))
    assert [(i.task, i.key) for i in info.value.issues] == [
        (None, "workflow.colour"),
        (None, "workflow.resources.default.memory"),
        (None, "workflow.timeout.exec_timeout"),
        ("prep", "workflow.tasks[0].exitActions.RETRY"),
        ("Prep", "workflow.tasks[1].name"),
        ("train", "workflow.tasks[2].resource"),
        ("train", "workflow.tasks[2].inputs"),
        ("train", "workflow.tasks[2].files[0].path"),
    ]
    assert info.value.summary().startswith("8 errors in workflow spec; first: unknown key")


def test_group_task_keys() -> None:
    with pytest.raises(SpecError) as info:
        parse_workflow((INVALID / "bad_tokens.yaml").read_text(encoding="utf-8"))
    assert [(i.task, i.key) for i in info.value.issues] == [
        ("server", "workflow.groups[0].tasks[0]"),
        ("client", "workflow.groups[0].tasks[1]"),
        ("client", "workflow.groups[0].tasks[1]"),
    ]
