"""Pod template merge and variable rendering (reference §5.3), as pure functions over dicts.

Templates are partial Kubernetes Pod manifests. ``merge`` applies them in order onto a base:
dicts merge recursively, lists of dicts merge **by ``name``** (same name: recursive merge; new
name: appended), other lists and scalars are replaced by the later template. Dicts in a list
without a ``name`` (tolerations, say) are appended unless an equal item is already there.

``render`` fills ``{{USER_*}}`` / ``{{WF_*}}`` variables with a sandboxed Jinja environment: a
string that is exactly one ``{{ expression }}`` becomes the expression's native value (so
``values: "{{USER_EXCLUDED_NODES}}"`` yields a list, ``"{{USER_GPU}}"`` an int); any other
string is rendered as text. Keys are rendered as text too.

Templates may not set ``image``, ``command`` or ``args`` of a container (``check_template``).
"""

from __future__ import annotations

import copy
import math
import re
from collections.abc import Mapping
from typing import Any

import jinja2
from jinja2.sandbox import SandboxedEnvironment

__all__ = [
    "TemplateError",
    "check_template",
    "merge",
    "merge_all",
    "render",
    "size_variables",
    "variables_for",
]

FORBIDDEN_CONTAINER_KEYS = ("image", "command", "args")
_SINGLE_EXPR = re.compile(r"^\s*\{\{(?P<expr>(?:(?!\}\}).)*)\}\}\s*$", re.DOTALL)
_UNITS = {"B": 1, "Ki": 1024, "Mi": 1024**2, "Gi": 1024**3, "Ti": 1024**4}
MAX_RENDERED = 1 << 20  # one rendered string may not exceed this many characters


class TemplateError(ValueError):
    """A template is invalid, or rendering it failed; the message names where."""


# ---- merge ------------------------------------------------------------------------------------


def _merge_lists(base: list[Any], over: list[Any]) -> list[Any]:
    if not all(isinstance(x, dict) for x in over) or not all(isinstance(x, dict) for x in base):
        return copy.deepcopy(over)
    out = [copy.deepcopy(x) for x in base]
    index = {x["name"]: i for i, x in enumerate(out) if "name" in x}
    for item in over:
        name = item.get("name")
        if name is not None and name in index:
            out[index[name]] = merge(out[index[name]], item)
        elif item not in out:
            out.append(copy.deepcopy(item))
            if name is not None:
                index[name] = len(out) - 1
    return out


def merge(base: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    """``over`` merged onto a copy of ``base`` (neither is changed)."""
    out: dict[str, Any] = copy.deepcopy(dict(base))
    for key, value in over.items():
        current = out.get(key)
        if isinstance(current, dict) and isinstance(value, dict):
            out[key] = merge(current, value)
        elif isinstance(current, list) and isinstance(value, list):
            out[key] = _merge_lists(current, value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def merge_all(base: Mapping[str, Any], templates: list[Mapping[str, Any]]) -> dict[str, Any]:
    out = dict(base)
    for t in templates:
        out = merge(out, t)
    return out


def check_template(name: str, template: Any) -> None:
    """Reject what a pod template may not be: not a mapping, or setting a container's
    image, command or args."""
    if not isinstance(template, dict):
        raise TemplateError(f"pod template {name!r}: expected a mapping (a partial Pod)")
    spec = template.get("spec", {})
    if not isinstance(spec, dict):
        raise TemplateError(f"pod template {name!r}: spec must be a mapping")
    for field in ("containers", "initContainers"):
        containers = spec.get(field, [])
        if not isinstance(containers, list):
            raise TemplateError(f"pod template {name!r}: spec.{field} must be a list")
        for i, c in enumerate(containers):
            if not isinstance(c, dict):
                raise TemplateError(f"pod template {name!r}: spec.{field}[{i}] must be a mapping")
            for key in FORBIDDEN_CONTAINER_KEYS:
                if key in c:
                    raise TemplateError(
                        f"pod template {name!r}: spec.{field}[{i}] sets {key!r}; templates "
                        "may not change a container's image, command or args"
                    )


# ---- variables --------------------------------------------------------------------------------


def _format_number(v: float) -> int | float:
    return int(v) if float(v).is_integer() else round(v, 3)


def size_variables(prefix: str, value: int | str | None) -> dict[str, Any]:
    """``USER_MEMORY``-style variables of a byte size: the value as a Kubernetes quantity,
    ``_VAL`` and ``_UNIT`` (the largest binary unit that divides it), and ``_B``, ``_Ki``, ...
    ``_Ti`` conversions."""
    if value is None:
        return {}
    if isinstance(value, str):
        from ....spec.units import parse_size

        n = parse_size(value)
    else:
        n = int(value)
    unit = "B"
    for u in ("Ti", "Gi", "Mi", "Ki"):
        if n and n % _UNITS[u] == 0:
            unit = u
            break
    val = n // _UNITS[unit]
    out: dict[str, Any] = {
        prefix: f"{val}{unit if unit != 'B' else ''}",
        f"{prefix}_VAL": val,
        f"{prefix}_UNIT": unit,
    }
    for u, factor in _UNITS.items():
        out[f"{prefix}_{u}"] = _format_number(n / factor)
    return out


def variables_for(
    *,
    defaults: list[Mapping[str, Any]],
    cpu: float | None,
    gpu: int | None,
    memory_bytes: int | None,
    storage_bytes: int | None,
    cache_size: str | None,
    excluded_nodes: list[str],
    container_name: str,
    workflow: Mapping[str, str],
    labels: Mapping[str, str],
) -> dict[str, Any]:
    """Every variable a pod template can use.

    ``defaults`` are applied first to last (pool ``common_default_variables``, then the
    platform's ``default_variables``); the task's own request overrides them.
    """
    # The original seeds these as the default variables of every new deployment (§5.1).
    out: dict[str, Any] = {
        "USER_CPU": 1,
        "USER_GPU": 0,
        "USER_MEMORY": "1Gi",
        "USER_STORAGE": "1Gi",
    }
    for layer in defaults:
        out.update(layer)
    # Sizes given as defaults ("1Gi") get their derived variables too.
    for key in ("USER_MEMORY", "USER_STORAGE"):
        if key in out and isinstance(out[key], str | int):
            out.update(size_variables(key, out[key]))
    if cpu is not None:
        out["USER_CPU"] = _format_number(cpu)
    if gpu is not None:
        out["USER_GPU"] = gpu
    if memory_bytes is not None:
        out.update(size_variables("USER_MEMORY", memory_bytes))
    if storage_bytes is not None:
        out.update(size_variables("USER_STORAGE", storage_bytes))
    storage = out.get("USER_STORAGE_B")
    if cache_size:
        if cache_size.endswith("%") and isinstance(storage, int | float):
            pct = float(cache_size[:-1])
            out.update(size_variables("USER_CACHE", math.floor(storage * pct / 100)))
        elif not cache_size.endswith("%"):
            out.update(size_variables("USER_CACHE", cache_size))
    elif isinstance(storage, int | float):
        out.update(size_variables("USER_CACHE", math.floor(storage * 0.9)))
    out["USER_EXCLUDED_NODES"] = list(excluded_nodes)
    out["USER_CONTAINER_NAME"] = container_name
    out.update(workflow)
    for k, v in labels.items():
        out.setdefault(k, v)
    return out


# ---- rendering --------------------------------------------------------------------------------

_ENV = SandboxedEnvironment(undefined=jinja2.StrictUndefined, autoescape=False)


def _render_str(text: str, variables: Mapping[str, Any], where: str) -> Any:
    if "{{" not in text and "{%" not in text:
        return text
    try:
        m = _SINGLE_EXPR.match(text)
        if m:
            value = _ENV.compile_expression(m.group("expr").strip(), undefined_to_none=False)(
                **variables
            )
            if isinstance(value, jinja2.Undefined):
                value._fail_with_undefined_error()
            return value
        out = _ENV.from_string(text).render(**variables)
    except jinja2.TemplateError as exc:
        raise TemplateError(f"{where}: {exc}") from None
    except (ValueError, TypeError, ArithmeticError) as exc:
        raise TemplateError(f"{where}: {exc}") from None
    if len(out) > MAX_RENDERED:
        raise TemplateError(f"{where}: rendered text longer than {MAX_RENDERED} characters")
    return out


def render(obj: Any, variables: Mapping[str, Any], where: str = "template") -> Any:
    """A copy of ``obj`` with every string rendered (see the module docstring)."""
    if isinstance(obj, str):
        return _render_str(obj, variables, where)
    if isinstance(obj, list):
        return [render(v, variables, f"{where}[{i}]") for i, v in enumerate(obj)]
    if isinstance(obj, dict):
        out: dict[str, Any] = {}
        for k, v in obj.items():
            key = _render_str(k, variables, f"{where}.{k}") if isinstance(k, str) else k
            out[str(key)] = render(v, variables, f"{where}.{k}")
        return out
    return obj
