"""Property tests: random mutations of valid files never crash the parser.

``parse_workflow`` either returns a result (a consistent model) or raises ``SpecError`` whose
issues all have a message that fits on one line and, where a line is given, a line that
exists in the file.
"""

from __future__ import annotations

import sys

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from spec_helpers import REPO, VALID

from osmo.spec import SpecError, SpecIssue, parse_workflow

SEEDS = sorted(VALID.glob("*.yaml")) + sorted((REPO / "examples").glob("*.yaml"))
SEED_TEXTS = [p.read_text(encoding="utf-8") for p in SEEDS]

FUZZ = settings(
    max_examples=250,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def check(text: str) -> None:
    """The property every input must satisfy."""
    try:
        result = parse_workflow(text, max_render_seconds=1.0)
    except SpecError as exc:
        assert exc.issues, "SpecError without issues"
        n_lines = len(text.splitlines())
        for issue in exc.issues:
            assert issue.message.strip(), issue
            assert "\n" not in issue.format("f"), issue
            if issue.line is not None:
                assert 1 <= issue.line <= max(n_lines, 1), (issue, n_lines)
                assert issue.column is not None and issue.column >= 1, issue
        return
    spec = result.spec
    assert spec.groups
    seen: set[str] = set()
    for group in spec.groups:
        assert sum(task.lead for task in group.tasks) == 1, group.name
        assert set(group.upstream) <= seen, group.name  # topological order
        seen.add(group.name)


# ---- mutations -----------------------------------------------------------------------------

scalars = st.one_of(
    st.text(max_size=30),
    st.integers(min_value=-(10**30), max_value=10**30).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.sampled_from(
        [
            "",
            "~",
            "null",
            "true",
            "no",
            "[]",
            "{}",
            "[a, 1, {b: 2}]",
            "{x: [1, 2]}",
            "16GB",
            "1.5Gi",
            "1h30m",
            "-1",
            "0x1F",
            "2001-12-14",
            "!!binary aGVsbG8=",
            "!!python/object:os.system x",
            "*anchor",
            "&a x",
            "'{{ x }}'",
            "{{ ''.__class__ }}",
            "{% for i in range(3) %}",
            "{% endfor %}",
            "{{input:7}}",
            "{{host:nowhere}}",
            "'<<'",
            "9" * 5000,
            "²",
            "|",
            ">-",
        ]
    ),
)

keys = st.one_of(
    st.sampled_from(
        [
            "name",
            "tasks",
            "groups",
            "image",
            "command",
            "args",
            "lead",
            "inputs",
            "outputs",
            "task",
            "url",
            "dataset",
            "resource",
            "resources",
            "exitActions",
            "COMPLETE",
            "timeout",
            "exec_timeout",
            "files",
            "path",
            "contents",
            "localpath",
            "base64",
            "barrier",
            "memory",
            "cpu",
            "default-values",
            "workflow",
            "version",
            "<<",
            "? complex",
        ]
    ),
    st.text(min_size=1, max_size=12),
)


@st.composite
def mutated(draw: st.DrawFn) -> str:
    text = draw(st.sampled_from(SEED_TEXTS))
    lines = text.splitlines()
    for _ in range(draw(st.integers(min_value=1, max_value=4))):
        if not lines:
            lines = [""]
        i = draw(st.integers(min_value=0, max_value=len(lines) - 1))
        op = draw(
            st.sampled_from(
                ["delete", "duplicate", "swap", "indent", "dedent", "scalar", "key", "chars"]
            )
        )
        if op == "delete":
            del lines[i]
        elif op == "duplicate":
            lines.insert(i, lines[i])
        elif op == "swap":
            j = draw(st.integers(min_value=0, max_value=len(lines) - 1))
            lines[i], lines[j] = lines[j], lines[i]
        elif op == "indent":
            lines[i] = " " * draw(st.integers(min_value=1, max_value=6)) + lines[i]
        elif op == "dedent":
            lines[i] = lines[i][draw(st.integers(min_value=1, max_value=6)) :]
        elif op == "scalar":
            head, sep, _ = lines[i].partition(": ")
            if not sep:
                head, sep = lines[i].rstrip(), " "
            lines[i] = f"{head}{sep}{draw(scalars)}"
        elif op == "key":
            indent = " " * draw(st.integers(min_value=0, max_value=8))
            dash = draw(st.sampled_from(["", "- "]))
            lines.insert(i, f"{indent}{dash}{draw(keys)}: {draw(scalars)}")
        else:
            at = draw(st.integers(min_value=0, max_value=len(lines[i])))
            junk = draw(
                st.one_of(
                    st.text(max_size=8),
                    st.binary(max_size=8).map(lambda b: b.decode("latin-1")),
                    st.sampled_from(["{{", "}}", "{%", "%}", "\t", "\x00", "\ufeff", ":", "- "]),
                )
            )
            lines[i] = lines[i][:at] + junk + lines[i][at:]
    return "\n".join(lines) + draw(st.sampled_from(["\n", "", "\n\n"]))


@FUZZ
@given(mutated())
def test_mutated_valid_files_never_crash(text: str) -> None:
    check(text)


@FUZZ
@given(st.text(max_size=400))
def test_random_text_never_crashes(text: str) -> None:
    check(text)


@FUZZ
@given(st.binary(max_size=400))
def test_random_bytes_never_crash(data: bytes) -> None:
    check(data.decode("utf-8", errors="replace"))


@FUZZ
@given(st.sampled_from(SEED_TEXTS), st.integers(min_value=0), st.binary(min_size=1, max_size=16))
def test_random_bytes_spliced_into_valid_files_never_crash(
    text: str, position: int, junk: bytes
) -> None:
    at = position % (len(text) + 1)
    check(text[:at] + junk.decode("latin-1") + text[at:])


def test_seeds_are_valid() -> None:
    """The mutations start from files that parse, so they explore near-valid input."""
    assert len(SEEDS) >= 15
    for text in SEED_TEXTS:
        parse_workflow(text)


def test_the_property_can_fail(monkeypatch: pytest.MonkeyPatch) -> None:
    """A line past the end of the file violates the property."""

    def located_past_the_end(text: str, **_: object) -> None:
        raise SpecError([SpecIssue("x", line=3, column=1)])

    monkeypatch.setattr(sys.modules[__name__], "parse_workflow", located_past_the_end)
    with pytest.raises(AssertionError):
        check("a\nb\n")
