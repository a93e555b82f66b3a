"""Reading composed YAML nodes: scalar values, mappings with duplicate-key checks, positions."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import yaml
from yaml.constructor import SafeConstructor
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

try:
    Loader: type[yaml.SafeLoader] = yaml.CSafeLoader  # type: ignore[assignment]
except AttributeError:  # pragma: no cover - libyaml missing
    Loader = yaml.SafeLoader

_STR = "tag:yaml.org,2002:str"
_INT = "tag:yaml.org,2002:int"
_FLOAT = "tag:yaml.org,2002:float"
_BOOL = "tag:yaml.org,2002:bool"
_NULL = "tag:yaml.org,2002:null"


class _Constructor(SafeConstructor):
    pass


def compose(text: str) -> Node | None:
    """The single document's node tree (raises ``yaml.YAMLError``)."""
    return yaml.compose(text, Loader=Loader)


def scalar_value(node: ScalarNode) -> Any:
    tag = node.tag
    if tag == _STR:
        return node.value
    c = _Constructor()
    if tag == _INT:
        return c.construct_yaml_int(node)
    if tag == _FLOAT:
        return c.construct_yaml_float(node)
    if tag == _BOOL:
        return c.construct_yaml_bool(node)
    if tag == _NULL:
        return None
    return c.construct_object(node, deep=True)


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


def mapping_items(node: MappingNode) -> Iterator[tuple[Node, Node]]:
    """Key/value node pairs with YAML merge keys (``<<``) applied."""
    c = _Constructor()
    c.flatten_mapping(node)
    yield from node.value
