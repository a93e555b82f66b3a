"""Rendering: the Jinja sandbox, its time and size bounds, variables and special tokens."""

from __future__ import annotations

import signal
import threading
import time
from typing import Any

import pytest

from osmo.spec import SpecError, parse_set_values, parse_workflow, render
from osmo.spec.template import MAX_OUTPUT_CHARS


def task_file(command: str, *, before: str = "") -> str:
    """A one-task workflow whose command (line 7) is ``command``."""
    return (
        f"{before}"
        "workflow:\n"
        "  name: t\n"
        "  tasks:\n"
        "  - name: a\n"
        "    image: ubuntu:24.04\n"
        "    # the command is on the next line\n"
        f"    command: [echo, {command}]\n"
    )


def errors(text: str, **kwargs: Any) -> list[str]:
    with pytest.raises(SpecError) as info:
        parse_workflow(text, **kwargs)
    return [issue.format("f") for issue in info.value.issues]


# ---- sandbox -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expression", "column", "message"),
    [
        (
            "\"{{ ''.__class__ }}\"",
            28,
            "access to attribute '__class__' of 'str' object is unsafe.",
        ),
        (
            '"{{ cycler.__init__.__globals__ }}"',
            32,
            "access to attribute '__init__' of 'type' object is unsafe.",
        ),
        (
            "\"{{ ''.__class__.__mro__[1].__subclasses__() }}\"",
            28,
            "access to attribute '__class__' of 'str' object is unsafe.",
        ),
        (
            '"{{ lipsum.__globals__ }}"',
            32,
            "access to attribute '__globals__' of 'function' object is unsafe.",
        ),
        (
            '"{{ range.__globals__ }}"',
            31,
            "access to attribute '__globals__' of 'function' object is unsafe.",
        ),
        (
            "\"{{ '{0.__class__}'.format('') }}\"",
            29,
            "access to attribute '__class__' of 'str' object is unsafe.",
        ),
    ],
)
def test_sandbox_escapes_are_rejected_with_a_location(
    expression: str, column: int, message: str
) -> None:
    assert errors(task_file(expression)) == [f"f:7:{column}: unsafe template construct: {message}"]


def test_sandbox_blocks_escape_inside_a_loop_and_reports_its_line() -> None:
    text = task_file('"ok"', before="") + (
        "  - name: b\n"
        "    image: x\n"
        "{% for c in [cycler] %}\n"
        '    command: ["{{ c.__init__ }}"]\n'
        "{% endfor %}\n"
    )
    assert errors(text) == [
        "f:11:21: unsafe template construct: access to attribute '__init__' of 'type' object "
        "is unsafe."
    ]


def test_safe_jinja_still_works() -> None:
    text = task_file(
        "\"{{ 'a,b' | replace(',', ' ') | upper }}-{{ [3, 1, 2] | sort | join('') }}\""
    )
    assert parse_workflow(text).spec.tasks[0].command == ["echo", "A B-123"]


# ---- time and size bounds ------------------------------------------------------------------

FOREVER = '"{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}"'
FOREVER_NO_CALLS = (
    '"{% set l = range(100000) | list %}{% for i in l %}{% for j in l %}{% endfor %}{% endfor %}"'
)


def test_render_that_runs_forever_stops_within_a_few_seconds() -> None:
    started = time.monotonic()
    assert errors(task_file(FOREVER)) == ["f:7:22: template rendering took longer than 2s"]
    assert time.monotonic() - started < 5


@pytest.mark.parametrize("template", [FOREVER, FOREVER_NO_CALLS])
def test_render_time_bound_holds_outside_the_main_thread(template: str) -> None:
    """Signals only reach the main thread; a server rendering in a worker thread is bounded too."""
    outcome: list[Any] = []

    def run() -> None:
        try:
            parse_workflow(task_file(template), max_render_seconds=0.5)
            outcome.append("rendered")
        except SpecError as exc:
            outcome.append(exc.issues[0].message)

    started = time.monotonic()
    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    worker.join(10)
    assert outcome == ["template rendering took longer than 0.5s"]
    assert time.monotonic() - started < 5


def test_a_timer_armed_before_rendering_is_re_armed_afterwards() -> None:
    """A caller's own SIGALRM timer (pytest-timeout uses one) survives a render."""
    fired: list[int] = []
    previous = signal.signal(signal.SIGALRM, lambda signum, frame: fired.append(signum))
    try:
        signal.setitimer(signal.ITIMER_REAL, 0.8)
        parse_workflow(task_file('"{{ 1 + 1 }}"'))
        delay, _ = signal.getitimer(signal.ITIMER_REAL)
        assert 0 < delay <= 0.8
        time.sleep(1.0)
        assert fired == [signal.SIGALRM]
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def test_huge_output_in_one_expression_is_rejected() -> None:
    started = time.monotonic()
    assert errors(task_file("\"{{ 'x' * 10**9 }}\"")) == [
        "f:7:22: unsafe template construct: repetition result is too large"
    ]
    assert time.monotonic() - started < 2


def test_huge_output_from_a_loop_is_rejected() -> None:
    # 100 x 100,000 x 3,000 characters: far more than MAX_OUTPUT_CHARS, built up chunk by chunk.
    chunk = "x" * 3000
    template = (
        '"{% for i in range(100) %}{% for j in range(100000) %}'
        + chunk
        + '{% endfor %}{% endfor %}"'
    )
    messages = errors(task_file(template), max_render_seconds=30)
    assert messages == [f"f: rendered spec exceeds {MAX_OUTPUT_CHARS} characters"]


NESTED = (
    "{% set l = range(100000) | list %}{% set m = [l, l, l, l, l, l, l, l, l, l] %}"
    "{% set n = [m, m, m, m, m, m, m, m, m, m] %}{% set o = [n, n, n, n, n, n, n, n, n, n] %}"
)
TOO_LARGE = (
    f"unsafe template construct: value is too large to render (more than {MAX_OUTPUT_CHARS} "
    "characters)"
)


@pytest.mark.parametrize(
    "expression",
    [
        "{{ o }}",
        "{{ o | join(',') }}",
        "{{ o | string }}",
        "{{ o | tojson }}",
        "{{ o ~ '' }}",
        "{{ '{}'.format(o) }}",
        "{{ '{x}'.format(x=o) }}",
        "{{ '%s' % (o,) }}",
    ],
)
def test_values_too_large_to_render_are_refused_before_conversion(expression: str) -> None:
    """Nested references render to gigabytes in C code no time bound can interrupt."""
    started = time.monotonic()
    assert errors(task_file(f"'{NESTED}{expression}'")) == [f"f:7:22: {TOO_LARGE}"]
    assert time.monotonic() - started < 3


def test_repetition_counts_nested_sizes() -> None:
    assert errors(task_file('"{{ [range(100000) | list] * 300 }}"')) == [
        "f:7:22: unsafe template construct: repetition result is too large"
    ]


def test_yaml_alias_bomb_in_default_values_is_refused() -> None:
    levels = ["  a: &a [" + ", ".join(["xxxxxxxxxx"] * 10) + "]"]
    for prev, name in zip("abcdefgh", "bcdefghi", strict=True):
        levels.append(f"  {name}: &{name} [" + ", ".join([f"*{prev}"] * 10) + "]")
    text = "default-values:\n" + "\n".join(levels) + "\nworkflow:\n  name: '{{ i }}'\n"
    started = time.monotonic()
    assert errors(text) == [
        f"f:1:1: default-values are too large once YAML aliases are expanded (more than "
        f"{MAX_OUTPUT_CHARS} characters), or refer to themselves"
    ]
    assert time.monotonic() - started < 2


def test_self_referencing_default_values_are_refused() -> None:
    text = "default-values:\n  a: &a [1, *a]\nworkflow:\n  name: x\n"
    assert errors(text) == [
        f"f:1:1: default-values are too large once YAML aliases are expanded (more than "
        f"{MAX_OUTPUT_CHARS} characters), or refer to themselves"
    ]


def test_small_aliased_default_values_are_fine() -> None:
    text = (
        "default-values:\n"
        "  base: &base {image: ubuntu, tags: [a, b]}\n"
        "  copy: *base\n" + task_file("'{{ copy.image }}-{{ base.tags | join(\"+\") }}'")
    )
    assert parse_workflow(text).spec.tasks[0].command == ["echo", "ubuntu-a+b"]


def test_huge_exponent_and_range_are_rejected() -> None:
    assert errors(task_file('"{{ 10 ** 100000 }}"')) == [
        "f:7:22: unsafe template construct: exponent is too large"
    ]
    assert errors(task_file('"{{ ((10 ** 1000) ** 1000) ** 1000 }}"')) == [
        "f:7:22: unsafe template construct: exponent is too large"
    ]
    assert parse_workflow(task_file('"{{ 2 ** 10 }}"')).spec.tasks[0].command == ["echo", "1024"]
    assert errors(task_file('"{{ range(10**7) | list }}"')) == [
        "f:7:22: template error: Range too big. The sandbox blocks ranges larger than "
        "MAX_RANGE (100000)."
    ]


# ---- variables -----------------------------------------------------------------------------


def test_set_casts_int_then_float_else_string() -> None:
    values = parse_set_values(
        ["n=3", "neg=-2", "ratio=0.5", "exp=1e-4", "name=run 7", "ver=1.2.3", "empty=", "eq=a=b"],
        as_string=False,
        flag="--set",
    )
    assert values == {
        "n": 3,
        "neg": -2,
        "ratio": 0.5,
        "exp": 1e-4,
        "name": "run 7",
        "ver": "1.2.3",
        "empty": "",
        "eq": "a=b",
    }
    assert type(values["n"]) is int and type(values["ratio"]) is float


def test_set_string_keeps_text() -> None:
    assert parse_set_values(["n=3", "lr=1e-4", "id=007"], as_string=True, flag="--set-string") == {
        "n": "3",
        "lr": "1e-4",
        "id": "007",
    }


def test_set_with_too_many_digits_stays_a_string() -> None:
    digits = "9" * 5000
    assert parse_set_values([f"n={digits}"], as_string=False, flag="--set") == {"n": digits}


def test_set_rejects_items_without_a_key() -> None:
    with pytest.raises(SpecError) as info:
        parse_set_values(["novalue", "=3", "ok=1"], as_string=False, flag="--set")
    assert [i.message for i in info.value.issues] == [
        "--set expects KEY=VALUE, got 'novalue'",
        "--set expects KEY=VALUE, got '=3'",
    ]


LOOP = """\
default-values:
  n: 2
  scale: 1.5
  tag: latest
workflow:
  name: loop
  tasks:
{%- for i in range(n) %}
  - name: t{{ i }}
    image: ubuntu:{{ tag }}
    command: [echo, "{{ i * scale }}", "{{ n }}"]
{%- endfor %}
"""


def test_set_overrides_default_values_with_cast_types() -> None:
    spec = parse_workflow(LOOP, {"n": 3, "scale": 2}, {"tag": "24.04"}).spec
    assert [t.name for t in spec.tasks] == ["t0", "t1", "t2"]
    assert [t.command for t in spec.tasks] == [["echo", str(i * 2), "3"] for i in range(3)]
    assert {t.image for t in spec.tasks} == {"ubuntu:24.04"}
    # The float default makes i * scale a float; an int --set makes it an int.
    assert parse_workflow(LOOP).spec.tasks[1].command == ["echo", "1.5", "2"]


def test_set_string_number_is_not_a_number_in_jinja() -> None:
    text = task_file('"{{ n + 1 }}"', before="default-values:\n  n: 1\n")
    assert parse_workflow(text, {"n": 41}).spec.tasks[0].command == [
        "echo",
        "42",
    ]
    assert errors(text, set_string_values={"n": "41"}) == [
        'f:9:22: template error: can only concatenate str (not "int") to str'
    ]


def test_set_string_wins_over_set_and_default() -> None:
    text = task_file('"{{ v }}"', before="default-values:\n  v: default\n")
    spec = parse_workflow(text, {"v": 1}, {"v": "string"}).spec
    assert spec.tasks[0].command == ["echo", "string"]


def test_undefined_variables_are_all_reported_with_their_line() -> None:
    text = (
        "workflow:\n"
        "  name: {{ run }}\n"
        "  tasks:\n"
        "  - name: a\n"
        "    image: {{ image }}\n"
        "    command: [echo, '{{ alpha }}', '{{ run }}']\n"
        "{% if beta %}\n"
        "    args: [x]\n"
        "{% endif %}\n"
    )
    assert errors(text) == [
        "f:2:12: undefined template variable 'run': set it in default-values or with "
        "--set run=VALUE",
        "f:5:15: undefined template variable 'image': set it in default-values or with "
        "--set image=VALUE",
        "f:6:25: undefined template variable 'alpha': set it in default-values or with "
        "--set alpha=VALUE",
        "f:7:7: undefined template variable 'beta': set it in default-values or with "
        "--set beta=VALUE",
    ]
    # Supplying them makes the file valid.
    spec = parse_workflow(text, {"run": "r", "image": "ubuntu", "alpha": 1, "beta": 0}).spec
    assert spec.name == "r" and spec.tasks[0].command == ["echo", "1", "r"]
    assert spec.tasks[0].args == []


def test_guarded_variables_are_not_required() -> None:
    text = task_file(
        "\"{% if seed is defined %}--seed={{ seed }}{% endif %}{{ note | default('-') }}\""
    )
    assert parse_workflow(text).spec.tasks[0].command == ["echo", "-"]
    assert parse_workflow(text, {"seed": 7, "note": "!"}).spec.tasks[0].command == [
        "echo",
        "--seed=7!",
    ]


def test_guarded_variable_used_unguarded_is_reported_at_render_time() -> None:
    text = task_file('"{{ x | default(1) }}"') + "    args: ['{{ x }}']\n"
    assert errors(text) == ["f:8:13: undefined template value: 'x' is undefined"]


def test_undefined_attribute_is_reported_at_its_line() -> None:
    text = task_file('"{{ cfg.lr }}"', before="default-values:\n  cfg: {momentum: 0.9}\n")
    assert errors(text) == ["f:9:29: undefined template value: 'dict object' has no attribute 'lr'"]


def test_default_values_section_is_validated() -> None:
    assert errors("default-values: [1, 2]\nworkflow: {name: x}\n") == [
        "f:1:1: default-values must be a mapping of variable names to values"
    ]
    assert errors("default-values:\n  a: [1\nworkflow:\n  name: x\n") == [
        "f:3:1: YAML syntax error in default-values: did not find expected ',' or ']'"
    ]
    digits = "9" * 5000
    assert errors(f"default-values:\n  a: {digits}\nworkflow:\n  name: x\n") == [
        "f:1:1: invalid value in default-values: Exceeds the limit (4300 digits) for integer "
        "string conversion: value has 5000 digits; use sys.set_int_max_str_digits() to "
        "increase the limit"
    ]


# ---- rendering on the text -----------------------------------------------------------------


def test_rendering_happens_before_yaml_parsing() -> None:
    text = (
        "default-values:\n"
        "  key: name\n"
        "  items: [a, b]\n"
        "workflow:\n"
        "  {{ key }}: {{ items | join('-') }}\n"
        "  tasks:\n"
        "  - {name: a, image: x, command: [echo]}\n"
    )
    rendered = render(text)
    assert rendered.used_jinja
    assert rendered.text.splitlines()[4] == "  name: a-b"
    assert rendered.default_values == {"key": "name", "items": ["a", "b"]}
    assert parse_workflow(text).spec.name == "a-b"


def test_default_values_are_blanked_so_line_numbers_stay() -> None:
    text = "default-values:\n  x: 1\nworkflow:\n  name: w{{ x }}\n"
    rendered = render(text)
    assert rendered.text == "\n\nworkflow:\n  name: w1\n"
    assert rendered.line_map.original(4) == 4


def test_loop_generated_tasks_and_inputs() -> None:
    text = """\
default-values:
  stages: [fetch, clean, train]
workflow:
  name: pipeline
  tasks:
{%- for s in stages %}
  - name: {{ s }}
    image: ubuntu:24.04
    command: [run, {{ s }}]
  {%- if not loop.first %}
    inputs:
    - task: {{ stages[loop.index0 - 1] }}
  {%- endif %}
{%- endfor %}
"""
    spec = parse_workflow(text).spec
    assert [g.name for g in spec.groups] == ["fetch-group", "clean-group", "train-group"]
    assert [g.upstream for g in spec.groups] == [[], ["fetch-group"], ["clean-group"]]
    spec = parse_workflow(text, {"stages": "ab"}).spec  # a string iterates by character
    assert [t.name for t in spec.tasks] == ["a", "b"]


@pytest.mark.parametrize(
    "token",
    ["{{workflow_id}}", "{{output}}", "{{uuid}}", "{{input:0}}", "{{input:prep}}", "{{host:a}}"],
)
def test_special_tokens_survive_rendering(token: str) -> None:
    text = (
        "default-values: {workflow_id: x, output: y, uuid: z, input: w, host: v}\n"
        "workflow:\n"
        "  name: t\n"
        "  tasks:\n"
        "  - name: prep\n"
        "    image: x\n"
        "    command: [echo]\n"
        "  - name: a\n"
        "    image: x\n"
        f"    command: [echo, '{token}', '{{{{ 1 + 1 }}}}']\n"
        "    inputs: [{task: prep}]\n"
    )
    rendered = render(text)
    assert f"'{token}', '2'" in rendered.text
    assert parse_workflow(text).spec.tasks[1].command == ["echo", token, "2"]


def test_token_at_the_end_of_a_line_before_a_trimming_tag() -> None:
    """``{%-`` strips whitespace before it; the token right before it must survive."""
    text = (
        "default-values: {extra: true}\n"
        "workflow:\n"
        "  name: t\n"
        "  tasks:\n"
        "  - name: a\n"
        "    image: x\n"
        "    command:\n"
        "    - --out={{output}}\n"
        "{%- if extra %}\n"
        "    - --run={{workflow_id}}\n"
        "{%- endif %}\n"
    )
    assert parse_workflow(text).spec.tasks[0].command == [
        "--out={{output}}",
        "--run={{workflow_id}}",
    ]


def test_tokens_come_out_normalized_with_or_without_jinja() -> None:
    plain = task_file("'{{ output }}/x'")
    templated = task_file("'{{ output }}/{{ 1 }}'")
    assert parse_workflow(plain).spec.tasks[0].command == ["echo", "{{output}}/x"]
    assert parse_workflow(templated).spec.tasks[0].command == ["echo", "{{output}}/1"]


def test_template_syntax_error_is_located() -> None:
    assert errors(task_file('"{{ 1 + }}"')) == [
        "f:7:22: template syntax error: unexpected 'end of print statement'"
    ]


def test_rendered_yaml_errors_map_back_to_the_template_line() -> None:
    text = """\
default-values:
  n: 3
workflow:
  name: lines
  tasks:
{%- for i in range(n) %}
  - name: t{{ i }}
    image: ubuntu:24.04
    command: [echo]
{%- endfor %}
  - name: last
    image: ubuntu:24.04
     command: [echo, "{{ n }}"]
"""
    # The loop adds lines: rendered, the bad line is line 17; in the file it is line 13.
    assert render(text).text.splitlines()[16] == '     command: [echo, "3"]'
    assert errors(text) == [
        "f:13:13: YAML syntax error: mapping values are not allowed in this context"
    ]


def test_yaml_error_at_end_of_file_points_at_the_last_line() -> None:
    text = "workflow:\n  name: x\n  tasks: [{name: a, image: x,\n\n"
    assert errors(text) == [
        "f:3:30: YAML syntax error: did not find expected node content "
        "(while parsing a flow node at line 3, column 30)"
    ]
