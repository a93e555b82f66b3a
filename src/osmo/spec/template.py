"""Rendering of workflow templates: sandboxed Jinja on the text, before YAML parsing.

The file is rendered as text so that ``name: {{x}}`` and loops that generate tasks work. Special
tokens (``{{output}}``, ``{{input:0}}``, ``{{host:server}}``, ...) are protected from Jinja and
come out unchanged, to be substituted per task at run time. The ``default-values`` section is
read as plain YAML (it supplies the variables) and blanked out of the text before rendering, so
line numbers of the rendered text match the file wherever no block tag adds or removes lines.
"""

from __future__ import annotations

import re
import signal
import sys
import threading
import time
import types
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import jinja2
import jinja2.meta
import jinja2.nodes
import jinja2.sandbox
import yaml

from .errors import SpecError, SpecIssue

TOKEN_RE = re.compile(r"\{\{\s*(workflow_id|output|uuid|input:[^{}\s]+|host:[^{}\s]+)\s*\}\}")
# Private-use characters: not whitespace, so ``{%-`` trimming cannot eat part of a placeholder.
_PLACEHOLDER = "\ue000osmotok{}\ue001"
_PLACEHOLDER_RE = re.compile("\ue000osmotok([0-9]{1,9})\ue001")
_SECTION_RE = re.compile(r"""^(?:"([^"]*)"|'([^']*)'|([A-Za-z_][\w.-]*))\s*:(?:\s|$)""")
TOP_LEVEL_KEYS = ("version", "workflow", "default-values")
TEMPLATE_NAME = "<workflow>"

MAX_RENDER_SECONDS = 2.0
MAX_OUTPUT_CHARS = 20_000_000


class RenderTimeout(Exception):
    pass


@dataclass
class Sections:
    """Line spans (0-based, end exclusive) of the top-level keys found in the text."""

    spans: dict[str, tuple[int, int]] = field(default_factory=dict)
    duplicates: list[tuple[str, int]] = field(default_factory=list)


def find_sections(lines: list[str]) -> Sections:
    sections = Sections()
    current: str | None = None
    start = 0
    for i, line in enumerate(lines):
        if not line or line[0] in " \t#{-.\r" or line.startswith("..."):
            continue
        m = _SECTION_RE.match(line)
        if not m:
            continue
        key = next(g for g in m.groups() if g is not None)
        if current is not None:
            sections.spans[current] = (start, i)
        if key in sections.spans or key == current:
            sections.duplicates.append((key, i))
        current, start = key, i
    if current is not None and current not in sections.spans:
        sections.spans[current] = (start, len(lines))
    return sections


def parse_set_values(items: list[str], *, as_string: bool, flag: str) -> dict[str, Any]:
    """``--set k=v`` (int, then float, else string) or ``--set-string k=v`` (always string)."""
    values: dict[str, Any] = {}
    issues = []
    for item in items:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key:
            issues.append(SpecIssue(f"{flag} expects KEY=VALUE, got {item!r}"))
            continue
        values[key] = raw if as_string else _cast(raw)
    if issues:
        raise SpecError(issues)
    return values


_INT_RE = re.compile(r"^[+-]?\d+$")
_FLOAT_RE = re.compile(r"^[+-]?(\d+\.\d*|\.\d+|\d+)([eE][+-]?\d+)?$")


def _cast(raw: str) -> Any:
    text = raw.strip()
    try:
        if _INT_RE.match(text):
            return int(text)
        if _FLOAT_RE.match(text):
            return float(text)
    except (ValueError, OverflowError):  # more digits than Python converts: keep the text
        pass
    return raw


def _expanded_size(value: Any, limit: int) -> int:
    """Characters (roughly) ``str(value)`` takes, counting shared sub-values (YAML aliases) each
    time they appear; stops counting past ``limit``. A value that contains itself is
    infinitely large.

    ``str()`` of a container runs in C, where neither the timer signal nor the trace
    function can interrupt it, so the size must be known before a container is rendered.
    """
    sizes: dict[int, int] = {}
    active: set[int] = set()

    def size(v: Any) -> int:
        if isinstance(v, str):
            return len(v) + 4
        if not isinstance(v, list | tuple | dict | set | frozenset):
            return 8
        key = id(v)
        if key in sizes:
            return sizes[key]
        if key in active:
            return limit + 1
        active.add(key)
        total = 2
        items = (x for pair in v.items() for x in pair) if isinstance(v, dict) else iter(v)
        for item in items:
            total += size(item) + 2
            if total > limit:
                break
        active.discard(key)
        sizes[key] = total
        return total

    return size(value)


class _Sandbox(jinja2.sandbox.SandboxedEnvironment):
    """Jinja's sandbox plus caps on values that can blow up memory in one step."""

    intercepted_binops = frozenset(["*", "**", "%"])

    def call_binop(
        self, context: jinja2.runtime.Context, operator: str, left: Any, right: Any
    ) -> Any:
        if operator == "*":
            for seq, n in ((left, right), (right, left)):
                if (
                    isinstance(seq, str | list | tuple)
                    and isinstance(n, int)
                    and n > 1
                    and _expanded_size(seq, MAX_OUTPUT_CHARS) * n > MAX_OUTPUT_CHARS
                ):
                    raise jinja2.exceptions.SecurityError("repetition result is too large")
        if operator == "%" and isinstance(left, str):  # printf-style formatting
            _finalize(right)
        if operator == "**" and isinstance(right, int | float):
            too_big = abs(right) > 1000
            if isinstance(left, int) and isinstance(right, int) and right > 0:
                too_big = too_big or left.bit_length() * right > 100_000
            if too_big:
                raise jinja2.exceptions.SecurityError("exponent is too large")
        return super().call_binop(context, operator, left, right)


def _finalize(value: Any) -> Any:
    """Refuse to turn a container too large to render into text (see ``_expanded_size``)."""
    if (
        isinstance(value, list | tuple | dict | set | frozenset)
        and _expanded_size(value, MAX_OUTPUT_CHARS) > MAX_OUTPUT_CHARS
    ):
        raise jinja2.exceptions.SecurityError(
            f"value is too large to render (more than {MAX_OUTPUT_CHARS} characters)"
        )
    return value


_ENV = _Sandbox(
    undefined=jinja2.StrictUndefined,
    keep_trailing_newline=True,
    autoescape=False,
    finalize=_finalize,
)
_SIZED = "osmo_sized"
_ENV.filters[_SIZED] = _finalize


def _guard_sizes(ast: jinja2.nodes.Template) -> None:
    """Check the size of every value a filter, a call or ``~`` is about to turn into text.

    Filters (``join``, ``string``, ``tojson``), ``'{}'.format(x)`` and ``a ~ b`` convert
    their operands in C; wrapping each operand in the ``osmo_sized`` filter checks it first.
    """

    def sized(expr: jinja2.nodes.Expr) -> jinja2.nodes.Expr:
        return jinja2.nodes.Filter(expr, _SIZED, [], [], None, None, lineno=expr.lineno)

    targets = list(ast.find_all((jinja2.nodes.Filter, jinja2.nodes.Call, jinja2.nodes.Concat)))
    for node in targets:
        if isinstance(node, jinja2.nodes.Concat):
            node.nodes = [sized(n) for n in node.nodes]
            continue
        if isinstance(node, jinja2.nodes.Filter) and node.node is not None:
            node.node = sized(node.node)
        if isinstance(node, jinja2.nodes.Filter | jinja2.nodes.Call):
            node.args = [sized(a) for a in node.args]
            for keyword in node.kwargs:
                keyword.value = sized(keyword.value)


@contextmanager
def _time_limit(seconds: float) -> Iterator[None]:
    """Bound rendering time.

    In the main thread a timer signal interrupts the render (any timer already armed, e.g.
    by a test runner, is re-armed afterwards). Other threads cannot receive signals, so there
    a trace function on the template's own frames checks the deadline line by line.
    """
    if seconds <= 0:
        yield
        return
    if threading.current_thread() is not threading.main_thread():
        with _traced_deadline(seconds):
            yield
        return

    def _expire(signum: int, frame: types.FrameType | None) -> None:
        raise RenderTimeout()

    started = time.monotonic()
    previous = signal.signal(signal.SIGALRM, _expire)
    previous_delay, previous_interval = signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
        if previous_delay > 0:
            remaining = previous_delay - (time.monotonic() - started)
            signal.setitimer(signal.ITIMER_REAL, max(remaining, 0.001), previous_interval)


@contextmanager
def _traced_deadline(seconds: float) -> Iterator[None]:
    deadline = time.monotonic() + seconds

    def _check(frame: types.FrameType, event: str, arg: Any) -> Any:
        if time.monotonic() > deadline:
            raise RenderTimeout()
        return _check

    def _on_call(frame: types.FrameType, event: str, arg: Any) -> Any:
        return _check if frame.f_code.co_filename == TEMPLATE_NAME else None

    previous = sys.gettrace()
    sys.settrace(_on_call)
    try:
        yield
    finally:
        sys.settrace(previous)


def _template_line(exc: BaseException) -> int | None:
    tb = exc.__traceback__
    line = None
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == TEMPLATE_NAME:
            line = tb.tb_lineno
        tb = tb.tb_next
    return line


def _locate_name(lines: list[str], name: str) -> tuple[int | None, int | None]:
    pattern = re.compile(r"(?<![\w.])" + re.escape(name) + r"(?!\w)")
    for i, line in enumerate(lines):
        for m in re.finditer(r"\{\{.*?\}\}|\{%.*?%\}", line):
            hit = pattern.search(line, m.start(), m.end())
            if hit:
                return i + 1, hit.start() + 1
    return None, None


def _restore_tokens(text: str, tokens: list[str]) -> str:
    def _token(m: re.Match[str]) -> str:
        index = int(m.group(1))
        return tokens[index] if index < len(tokens) else m.group(0)

    return _PLACEHOLDER_RE.sub(_token, text)


def _guarded_names(ast: jinja2.nodes.Template) -> set[str]:
    """Names tested with ``is defined`` / ``is undefined`` or given a ``default`` filter."""
    names: set[str] = set()
    for test in ast.find_all(jinja2.nodes.Test):
        if test.name in ("defined", "undefined") and isinstance(test.node, jinja2.nodes.Name):
            names.add(test.node.name)
    for flt in ast.find_all(jinja2.nodes.Filter):
        if flt.name in ("default", "d") and isinstance(flt.node, jinja2.nodes.Name):
            names.add(flt.node.name)
    return names


_ATTRIBUTE_RE = re.compile(r"(?:attribute|named) '([^']+)'")
_TAG_RE = re.compile(r"\{\{.*?(\}\}|$)|\{%.*?(%\}|$)")


def _tag_column(lines: list[str], line: int | None, needle: str | None = None) -> int | None:
    """Column on ``line`` of ``needle`` if given and present, else of the first Jinja tag."""
    if line is None:
        return None
    if not 1 <= line <= len(lines):
        return 1
    text = lines[line - 1]
    tags = list(_TAG_RE.finditer(text))
    if needle:
        for tag in tags:
            found = text.find(needle, tag.start(), tag.end())
            if found >= 0:
                return found + 1
    return tags[0].start() + 1 if tags else 1


def _runtime_issue(message: str, exc: BaseException, lines: list[str]) -> SpecIssue:
    """An error raised while rendering, located at the template line that was running."""
    line = _template_line(exc)
    attribute = _ATTRIBUTE_RE.search(str(exc))
    column = _tag_column(lines, line, attribute.group(1) if attribute else None)
    return SpecIssue(message, line, column, key="template")


@dataclass
class Rendered:
    text: str  # the rendered file (default-values blanked out), tokens intact
    default_values: dict[str, Any]
    variables: dict[str, Any]
    line_map: LineMap
    used_jinja: bool


class LineMap:
    """Maps a line of the rendered text back to the line of the file it came from.

    Exact when rendering kept the line structure; otherwise each rendered line is matched to
    the template line whose literal text (expressions as wildcards) it fits, scanning forward
    and wrapping to earlier lines for loop bodies.
    """

    def __init__(self, template_lines: list[str], rendered_lines: list[str], exact: bool):
        self._map: list[int] | None = None
        self._n_lines = len(template_lines)
        if exact:
            return
        patterns: list[tuple[int, re.Pattern[str]]] = []
        for i, line in enumerate(template_lines):
            stripped = line.strip()
            if not stripped or re.fullmatch(r"(\{%.*?%\}|\{#.*?#\}|\s)*", stripped):
                continue
            parts = re.split(r"\{\{.*?\}\}|\{%.*?%\}|\{#.*?#\}", line)
            regex = ".*".join(re.escape(p) for p in parts)
            patterns.append((i + 1, re.compile(regex + r"\s*$")))
        mapping: list[int] = []
        pos = 0
        last = 1
        for line in rendered_lines:
            found = None
            n = len(patterns)
            for step in range(n):
                idx = (pos + step) % n
                if patterns[idx][1].match(line):
                    found = idx
                    break
            if found is None:
                mapping.append(last)
                continue
            last = patterns[found][0]
            mapping.append(last)
            pos = found + 1
        self._map = mapping

    def original(self, rendered_line: int) -> int:
        """The file's line; positions past the end (YAML reports end of file as the line after
        the last) are the file's last line."""
        line = rendered_line
        if self._map is not None and self._map:
            line = self._map[min(max(rendered_line, 1), len(self._map)) - 1]
        return min(max(line, 1), self._n_lines) if self._n_lines else line


def render(
    text: str,
    set_values: dict[str, Any] | None = None,
    set_string_values: dict[str, Any] | None = None,
    *,
    max_seconds: float = MAX_RENDER_SECONDS,
) -> Rendered:
    """Render a workflow file. Raises ``SpecError`` with located issues."""
    lines = text.splitlines()
    sections = find_sections(lines)
    issues: list[SpecIssue] = []
    for key, line_no in sections.duplicates:
        issues.append(
            SpecIssue(f"top-level key {key!r} appears more than once", line_no + 1, 1, key=key)
        )

    default_values: dict[str, Any] = {}
    body_lines = list(lines)
    span = sections.spans.get("default-values")
    if span is not None:
        start, end = span
        section_text = "\n" * start + "\n".join(lines[start:end])
        try:
            loaded = yaml.load(section_text, Loader=_SafeLoader)
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            issues.append(
                SpecIssue(
                    f"YAML syntax error in default-values: {getattr(exc, 'problem', exc)}",
                    mark.line + 1 if mark else start + 1,
                    mark.column + 1 if mark else 1,
                    key="default-values",
                )
            )
            loaded = None
        except ValueError as exc:  # a number too long to convert, a lone surrogate, ...
            issues.append(
                SpecIssue(
                    f"invalid value in default-values: {exc}", start + 1, 1, key="default-values"
                )
            )
            loaded = None
        if isinstance(loaded, dict):
            values = loaded.get("default-values")
            if values is None:
                values = {}
            if not isinstance(values, dict):
                issues.append(
                    SpecIssue(
                        "default-values must be a mapping of variable names to values",
                        start + 1,
                        1,
                        key="default-values",
                    )
                )
            elif _expanded_size(values, MAX_OUTPUT_CHARS) > MAX_OUTPUT_CHARS:
                issues.append(
                    SpecIssue(
                        f"default-values are too large once YAML aliases are expanded (more "
                        f"than {MAX_OUTPUT_CHARS} characters), or refer to themselves",
                        start + 1,
                        1,
                        key="default-values",
                    )
                )
            else:
                default_values = {str(k): v for k, v in values.items()}
        for i in range(start, end):
            body_lines[i] = ""
    if issues:
        raise SpecError(issues)

    variables = {**default_values, **(set_values or {}), **(set_string_values or {})}
    body = "\n".join(body_lines)
    if text.endswith("\n"):
        body += "\n"

    tokens: list[str] = []

    def _protect(m: re.Match[str]) -> str:
        tokens.append("{{" + m.group(1) + "}}")
        return _PLACEHOLDER.format(len(tokens) - 1)

    protected = TOKEN_RE.sub(_protect, body)
    used_jinja = any(s in protected for s in ("{{", "{%", "{#"))
    if not used_jinja:
        # Tokens come out in one form (``{{input:0}}``) whether or not the file uses Jinja.
        rendered = _restore_tokens(protected, tokens)
        return Rendered(rendered, default_values, variables, LineMap(body_lines, [], True), False)

    try:
        ast = _ENV.parse(protected)
        guarded = _guarded_names(ast)  # before _guard_sizes wraps the guarded names
        _guard_sizes(ast)
        code = _ENV.compile(ast, filename=TEMPLATE_NAME)  # e.g. "No filter named 'x'."
    except jinja2.TemplateSyntaxError as exc:
        named = _ATTRIBUTE_RE.search(exc.message or "")
        column = _tag_column(lines, exc.lineno, named.group(1) if named else None)
        raise SpecError(
            [SpecIssue(f"template syntax error: {exc.message}", exc.lineno, column, key="template")]
        ) from None

    # Report every undefined variable at once, not only the first one the renderer hits. Names
    # only used behind a guard (``x is defined``, ``x | default(...)``) are left to the renderer,
    # which reports them with their line if they are also used unguarded.
    undeclared = (
        jinja2.meta.find_undeclared_variables(ast) - set(variables) - set(_ENV.globals) - guarded
    )
    if undeclared:
        for name in undeclared:
            line, col = _locate_name(lines, name)
            issues.append(
                SpecIssue(
                    f"undefined template variable {name!r}: set it in default-values or "
                    f"with --set {name}=VALUE",
                    line,
                    col,
                    key="template",
                )
            )
        issues.sort(key=lambda i: (i.line is None, i.line or 0, i.column or 0, i.message))
        raise SpecError(issues)
    template = jinja2.Template.from_code(_ENV, code, _ENV.make_globals(None), None)

    out: list[str] = []
    size = 0
    started = time.monotonic()
    try:
        with _time_limit(max_seconds):
            for chunk in template.generate(**variables):
                size += len(chunk)
                if size > MAX_OUTPUT_CHARS:
                    raise SpecError(
                        [
                            SpecIssue(
                                f"rendered spec exceeds {MAX_OUTPUT_CHARS} characters",
                                key="template",
                            )
                        ]
                    )
                if time.monotonic() - started > max_seconds > 0:
                    raise RenderTimeout()
                out.append(chunk)
    except RenderTimeout as exc:
        raise SpecError(
            [_runtime_issue(f"template rendering took longer than {max_seconds:g}s", exc, lines)]
        ) from None
    except jinja2.UndefinedError as exc:
        raise SpecError(
            [_runtime_issue(f"undefined template value: {exc.message}", exc, lines)]
        ) from None
    except jinja2.exceptions.SecurityError as exc:
        raise SpecError([_runtime_issue(f"unsafe template construct: {exc}", exc, lines)]) from None
    except (
        jinja2.TemplateError,
        ArithmeticError,
        TypeError,
        ValueError,
        LookupError,
        RecursionError,
    ) as exc:
        raise SpecError([_runtime_issue(f"template error: {exc}", exc, lines)]) from None

    rendered = "".join(out)
    rendered = _restore_tokens(rendered, tokens)
    rendered_lines = rendered.splitlines()
    has_blocks = "{%" in protected
    exact = not has_blocks and len(rendered_lines) == len(body.splitlines())
    return Rendered(
        rendered, default_values, variables, LineMap(body_lines, rendered_lines, exact), True
    )


try:
    _SafeLoader: type[yaml.SafeLoader] = yaml.CSafeLoader  # type: ignore[assignment]
except AttributeError:  # pragma: no cover - libyaml missing
    _SafeLoader = yaml.SafeLoader
