"""``osmo workflow validate --offline``: through the installed console script (subprocess) and,
for the whole invalid-file table, through the same entry point in-process."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from pathlib import Path

import pytest
from spec_helpers import INVALID, REPO, VALID, read_expected

from osmo.cli import main as cli_main
from osmo.spec import parse_workflow
from osmo.spec.localfiles import MAX_LOCAL_FILE_BYTES, inline_localpaths

OSMO = Path(sys.executable).parent / "osmo"


def osmo(*args: str | Path, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [str(OSMO), *map(str, args)], capture_output=True, text=True, timeout=60, cwd=cwd
    )
    assert "Traceback" not in result.stdout + result.stderr
    return result


def test_console_script_is_installed() -> None:
    assert OSMO.exists(), f"{OSMO} missing: pip install -e '.[test]' into this environment"


# ---- through the console script ------------------------------------------------------------


def test_valid_file_exits_0_with_a_summary() -> None:
    result = osmo("workflow", "validate", "--offline", REPO / "examples" / "hello.yaml")
    assert (result.returncode, result.stdout, result.stderr) == (
        0,
        "valid: workflow hello-osmo: 1 group, 1 task\n",
        "",
    )


def test_summary_counts_groups_and_tasks() -> None:
    result = osmo("workflow", "validate", "--offline", VALID / "groups.yaml")
    assert result.stdout == "valid: workflow serve-and-test: 3 groups, 5 tasks\n"


def test_json_output() -> None:
    result = osmo("workflow", "validate", "--offline", "-t", "json", VALID / "groups.yaml")
    assert result.returncode == 0
    assert json.loads(result.stdout) == {
        "valid": True,
        "name": "serve-and-test",
        "groups": 3,
        "tasks": 5,
    }


def test_invalid_file_exits_1_with_every_error_on_stderr() -> None:
    path = INVALID / "several_errors.yaml"
    result = osmo("workflow", "validate", "--offline", path)
    assert result.returncode == 1
    assert result.stdout == ""
    expected = [f"{path}:{line}" for line in read_expected(path.with_suffix(".expected"))]
    assert result.stderr.splitlines() == expected
    assert len(expected) == 8


def test_error_lines_use_the_path_as_given(tmp_path: Path) -> None:
    (tmp_path / "wf.yaml").write_text("workflow:\n  name: x\n  tasks: []\n")
    result = osmo("workflow", "validate", "--offline", "wf.yaml", cwd=tmp_path)
    assert (result.returncode, result.stderr) == (
        1,
        "wf.yaml:3:10: workflow tasks must not be empty\n",
    )


def test_set_and_set_string() -> None:
    path = REPO / "examples" / "fanout.yaml"
    result = osmo("workflow", "validate", "--offline", path, "--set", "n=7")
    assert result.stdout == "valid: workflow fanout: 8 groups, 8 tasks\n"
    # A string cannot be a range bound: --set-string n=7 is an error located at the loop.
    result = osmo("workflow", "validate", "--offline", path, "--set-string", "n=7")
    assert result.returncode == 1
    assert result.stderr == (
        f"{path}:10:1: template error: 'str' object cannot be interpreted as an integer\n"
    )


def test_bad_set_item() -> None:
    path = REPO / "examples" / "fanout.yaml"
    result = osmo("workflow", "validate", "--offline", path, "--set", "n")
    assert (result.returncode, result.stderr) == (
        1,
        f"{path}: --set expects KEY=VALUE, got 'n'\n",
    )


def test_render_prints_the_rendered_yaml() -> None:
    path = REPO / "examples" / "fanout.yaml"
    result = osmo("workflow", "validate", "--offline", "--render", path, "--set", "n=2")
    assert result.returncode == 0
    # default-values is blanked so line numbers stay the same; comments are kept.
    assert result.stdout == (
        "# Fan out N shards with a Jinja loop, then gather their outputs in one task.\n"
        "#   osmo workflow validate --offline examples/fanout.yaml --set n=8\n"
        "#   osmo workflow validate --offline --render examples/fanout.yaml --set n=8\n"
        "\n\n\n"
        "workflow:\n"
        "  name: fanout\n"
        "  tasks:\n"
        "  - name: shard-0\n"
        "    image: ubuntu:24.04\n"
        "    command: [bash, -c]\n"
        '    args: ["echo shard 0 of 2 > {{output}}/shard.txt"]\n'
        "  - name: shard-1\n"
        "    image: ubuntu:24.04\n"
        "    command: [bash, -c]\n"
        '    args: ["echo shard 1 of 2 > {{output}}/shard.txt"]\n'
        "  - name: gather\n"
        "    image: ubuntu:24.04\n"
        "    command: [bash, -c]\n"
        '    args: ["cat /osmo/data/input/*/shard.txt > {{output}}/all.txt"]\n'
        "    inputs:\n"
        "    - task: shard-0\n"
        "    - task: shard-1\n"
    )
    assert result.stderr == ""


def test_render_reports_template_errors() -> None:
    path = INVALID / "template_unsafe.yaml"
    result = osmo("workflow", "validate", "--offline", "--render", path)
    assert result.returncode == 1
    assert result.stderr == f"{path}:{read_expected(path.with_suffix('.expected'))[0]}\n"


def test_missing_file(tmp_path: Path) -> None:
    result = osmo("workflow", "validate", "--offline", tmp_path / "nope.yaml")
    assert (result.returncode, result.stdout, result.stderr) == (
        1,
        "",
        f"{tmp_path / 'nope.yaml'}: no such file\n",
    )


def test_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "binary.yaml"
    path.write_bytes(b"\xff\xfe\x00workflow")
    result = osmo("workflow", "validate", "--offline", path)
    assert (result.returncode, result.stderr) == (1, f"{path}: not a UTF-8 text file\n")


def test_directory_is_a_usage_error(tmp_path: Path) -> None:
    result = osmo("workflow", "validate", "--offline", tmp_path)
    assert result.returncode == 2
    assert "is a directory" in result.stderr


@pytest.mark.parametrize(
    "text",
    [
        "",
        "\x00\x01",
        "workflow: !!python/object/apply:os.system [echo hacked]\n",
        "a: &a [*a]\nworkflow: *a\n",
        "workflow:\n  name: {{ x.__class__ }}\n",
        "workflow:\n  name: {{ 'x' * 10**9 }}\n",
        "workflow:\n  tasks: [{name: a, image: x, command: [x], exitActions: {FAIL: "
        + "9" * 5000
        + "}}]\n",
    ],
    ids=["empty", "control", "python-tag", "recursive-alias", "unsafe", "huge", "digits"],
)
def test_hostile_files_get_errors_not_tracebacks(tmp_path: Path, text: str) -> None:
    path = tmp_path / "hostile.yaml"
    path.write_text(text, encoding="utf-8")
    result = osmo("workflow", "validate", "--offline", path)
    assert result.returncode == 1
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert lines and all(line.startswith(f"{path}:") for line in lines)


# ---- localpath -----------------------------------------------------------------------------

LOCALPATH_SPEC = """\
workflow:
  name: local-files
  tasks:
  - name: a
    image: ubuntu:24.04
    command: [bash, /tmp/run.sh]
    files:
    - path: /tmp/run.sh
      localpath: scripts/run.sh
    - path: /tmp/blob.bin
      localpath: blob.bin
    - path: /tmp/encoded.txt
      localpath: scripts/run.sh
      base64: true
"""


def write_localpath_tree(root: Path) -> Path:
    (root / "scripts").mkdir()
    (root / "scripts" / "run.sh").write_text("#!/bin/bash\necho from a local file\n")
    (root / "blob.bin").write_bytes(b"\x00\xff\x10binary")
    spec = root / "wf.yaml"
    spec.write_text(LOCALPATH_SPEC)
    return spec


def test_localpath_files_next_to_the_spec_are_inlined(tmp_path: Path) -> None:
    spec_path = write_localpath_tree(tmp_path)
    result = osmo("workflow", "validate", "--offline", spec_path)
    assert (result.returncode, result.stdout) == (
        0,
        "valid: workflow local-files: 1 group, 1 task\n",
    )
    # What the CLI does before submitting: read each localpath into contents.
    spec = parse_workflow(LOCALPATH_SPEC).spec
    assert inline_localpaths(spec, tmp_path, LOCALPATH_SPEC) == []
    run, blob, encoded = spec.tasks[0].files
    assert (run.contents, run.localpath, run.base64) == (
        "#!/bin/bash\necho from a local file\n",
        None,
        False,
    )
    # Binary content that is not UTF-8 is sent base64-encoded.
    assert blob.base64 is True
    assert base64.b64decode(blob.contents or "") == b"\x00\xff\x10binary"
    assert encoded.base64 is True
    assert base64.b64decode(encoded.contents or "") == b"#!/bin/bash\necho from a local file\n"


def test_missing_localpath_is_a_located_error(tmp_path: Path) -> None:
    spec_path = tmp_path / "wf.yaml"
    spec_path.write_text(LOCALPATH_SPEC.replace("localpath: blob.bin", "localpath: missing.bin"))
    (tmp_path / "scripts").mkdir()
    (tmp_path / "scripts" / "run.sh").write_text("echo\n")
    result = osmo("workflow", "validate", "--offline", spec_path)
    assert result.returncode == 1
    assert result.stderr == (
        f"{spec_path}:11:7: task 'a': localpath 'missing.bin' does not exist "
        f"(looked in {tmp_path / 'missing.bin'})\n"
    )


def test_localpath_that_is_a_directory_or_too_big(tmp_path: Path) -> None:
    (tmp_path / "scripts").mkdir()
    (tmp_path / "scripts" / "run.sh").write_bytes(b"x" * (MAX_LOCAL_FILE_BYTES + 1))
    (tmp_path / "blob.bin").mkdir()
    spec = parse_workflow(LOCALPATH_SPEC).spec
    issues = inline_localpaths(spec, tmp_path, LOCALPATH_SPEC)
    assert [(i.line, i.column, i.message) for i in issues] == [
        (
            9,
            7,
            f"task 'a': localpath 'scripts/run.sh' is {MAX_LOCAL_FILE_BYTES + 1} bytes; "
            f"at most {MAX_LOCAL_FILE_BYTES} can be injected",
        ),
        (11, 7, "task 'a': localpath 'blob.bin' is not a file"),
        (
            13,
            7,
            f"task 'a': localpath 'scripts/run.sh' is {MAX_LOCAL_FILE_BYTES + 1} bytes; "
            f"at most {MAX_LOCAL_FILE_BYTES} can be injected",
        ),
    ]


# ---- the whole invalid table through the entry point, in-process ---------------------------


def run_main(args: list[str], monkeypatch: pytest.MonkeyPatch) -> int:
    monkeypatch.setattr(sys, "argv", ["osmo", *args])
    with pytest.raises(SystemExit) as info:
        cli_main.main()
        raise SystemExit(0)
    return int(info.value.code or 0)


@pytest.mark.parametrize(
    "name",
    sorted(p.name for p in INVALID.glob("*.yaml") if p.name != "set_value_bad_unit.yaml"),
    ids=lambda n: n.removesuffix(".yaml"),
)
def test_every_invalid_file_through_the_cli(
    name: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    path = INVALID / name
    assert run_main(["workflow", "validate", "--offline", str(path)], monkeypatch) == 1
    out, err = capsys.readouterr()
    assert out == ""
    expected = read_expected(path.with_suffix(".expected"))
    assert err.splitlines() == [
        f"{path}:{line}" if line[0].isdigit() else f"{path}: {line}" for line in expected
    ]


def test_set_value_file_through_the_cli(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    path = INVALID / "set_value_bad_unit.yaml"
    args = ["workflow", "validate", "--offline", str(path)]
    assert run_main([*args, "--set", "memory=16GB"], monkeypatch) == 1
    assert capsys.readouterr().err == (
        f"{path}:{read_expected(path.with_suffix('.expected'))[0]}\n"
    )
    assert run_main([*args, "--set", "memory=16Gi"], monkeypatch) == 0
    assert capsys.readouterr().out == "valid: workflow set-values: 1 group, 1 task\n"
