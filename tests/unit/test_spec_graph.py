"""Group dependencies: derived from task inputs, checked, and ordered topologically."""

from __future__ import annotations

import pytest

from osmo.spec import GroupSpec, InputSpec, SpecError, TaskSpec, parse_workflow
from osmo.spec.graph import order_groups


def task(name: str, *inputs: str) -> TaskSpec:
    specs = []
    for ref in inputs:
        wf, sep, t = ref.rpartition(":")
        specs.append(InputSpec(kind="task", task=t, workflow_id=wf if sep else None))
    return TaskSpec(name=name, image="x", command=["x"], inputs=specs, lead=True)


def tasks(*declared: tuple[str, ...]) -> list[GroupSpec]:
    """Single-task groups, as a ``tasks:`` workflow declares them."""
    return [GroupSpec(name=f"{d[0]}-group", tasks=[task(*d)]) for d in declared]


def order(groups: list[GroupSpec], declared_as: str = "tasks") -> list[str]:
    problems, ordered = order_groups(groups, declared_as)
    assert problems == []
    return [g.name.removesuffix("-group") for g in ordered]


def test_independent_groups_keep_declaration_order() -> None:
    assert order(tasks(("c",), ("a",), ("b",))) == ["c", "a", "b"]


def test_a_file_written_upstream_first_comes_out_unchanged() -> None:
    assert order(tasks(("a",), ("b", "a"), ("c", "b"), ("d", "a"))) == ["a", "b", "c", "d"]


def test_inputs_may_name_tasks_declared_later() -> None:
    assert order(tasks(("c", "b"), ("b", "a"), ("a",))) == ["a", "b", "c"]


def test_ties_go_to_the_earliest_declared_ready_group() -> None:
    # x waits on z; y and z are ready first, and y was declared before z.
    assert order(tasks(("x", "z"), ("y",), ("z",))) == ["y", "z", "x"]
    # Once z is done, x (declared first) is ready before w (declared last).
    assert order(tasks(("x", "z"), ("z",), ("w",))) == ["z", "x", "w"]


def test_diamond() -> None:
    groups = tasks(("join", "left", "right"), ("right", "root"), ("left", "root"), ("root",))
    assert order(groups) == ["root", "right", "left", "join"]
    upstream = {g.name: g.upstream for g in groups}
    # Upstream lists are in declaration order, not input order.
    assert upstream == {
        "join-group": ["right-group", "left-group"],
        "right-group": ["root-group"],
        "left-group": ["root-group"],
        "root-group": [],
    }


def test_a_group_depends_on_the_union_of_its_tasks_inputs() -> None:
    groups = [
        GroupSpec(name="g", tasks=[task("lead", "a"), task("peer", "b")]),
        GroupSpec(name="a-group", tasks=[task("a")]),
        GroupSpec(name="b-group", tasks=[task("b")]),
    ]
    assert order(groups, "groups") == ["a", "b", "g"]
    assert groups[0].upstream == ["a-group", "b-group"]


def test_inputs_from_earlier_workflows_are_not_dependencies() -> None:
    groups = tasks(("a", "train-3:b"), ("b",))
    assert order(groups) == ["a", "b"]
    assert groups[0].upstream == []


def test_cycle_is_reported_with_its_path_in_data_flow_order() -> None:
    # a reads c, b reads a, c reads b: data flows a -> b -> c -> a.
    groups = tasks(("a", "c"), ("b", "a"), ("c", "b"), ("after", "a"), ("free",))
    problems, ordered = order_groups(groups, "tasks")
    assert problems == [("dependency cycle between tasks: a -> b -> c -> a", "a", None)]
    # Every group is still returned once: the acyclic ones first, then the rest.
    assert [g.name for g in ordered] == [
        "free-group",
        "a-group",
        "b-group",
        "c-group",
        "after-group",
    ]


def test_cycle_between_groups_uses_group_names() -> None:
    groups = [
        GroupSpec(name="first", tasks=[task("a", "b")]),
        GroupSpec(name="second", tasks=[task("b"), task("b2", "a")]),
    ]
    problems, _ = order_groups(groups, "groups")
    assert problems == [("dependency cycle between groups: first -> second -> first", "a", None)]


def test_two_node_cycle_found_from_a_node_outside_it() -> None:
    # 'x' waits on the cycle but is not part of it; the cycle reported is b <-> c.
    problems, _ = order_groups(tasks(("x", "b"), ("b", "c"), ("c", "b")), "tasks")
    assert problems == [("dependency cycle between tasks: b -> c -> b", "b", None)]


def test_self_unknown_and_same_group_inputs() -> None:
    groups = [
        GroupSpec(name="g", tasks=[task("lead", "helper"), task("helper")]),
        GroupSpec(name="h-group", tasks=[task("h", "h", "helpr", "nowhere")]),
    ]
    problems, _ = order_groups(groups, "groups")
    assert problems == [
        (
            "task 'lead' takes input from task 'helper' of its own group 'g'; tasks of a group "
            "start together, so put 'helper' in an earlier group",
            "lead",
            "helper",
        ),
        ("task 'h' lists itself as an input", "h", "h"),
        ("task 'h' has an input from unknown task 'helpr'; did you mean 'helper'?", "h", "helpr"),
        ("task 'h' has an input from unknown task 'nowhere'", "h", "nowhere"),
    ]


def test_cycle_error_through_the_parser_points_at_the_inputs() -> None:
    text = """\
workflow:
  name: cyc
  tasks:
  - name: a
    image: x
    command: [x]
    inputs: [{task: b}]
  - name: b
    image: x
    command: [x]
    inputs:
    - task: a
"""
    with pytest.raises(SpecError) as info:
        parse_workflow(text)
    assert [i.format("f") for i in info.value.issues] == [
        "f:7:13: dependency cycle between tasks: a -> b -> a"
    ]


def test_large_chain_declared_backwards_orders_quickly() -> None:
    n = 2000
    declared = [(f"t{i}", f"t{i - 1}") if i else ("t0",) for i in reversed(range(n))]
    assert order(tasks(*declared)) == [f"t{i}" for i in range(n)]
