"""YAML corners: merge keys, tags, odd scalars, characters YAML refuses, positions."""

from __future__ import annotations

import pytest

from osmo.spec import SpecError, parse_workflow

TASK = "  tasks: [{name: a, image: x, command: [echo]}]\n"


def errors(text: str) -> list[str]:
    with pytest.raises(SpecError) as info:
        parse_workflow(text)
    return [issue.format("f") for issue in info.value.issues]


# ---- merge keys ----------------------------------------------------------------------------


def test_written_keys_override_merged_ones() -> None:
    text = (
        "workflow:\n"
        "  name: merge\n"
        "  tasks:\n"
        "  - &base {name: a, image: ubuntu, command: [echo, a], args: [x]}\n"
        "  - <<: *base\n"
        "    name: b\n"
        "    args: [y]\n"
    )
    b = parse_workflow(text).spec.tasks[1]
    assert (b.name, b.image, b.command, b.args) == ("b", "ubuntu", ["echo", "a"], ["y"])


def test_first_of_several_merged_mappings_wins() -> None:
    text = (
        "workflow:\n"
        "  name: merge\n"
        "  tasks:\n"
        "  - &one {name: a, image: one, command: [one]}\n"
        "  - &two {name: b, image: two, command: [two], args: [two]}\n"
        "  - <<: [*one, *two]\n"
        "    name: c\n"
    )
    c = parse_workflow(text).spec.tasks[2]
    assert (c.image, c.command, c.args) == ("one", ["one"], ["two"])


def test_merge_does_not_change_the_anchored_mapping() -> None:
    text = (
        "workflow:\n"
        "  name: merge\n"
        "  tasks:\n"
        "  - &base\n"
        "    <<: {image: from-merge, command: [echo]}\n"
        "    name: a\n"
        "  - <<: *base\n"
        "    name: b\n"
        "  - <<: *base\n"
        "    name: c\n"
    )
    assert [(t.name, t.image) for t in parse_workflow(text).spec.tasks] == [
        ("a", "from-merge"),
        ("b", "from-merge"),
        ("c", "from-merge"),
    ]


def test_duplicate_written_keys_are_still_reported_next_to_a_merge() -> None:
    text = (
        "workflow:\n"
        "  name: merge\n"
        "  tasks:\n"
        "  - &base {name: a, image: x, command: [echo]}\n"
        "  - <<: *base\n"
        "    name: b\n"
        "    name: c\n"
    )
    assert errors(text) == ["f:7:5: duplicate key 'name' in task 'b'"]


def test_merging_something_that_is_not_a_mapping() -> None:
    text = (
        "workflow:\n  name: m\n  tasks:\n  - <<: [1, 2]\n    name: a\n    image: x\n"
        "    command: [x]\n"
    )
    assert errors(text) == [
        "f:4:5: unknown key '<<' in task 'a'; allowed: name, image, command, args, lead, "
        "environment, files, inputs, outputs, credentials, resource, volumeMounts, exitActions, "
        "checkpoint, privileged, hostNetwork, kpis, downloadType, cacheSize"
    ]


def test_a_mapping_merging_itself_terminates() -> None:
    text = "workflow:\n  name: m\n  tasks:\n  - &t\n    <<: *t\n    name: a\n"
    assert errors(text) == [
        "f:4:5: missing required key 'image' in task 'a'",
        "f:4:5: missing required key 'command' in task 'a'",
    ]


def test_merged_labels() -> None:
    text = "workflow:\n  name: m\n  labels: {<<: {team: a, site: b}, site: c}\n" + TASK
    assert parse_workflow(text).spec.labels == {"team": "a", "site": "c"}


# ---- tags and odd scalars ------------------------------------------------------------------


def test_non_core_tags_are_read_as_their_text_and_never_constructed() -> None:
    text = (
        "workflow:\n"
        "  name: !!python/object/apply:os.system x\n"
        "  tasks:\n"
        "  - name: a\n"
        "    image: 2001-12-14\n"
        "    command: [!custom echo, !!binary aGk=]\n"
    )
    spec = parse_workflow(text).spec
    assert spec.name == "x"
    assert spec.tasks[0].image == "2001-12-14"
    assert spec.tasks[0].command == ["echo", "aGk="]


def test_integers_too_long_to_convert_are_errors_not_crashes() -> None:
    digits = "9" * 5000
    text = (
        f"workflow:\n  name: n\n  resources: {{default: {{cpu: {digits}}}}}\n"
        "  tasks: [{name: a, image: x, command: [x], exitActions: {FAIL: 1}}]\n"
    )
    assert errors(text) == [
        f"f:3:30: resource 'default' cpu must be a whole number, got a string ({digits!r})"
    ]


def test_unicode_digits_are_not_numbers() -> None:
    text = (
        "workflow:\n  name: n\n"
        "  tasks: [{name: a, image: x, command: ['{{input:²}}'], exitActions: {FAIL: '²'}}]\n"
    )
    assert errors(text) == [
        "f:3:77: exit codes for FAIL: invalid exit code '²'; expected a number or START-END"
    ]


def test_non_string_keys_get_clear_messages() -> None:
    text = (
        "workflow:\n"
        "  name: k\n"
        "  resources: {default: {}, [x]: {}}\n"
        "  tasks: [{name: a, image: x, command: [x], exitActions: {[1]: 0}, "
        "credentials: {[a]: c}}]\n"
    )
    assert errors(text) == [
        "f:3:28: resource names must be strings",
        "f:4:59: exitActions keys must be COMPLETE, FAIL or RESCHEDULE",
        "f:4:82: credential names must be strings",
    ]


def test_bad_version_names_the_kind_of_value() -> None:
    assert errors("version: [2]\nworkflow:\n  name: v\n" + TASK) == [
        "f:1:10: unsupported spec version a list; only version 2 is supported"
    ]
    assert errors("version: 3\nworkflow:\n  name: v\n" + TASK) == [
        "f:1:10: unsupported spec version 3; only version 2 is supported"
    ]
    assert parse_workflow("version: '2'\nworkflow:\n  name: v\n" + TASK).spec.version == 2


# ---- characters YAML refuses, and positions ------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "workflow:\n  name: x\x07\n",
            "f:2:10: YAML syntax error: unacceptable character #x0007: control characters are "
            "not allowed",
        ),
        (
            # Columns count characters, not bytes of the UTF-8 encoding.
            "workflow:\n  name: ééé\x07\n",
            "f:2:12: YAML syntax error: unacceptable character #x0007: control characters are "
            "not allowed",
        ),
        (
            "workflow:\n  name: x\ud800\n",
            "f:2:10: the spec is not valid Unicode text: surrogates not allowed",
        ),
        (
            "workflow:\n\tname: x\n",
            "f:2:1: YAML syntax error: found character that cannot start any token "
            "(while scanning for the next token at line 2, column 1)",
        ),
        (
            "workflow:\n  name: ééé: x\n",
            "f:2:12: YAML syntax error: mapping values are not allowed in this context",
        ),
        (
            "workflow:\n  name: x\n---\nother: y\n",
            "f:3:1: YAML syntax error: expected a single document in the stream, "
            "but found another document",
        ),
    ],
    ids=["control", "control-after-utf8", "surrogate", "tab", "colon", "two-documents"],
)
def test_yaml_problems_are_located(text: str, expected: str) -> None:
    assert errors(text) == [expected]


def test_issue_at_the_end_of_the_file_stays_inside_the_file() -> None:
    messages = errors("workflow:\n  name: x\n  tasks:\n")
    assert messages == ["f:3:9: workflow tasks must not be empty"]


def test_multiline_messages_are_printed_on_one_line() -> None:
    from osmo.spec import SpecIssue

    issue = SpecIssue("first\nsecond", line=2, column=3)
    assert issue.format("f") == "f:2:3: first second"
    assert issue.to_dict()["message"] == "first\nsecond"
