"""Datasets through the CLI: versions, dedup, tags, labels, and workflow dataset I/O."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from .platform import Platform, task

pytestmark = pytest.mark.e2e


def _files(root: Path, n: int, size: int = 10_000) -> None:
    (root / "sub").mkdir(parents=True)
    for i in range(n):
        (root / "sub" / f"f{i:03d}.bin").write_bytes(os.urandom(size))
    (root / "readme.txt").write_text("hello\n")


def test_versions_dedup_tags_labels(platform: Platform, tmp_path: Path) -> None:
    src = tmp_path / "src"
    _files(src, 100)
    first = json.loads(
        platform.osmo(
            "dataset", "upload", "frames:raw", f"{src}/", "--label", "team=robots", "-t", "json"
        ).stdout
    )
    assert (first["version"], first["files"], first["uploaded_files"]) == (1, 101, 101)
    (src / "sub" / "f000.bin").write_bytes(os.urandom(10_000))  # 1% of the files change
    second = json.loads(
        platform.osmo("dataset", "upload", "frames", f"{src}/", "-t", "json").stdout
    )
    assert (second["version"], second["uploaded_files"]) == (2, 1)
    assert second["uploaded_bytes"] == 10_000 and second["total_bytes"] > 1_000_000
    info = json.loads(platform.osmo("dataset", "info", "frames", "-t", "json").stdout)
    assert [(v["version"], v["tags"]) for v in info["versions"]] == [(1, ["raw"]), (2, [])]
    assert info["labels"] == {"team": "robots"}
    platform.osmo("dataset", "tag", "frames:2", "raw")  # tags move
    dest = tmp_path / "dest"
    out = platform.osmo("dataset", "download", "frames:raw", str(dest), "--regex", r"\.bin$").stdout
    assert "version 2" in out and "100 file(s)" in out
    assert (dest / "sub" / "f000.bin").read_bytes() == (src / "sub" / "f000.bin").read_bytes()
    assert not (dest / "readme.txt").exists()
    again = platform.osmo(
        "dataset", "download", "frames:raw", str(dest), "--regex", r"\.bin$"
    ).stdout
    assert "0 file(s)" in again and "100 already present" in again  # resumes, moves nothing
    assert "frames" in platform.osmo("dataset", "query", "--label", "team=robots").stdout
    assert "frames" not in platform.osmo("dataset", "query", "--label", "team=other").stdout
    versioned = platform.osmo("dataset", "upload", "frames:7", str(src), check=False)
    assert versioned.returncode == 1 and "numbered by the server" in versioned.stderr
    platform.osmo("dataset", "delete", "frames:1")
    gone = platform.osmo("dataset", "download", "frames:1", str(tmp_path / "x"), check=False)
    assert gone.returncode == 1 and "no version or tag '1'" in gone.stderr


def test_workflow_reads_and_writes_datasets(platform: Platform, tmp_path: Path) -> None:
    src = tmp_path / "src"
    _files(src, 5, 100)
    platform.osmo("dataset", "upload", "inputs-ds:v1", f"{src}/")
    path = tmp_path / "wf.yaml"
    path.write_text(
        """
workflow:
  name: ds-io
  tasks:
  - name: process
    image: alpine
    command: [sh, -c]
    args: ["ls {{input:0}}/sub | wc -l; cp -r {{input:0}}/sub {{output}}/copied; echo made > {{output}}/note.txt"]
    inputs:
    - dataset: {name: "inputs-ds:v1", regex: 'sub/'}
    outputs:
    - dataset: {name: "results:latest", metadata: {stage: "one"}, labels: {kind: derived}}
"""
    )
    wf = platform.wait(platform.submit(path), timeout=120)
    assert task(wf, "process")["status"] == "COMPLETED", wf
    assert platform.logs(wf["id"], "--task", "process").split()[0] == "5"
    info = json.loads(platform.osmo("dataset", "info", "results", "-t", "json").stdout)
    [v] = info["versions"]
    assert (v["files"], v["tags"], v["metadata"], v["source"]) == (
        6,
        ["latest"],
        {"stage": "one"},
        f"{wf['id']}/process",
    )
    assert info["labels"] == {"kind": "derived"}
    dest = tmp_path / "results"
    platform.osmo("dataset", "download", "results", str(dest))
    assert (dest / "note.txt").read_text() == "made\n"
    assert sorted(p.name for p in (dest / "copied").iterdir()) == sorted(
        p.name for p in (src / "sub").iterdir()
    )
    # A missing dataset is refused at submit.
    bad = tmp_path / "bad.yaml"
    bad.write_text(path.read_text().replace("inputs-ds:v1", "inputs-ds:v9"))
    out = platform.osmo("workflow", "submit", str(bad), check=False)
    assert out.returncode == 1 and "no version or tag 'v9'" in out.stderr
