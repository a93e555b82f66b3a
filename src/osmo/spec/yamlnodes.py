"""Reading composed YAML nodes: scalar values, mappings with duplicate-key checks, positions."""

from __future__ import annotations

from typing import Any

import yaml
from yaml.constructor import SafeConstructor
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

try:
    Loader: type[yaml.SafeLoader] = yaml.CSafeLoader  # type: ignore[assignment]
    USES_LIBYAML = True
except AttributeError:  # pragma: no cover - libyaml missing
    Loader = yaml.SafeLoader
    USES_LIBYAML = False

_STR = "tag:yaml.org,2002:str"
_INT = "tag:yaml.org,2002:int"
_FLOAT = "tag:yaml.org,2002:float"
_BOOL = "tag:yaml.org,2002:bool"
_NULL = "tag:yaml.org,2002:null"


class _Constructor(SafeConstructor):
    pass


_CONSTRUCTOR = _Constructor()
_MERGE = "tag:yaml.org,2002:merge"


_RESOLVED: dict[str, str] = {}  # plain scalar text -> implicit tag (bounded cache)
_MAX_RESOLVED = 20_000


class _SpecLoader(Loader):  # type: ignore[misc,valid-type]
    """libyaml's loader with a cache for implicit scalar tags.

    Resolving a plain scalar's tag (int? bool? null?) runs a list of regexes in Python for
    every scalar; spec files repeat the same few scalars thousands of times.
    """

    def resolve(self, kind: Any, value: Any, implicit: Any) -> Any:
        if kind is not ScalarNode or self.yaml_path_resolvers:
            return super().resolve(kind, value, implicit)
        if not implicit[0]:  # quoted: always a string
            return self.DEFAULT_SCALAR_TAG
        tag = _RESOLVED.get(value)
        if tag is None:
            tag = super().resolve(kind, value, implicit)
            if len(_RESOLVED) < _MAX_RESOLVED and len(value) <= 100:
                _RESOLVED[value] = tag
        return tag


def compose(text: str) -> Node | None:
    """The single document's node tree (raises ``yaml.YAMLError``)."""
    return yaml.compose(text, Loader=_SpecLoader)


def scalar_value(node: ScalarNode) -> Any:
    """The value of a plain scalar under the YAML core schema.

    Only strings, numbers, booleans and null are interpreted; any other tag (timestamps,
    ``!!binary``, ``!!python/...``, custom ``!tags``) and numbers too large to convert are
    returned as the text written, so a spec value is never constructed into an arbitrary object.
    """
    tag = node.tag
    if tag == _STR:
        return node.value
    try:
        if tag == _INT:
            return _CONSTRUCTOR.construct_yaml_int(node)
        if tag == _FLOAT:
            return _CONSTRUCTOR.construct_yaml_float(node)
        if tag == _BOOL:
            return _CONSTRUCTOR.construct_yaml_bool(node)
    except ValueError:  # e.g. an integer with more digits than Python converts
        return node.value
    if tag == _NULL:
        return None
    return node.value


def to_python(node: Node) -> Any:
    """Plain Python data for a free-form subtree (metadata, default values)."""
    return _Constructor().construct_object(node, deep=True)


def is_null(node: Node) -> bool:
    return isinstance(node, ScalarNode) and node.tag == _NULL


def kind_name(node: Node) -> str:
    if isinstance(node, MappingNode):
        return "a mapping"
    if isinstance(node, SequenceNode):
        return "a list"
    if is_null(node):
        return "empty"
    value = scalar_value(node)  # type: ignore[arg-type]
    if isinstance(value, bool):
        return f"a boolean ({node.value})"
    if isinstance(value, int | float):
        return f"a number ({node.value})"
    return f"a string ({node.value!r})"


def mapping_items(node: MappingNode) -> list[tuple[Node, Node]]:
    """Key/value node pairs with YAML merge keys (``<<``) applied.

    Keys written in the mapping override merged ones, and of several merged mappings the first
    wins (YAML merge semantics); duplicates among the written keys are kept so that callers can
    report them. The node tree is not modified. A ``<<`` whose value is not a mapping or a list
    of mappings is kept as an ordinary pair (and reported by the caller as an unknown key).
    """
    pairs: list[tuple[Node, Node]] = node.value
    for k, _ in pairs:
        if k.tag == _MERGE:
            return _merged(node, set())
    return list(pairs)


def _merged(node: MappingNode, active: set[int]) -> list[tuple[Node, Node]]:
    active = active | {id(node)}
    explicit: list[tuple[Node, Node]] = []
    merged: list[tuple[Node, Node]] = []
    for k, v in node.value:
        if k.tag != _MERGE:
            explicit.append((k, v))
            continue
        sources = v.value if isinstance(v, SequenceNode) else [v]
        if not sources or not all(isinstance(src, MappingNode) for src in sources):
            explicit.append((k, v))
            continue
        for src in sources:
            if id(src) not in active:  # a mapping merging itself (through an alias) adds nothing
                merged.extend(_merged(src, active))
    written = {k.value for k, _ in explicit if isinstance(k, ScalarNode)}
    seen: set[object] = set()
    out: list[tuple[Node, Node]] = []
    for k, v in merged:
        key = k.value if isinstance(k, ScalarNode) else id(k)
        if key in written or key in seen:
            continue
        seen.add(key)
        out.append((k, v))
    return out + explicit
