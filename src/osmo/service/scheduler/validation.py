"""Submit-time checks of a workflow against its pool: platforms, permissions, quota, resources.

Resource rules that mention node values (``K8_*``) pass when any one node of the task's platform
satisfies all of them; on failure the error lists, per node, why it does not.
"""

from __future__ import annotations

import re
from typing import Any

from ...protocol import NodeInfo
from ...spec.model import TaskSpec, WorkflowSpec
from ...spec.units import UnitError, parse_size
from .pools import UNSET, PlatformConfig, PoolConfig, ResourceRule

_OPS = {
    "LE": lambda a, b: a <= b,
    "GE": lambda a, b: a >= b,
    "LT": lambda a, b: a < b,
    "GT": lambda a, b: a > b,
    "EQ": lambda a, b: a == b,
    "NE": lambda a, b: a != b,
}
_SYMBOL = {"LE": "<=", "GE": ">=", "LT": "<", "GT": ">", "EQ": "==", "NE": "!="}
_NAME = re.compile(r"^[A-Z][A-Z0-9_]*$")


def _err(task: str | None, key: str, message: str) -> dict[str, Any]:
    return {"message": message, "task": task, "key": key, "line": None, "column": None}


def _number(value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, int | float):
        return float(value)
    text = str(value).strip()
    try:
        return float(text)
    except ValueError:
        pass
    try:
        return float(parse_size(text))
    except UnitError:
        return None


def request_variables(task: TaskSpec, defaults: dict[str, Any]) -> dict[str, Any]:
    """``USER_*`` values: the task's request, else platform then pool default variables."""
    r = task.resources
    out = dict(defaults)
    if r.cpu is not None:
        out["USER_CPU"] = r.cpu
    if r.gpu is not None:
        out["USER_GPU"] = r.gpu
    if r.memory_bytes is not None:
        out["USER_MEMORY"] = r.memory_bytes
    if r.storage_bytes is not None:
        out["USER_STORAGE"] = r.storage_bytes
    for k in ("USER_CPU", "USER_GPU", "USER_MEMORY", "USER_STORAGE"):
        out.setdefault(k, 0)
    return out


def node_variables(node: NodeInfo) -> dict[str, Any]:
    return {
        "K8_CPU": node.cpus,
        "K8_GPU": node.gpus,
        "K8_MEMORY": node.memory_bytes,
        "K8_STORAGE": node.storage_bytes,
        "K8_GPU_PRODUCT": node.gpu_type or "",
    }


def _operand(text: str, variables: dict[str, Any]) -> Any:
    t = text.strip()
    if t.startswith("{{") and t.endswith("}}"):
        t = t[2:-2].strip()
    if _NAME.match(t):
        return variables.get(t)
    return t


def _check(rule: ResourceRule, variables: dict[str, Any]) -> str | None:
    """None when the rule holds (or cannot be evaluated), else why not."""
    left, right = _operand(rule.left_operand, variables), _operand(rule.right_operand, variables)
    if left is None or right is None:
        return None  # an unresolved operand skips the rule
    ln, rn = _number(left), _number(right)
    ok = (
        _OPS[rule.operator](ln, rn)
        if ln is not None and rn is not None
        else _OPS[rule.operator](str(left), str(right))
    )
    if ok:
        return None
    return (
        rule.assert_message
        or f"{rule.left_operand} {_SYMBOL[rule.operator]} {rule.right_operand} is false ({left} vs {right})"
    )


def _fit_reasons(task: TaskSpec, node: NodeInfo) -> list[str]:
    r = task.resources
    reasons = []
    if r.cpu and r.cpu > node.cpus:
        reasons.append(f"needs {r.cpu} CPUs, has {node.cpus:g}")
    if r.gpu and r.gpu > node.gpus:
        reasons.append(f"needs {r.gpu} GPUs, has {node.gpus}")
    if r.memory_bytes and r.memory_bytes > node.memory_bytes:
        reasons.append(f"needs {r.memory} memory, has {node.memory_bytes / 1024**3:.1f}Gi")
    if r.storage_bytes and node.storage_bytes and r.storage_bytes > node.storage_bytes:
        reasons.append(f"needs {r.storage} storage, has {node.storage_bytes / 1024**3:.1f}Gi")
    return reasons


def platform_nodes(
    pool: PoolConfig, platform: PlatformConfig | None, nodes: list[NodeInfo]
) -> list[NodeInfo]:
    return [n for n in nodes if pool.node_matches(platform, n)]


def validate_workflow(
    spec: WorkflowSpec, pool: PoolConfig, priority: str, nodes: list[NodeInfo]
) -> list[dict[str, Any]]:
    errors: list[dict[str, Any]] = []
    memo: dict[Any, Any] = {}  # a 10,000-task spec repeats a handful of shapes
    for group in spec.groups:
        if priority != "LOW" and pool.gpu.guarantee != UNSET:
            gpus = sum(t.resources.gpu or 0 for t in group.tasks)
            if gpus > pool.gpu.guarantee:
                errors.append(
                    _err(
                        None,
                        f"groups.{group.name}",
                        (
                            f"group {group.name!r} needs {gpus} GPUs, more than pool {pool.name!r} guarantees "
                            f"to {priority} work ({pool.gpu.guarantee}); submit it with --priority LOW to borrow idle GPUs"
                        ),
                    )
                )
        for task in group.tasks:
            errors.extend(_validate_task(task, pool, nodes, memo))
    return errors


def _validate_task(
    task: TaskSpec, pool: PoolConfig, nodes: list[NodeInfo], memo: dict[Any, Any] | None = None
) -> list[dict[str, Any]]:
    errors: list[dict[str, Any]] = []
    name, platform = pool.platform(task.resources.platform)
    if task.resources.platform and platform is None:
        available = ", ".join(sorted(pool.platforms)) or "none"
        return [
            _err(
                task.name,
                "resources.platform",
                f"task {task.name!r}: platform {task.resources.platform!r} is not in pool {pool.name!r} (platforms: {available})",
            )
        ]
    where = f"platform {name!r}" if name else f"pool {pool.name!r}"
    allowed = platform or PlatformConfig()
    if task.privileged and not allowed.privileged_allowed:
        errors.append(
            _err(
                task.name,
                "privileged",
                f"task {task.name!r}: privileged containers are not allowed on {where}",
            )
        )
    if task.host_network and not allowed.host_network_allowed:
        errors.append(
            _err(
                task.name,
                "hostNetwork",
                f"task {task.name!r}: hostNetwork is not allowed on {where}",
            )
        )
    for mount in task.volume_mounts:
        src = mount.split(":", 1)[0]
        if src in allowed.default_mounts:
            errors.append(
                _err(
                    task.name,
                    "volumeMounts",
                    f"task {task.name!r}: {src} is mounted by default on {where}; do not request it",
                )
            )
        elif src not in allowed.allowed_mounts:
            errors.append(
                _err(
                    task.name,
                    "volumeMounts",
                    f"task {task.name!r}: mount {src} is not allowed on {where} (allowed: {', '.join(allowed.allowed_mounts) or 'none'})",
                )
            )
    rules = list(pool.common_resource_validations) + list(allowed.resource_validations)
    variables = request_variables(
        task, {**pool.common_default_variables, **allowed.default_variables}
    )
    static = [r for r in rules if "K8_" not in r.left_operand + r.right_operand]
    dynamic = [r for r in rules if r not in static]
    for rule in static:
        why = _check(rule, variables)
        if why:
            errors.append(_err(task.name, "resources", f"task {task.name!r}: {why}"))
    memo = {} if memo is None else memo
    r = task.resources
    shape = ("fit", name, r.cpu, r.gpu, r.memory_bytes, r.storage_bytes)
    if memo.get(shape) and not dynamic:
        return errors  # the same request already fits a node of this platform
    if ("nodes", name) not in memo:
        memo[("nodes", name)] = platform_nodes(pool, platform, nodes)
    candidates = memo[("nodes", name)]
    if not nodes:
        return errors  # backend never reported nodes: it is checked when it comes online
    if not candidates:
        errors.append(
            _err(
                task.name,
                "resources.platform",
                f"task {task.name!r}: no node of the backend {pool.backend!r} belongs to {where}",
            )
        )
        return errors
    reasons: dict[str, list[str]] = {}
    for node in candidates:
        misses = _fit_reasons(task, node)
        values = {**variables, **node_variables(node)}
        misses += [w for w in (_check(r, values) for r in dynamic) if w]
        if not misses:
            memo[shape] = True
            return errors
        reasons[node.name] = misses
    shown = list(reasons.items())[:10]
    table = "; ".join(f"{n}: {', '.join(w)}" for n, w in shown)
    more = f"; and {len(reasons) - len(shown)} more nodes" if len(reasons) > len(shown) else ""
    errors.append(
        _err(task.name, "resources", f"task {task.name!r} fits no node of {where}: {table}{more}")
    )
    return errors
