from __future__ import annotations

import pytest
from pydantic import ValidationError

from osmo.runtime import TaskLaunch, TokenContext, TokenError, substitute

CTX = TokenContext(
    workflow_id="wf-3",
    output="/osmo/data/output",
    inputs=["/osmo/data/input/0", "/osmo/data/input/1"],
    input_names={"prep": 1},
    hosts={"server": "127.0.0.1"},
    uuid="abc123",
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("{{workflow_id}}", "wf-3"),
        ("out={{output}}/x", "out=/osmo/data/output/x"),
        ("{{ output }}", "/osmo/data/output"),
        ("{{input:0}} {{ input:1 }}", "/osmo/data/input/0 /osmo/data/input/1"),
        ("{{input:prep}}", "/osmo/data/input/1"),
        ("http://{{host:server}}:8000", "http://127.0.0.1:8000"),
        ("{{uuid}}", "abc123"),
        ("no tokens", "no tokens"),
        (
            "${{ github.ref }} {{other}} {{ x:y }} {{output",
            "${{ github.ref }} {{other}} {{ x:y }} {{output",
        ),
    ],
)
def test_substitute(text: str, expected: str) -> None:
    assert substitute(text, CTX) == expected


@pytest.mark.parametrize(
    ("text", "msg"),
    [
        ("{{input:2}}", "refers to input 2, but the task has 2 input"),
        ("{{input:nope}}", "not among the inputs"),
        ("{{host:nope}}", "not in the group"),
    ],
)
def test_unresolvable_tokens_raise(text: str, msg: str) -> None:
    with pytest.raises(TokenError, match=msg):
        substitute(text, CTX)


def _launch(**kw: object) -> TaskLaunch:
    return TaskLaunch.model_validate(
        {"workflow_id": "w-1", "group": "g", "task": "t", "command": ["true"], **kw}
    )


@pytest.mark.parametrize(
    ("path", "msg"),
    [
        ("rel/path", "must be absolute"),
        ("/a/../b", "must not contain '..'"),
        ("/osmo/x", "which the runtime owns"),
        ("/osmo/data/input/0/x", "which the runtime owns"),
        ("/proc/x", "which the runtime owns"),
        ("/dir/", "must name a file"),
    ],
)
def test_bad_file_paths_rejected(path: str, msg: str) -> None:
    with pytest.raises(ValidationError, match=msg):
        _launch(files=[{"path": path, "contents": ""}])


def test_launch_roundtrip_and_defaults() -> None:
    t = _launch(
        files=[{"path": "/osmo/data/output/seed.txt", "contents": "x"}],
        inputs=[{"url": "file:///d/w/t/", "name": "t"}],
    )
    assert TaskLaunch.model_validate_json(t.model_dump_json()) == t
    assert t.kill_grace_seconds == 5.0 and t.barrier is False and t.output_url is None
    with pytest.raises(ValidationError, match="given twice"):
        _launch(files=[{"path": "/a/b"}, {"path": "/a/b"}])
    with pytest.raises(ValidationError):
        _launch(command=[])
    with pytest.raises(ValidationError):
        _launch(unknown_field=1)
