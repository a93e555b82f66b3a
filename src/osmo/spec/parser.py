"""YAML text → validated ``WorkflowSpec``, with every problem located.

Validation walks the composed YAML node tree (not plain data) so that each error carries the
line and column of the offending node. All problems of a file are collected and raised together.
"""

from __future__ import annotations

import base64
import binascii
import difflib
import posixpath
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from . import units
from .errors import SpecError, SpecIssue
from .graph import order_groups
from .model import (
    EXIT_ACTIONS,
    CheckpointSpec,
    DatasetRef,
    ExitAction,
    FileSpec,
    GroupSpec,
    InputSpec,
    KpiSpec,
    OutputSpec,
    ResourceSpec,
    TaskSpec,
    TimeoutSpec,
    TopologySpec,
    WorkflowSpec,
)
from .template import TOKEN_RE, LineMap, Rendered, render
from .yamlnodes import USES_LIBYAML, compose, is_null, kind_name, mapping_items, scalar_value

NAME_RE = re.compile(r"^[a-zA-Z]([a-zA-Z0-9_-]*[a-zA-Z0-9])?$")
MAX_WORKFLOW_NAME = 64
MAX_LABELS = 16
RESERVED_TASK_NAMES = {"osmo-ctrl"}
LABEL_KEY_RE = re.compile(
    r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
    r"[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$"
)
LABEL_VALUE_RE = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$")
URL_SCHEMES = ("s3://", "gs://", "azure://", "file://", "tos://", "swift://")
DATASET_NAME_RE = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]*(/[a-zA-Z0-9][a-zA-Z0-9_.-]*)?$")
OUTPUT_DIR = "/osmo/data/output"
DOWNLOAD_TYPES = ("download",)

T = TypeVar("T")


def normalize_name(name: str) -> str:
    """Names compare case-insensitively with ``-`` and ``_`` treated as equal."""
    return name.lower().replace("_", "-")


@dataclass
class ParseResult:
    spec: WorkflowSpec
    rendered: str
    warnings: list[str] = field(default_factory=list)


class _Checker:
    def __init__(self, line_map: LineMap):
        self.task_nodes: dict[str, Node] = {}
        # Tasks with problems of their own -> the task keys that failed.
        self.partial_tasks: dict[str, set[str]] = {}
        self.task_keys: dict[str, str] = {}  # task name -> key path of its first declaration
        self.issues: list[SpecIssue] = []
        self.warnings: list[str] = []
        self.line_map = line_map

    def error(
        self, node: Node | None, message: str, key: str | None, task: str | None = None
    ) -> None:
        if node is None:
            self.issues.append(SpecIssue(message, None, None, key, task))
            return
        line = self.line_map.original(node.start_mark.line + 1)
        self.issues.append(SpecIssue(message, line, node.start_mark.column + 1, key, task))

    # ---- generic node readers -------------------------------------------------------------

    def mapping(
        self,
        node: Node,
        key: str,
        allowed: tuple[str, ...],
        what: str,
        task: str | None = None,
        ignored: tuple[str, ...] = (),
    ) -> dict[str, tuple[Node, Node]] | None:
        if not isinstance(node, MappingNode):
            self.error(node, f"{what} must be a mapping, got {kind_name(node)}", key, task)
            return None
        out: dict[str, tuple[Node, Node]] = {}
        for k_node, v_node in mapping_items(node):
            if not isinstance(k_node, ScalarNode):
                self.error(k_node, f"keys of {what} must be strings", key, task)
                continue
            name = str(k_node.value)
            if name in out:
                self.error(k_node, f"duplicate key {name!r} in {what}", f"{key}.{name}", task)
                continue
            if name in ignored:
                continue
            if name not in allowed:
                hint = difflib.get_close_matches(name, allowed, n=1)
                more = (
                    f"; did you mean {hint[0]!r}?" if hint else f"; allowed: {', '.join(allowed)}"
                )
                self.error(k_node, f"unknown key {name!r} in {what}{more}", f"{key}.{name}", task)
                continue
            out[name] = (k_node, v_node)
        return out

    def require(
        self,
        fields: dict[str, tuple[Node, Node]],
        node: Node,
        name: str,
        key: str,
        what: str,
        task: str | None = None,
    ) -> Node | None:
        if name not in fields:
            self.error(node, f"missing required key {name!r} in {what}", f"{key}.{name}", task)
            return None
        return fields[name][1]

    def string(self, node: Node, key: str, what: str, task: str | None = None) -> str | None:
        if isinstance(node, ScalarNode) and not is_null(node):
            value = scalar_value(node)
            if isinstance(value, str):
                return value
            if isinstance(value, int | float) and not isinstance(value, bool):
                return str(node.value)
        self.error(node, f"{what} must be a string, got {kind_name(node)}", key, task)
        return None

    def text(self, node: Node, key: str, what: str, task: str | None = None) -> str | None:
        """Any scalar, as the text written (``true`` stays ``true``, ``1.0`` stays ``1.0``)."""
        if isinstance(node, ScalarNode) and not is_null(node):
            return str(node.value)
        if is_null(node):
            return ""
        self.error(node, f"{what} must be a scalar value, got {kind_name(node)}", key, task)
        return None

    def boolean(self, node: Node, key: str, what: str, task: str | None = None) -> bool | None:
        if isinstance(node, ScalarNode):
            value = scalar_value(node)
            if isinstance(value, bool):
                return value
        self.error(node, f"{what} must be true or false, got {kind_name(node)}", key, task)
        return None

    def integer(
        self, node: Node, key: str, what: str, task: str | None = None, minimum: int = 0
    ) -> int | None:
        if isinstance(node, ScalarNode):
            value = scalar_value(node)
            if isinstance(value, str) and units.is_whole(value.strip().lstrip("+")):
                value = int(value)
            if isinstance(value, int) and not isinstance(value, bool):
                if value < minimum:
                    self.error(node, f"{what} must be at least {minimum}, got {value}", key, task)
                    return None
                return value
        self.error(node, f"{what} must be a whole number, got {kind_name(node)}", key, task)
        return None

    def sequence(
        self, node: Node, key: str, what: str, task: str | None = None
    ) -> list[Node] | None:
        if isinstance(node, SequenceNode):
            return list(node.value)
        if is_null(node):
            return []
        self.error(node, f"{what} must be a list, got {kind_name(node)}", key, task)
        return None

    def string_list(
        self, node: Node, key: str, what: str, task: str | None = None
    ) -> list[str] | None:
        items = self.sequence(node, key, what, task)
        if items is None:
            return None
        out = []
        for i, item in enumerate(items):
            value = self.text(item, f"{key}[{i}]", f"each item of {what}", task)
            if value is not None:
                out.append(value)
        return out

    def string_map(
        self, node: Node, key: str, what: str, task: str | None = None
    ) -> dict[str, str] | None:
        if is_null(node):
            return {}
        if not isinstance(node, MappingNode):
            self.error(node, f"{what} must be a mapping, got {kind_name(node)}", key, task)
            return None
        out: dict[str, str] = {}
        for k_node, v_node in mapping_items(node):
            k = self.text(k_node, key, f"a key of {what}", task)
            if k is None:
                continue
            if k in out:
                self.error(k_node, f"duplicate key {k!r} in {what}", f"{key}.{k}", task)
                continue
            v = self.text(v_node, f"{key}.{k}", f"{what} value {k!r}", task)
            if v is not None:
                out[k] = v
        return out

    def parsed(
        self,
        node: Node,
        key: str,
        parse: Callable[[object], T],
        task: str | None = None,
        what: str = "",
    ) -> T | None:
        value: object = scalar_value(node) if isinstance(node, ScalarNode) else None
        if not isinstance(node, ScalarNode) or value is None:
            self.error(node, f"{what} must be a scalar value, got {kind_name(node)}", key, task)
            return None
        try:
            return parse(value)
        except units.UnitError as exc:
            self.error(node, f"{what}: {exc}" if what else str(exc), key, task)
            return None


# ---- the spec ------------------------------------------------------------------------------

WORKFLOW_KEYS = ("name", "tasks", "groups", "resources", "timeout", "labels", "pool")
WORKFLOW_INTERNAL = ("backend",)
TASK_KEYS = (
    "name",
    "image",
    "command",
    "args",
    "lead",
    "environment",
    "files",
    "inputs",
    "outputs",
    "credentials",
    "resource",
    "volumeMounts",
    "exitActions",
    "checkpoint",
    "privileged",
    "hostNetwork",
    "kpis",
    "downloadType",
    "cacheSize",
)
TASK_INTERNAL = ("resources", "backend")
GROUP_KEYS = ("name", "tasks", "barrier", "ignoreNonleadStatus")
RESOURCE_KEYS = ("cpu", "gpu", "memory", "storage", "platform", "nodesExcluded", "topology")


class _SpecParser(_Checker):
    def workflow(self, root: Node | None, rendered: Rendered) -> WorkflowSpec | None:
        if root is None or is_null(root):
            self.error(None, "the file is empty; expected a mapping with a 'workflow' key", None)
            return None
        fields = self.mapping(root, "", ("version", "workflow", "default-values"), "the file")
        if fields is None:
            return None
        version = 2
        if "version" in fields:
            v_node = fields["version"][1]
            v = scalar_value(v_node) if isinstance(v_node, ScalarNode) else None
            if str(v).strip() != "2":
                self.error(
                    v_node,
                    f"unsupported spec version "
                    f"{v_node.value if isinstance(v_node, ScalarNode) else kind_name(v_node)}; "
                    "only version 2 is supported",
                    "version",
                )
        wf_node = self.require(fields, root, "workflow", "", "the file")
        if wf_node is None:
            return None
        wf = self.mapping(wf_node, "workflow", WORKFLOW_KEYS, "workflow", ignored=WORKFLOW_INTERNAL)
        if wf is None:
            return None

        name = None
        name_node = self.require(wf, wf_node, "name", "workflow", "workflow")
        if name_node is not None:
            name = self.string(name_node, "workflow.name", "workflow name")
            if name is not None:
                if not NAME_RE.match(name):
                    self.error(
                        name_node,
                        f"invalid workflow name {name!r}: use letters, digits, '-' and "
                        "'_', starting with a letter and ending with a letter or digit",
                        "workflow.name",
                    )
                elif len(name) > MAX_WORKFLOW_NAME:
                    self.error(
                        name_node,
                        f"workflow name is {len(name)} characters; at most {MAX_WORKFLOW_NAME} "
                        "are allowed",
                        "workflow.name",
                    )

        resources = self.resources(wf.get("resources"))
        timeout = self.timeout(wf.get("timeout"))
        labels = self.labels(wf.get("labels"))
        pool = None
        if "pool" in wf:
            pool = self.string(wf["pool"][1], "workflow.pool", "workflow pool")

        groups: list[GroupSpec] = []
        declared_as = "tasks"
        if "tasks" in wf and "groups" in wf:
            self.error(
                wf["groups"][0],
                "workflow has both 'tasks' and 'groups'; use one of them",
                "workflow.groups",
            )
        elif "tasks" in wf:
            items = self.sequence(wf["tasks"][1], "workflow.tasks", "workflow tasks")
            if items is not None and not items:
                self.error(wf["tasks"][1], "workflow tasks must not be empty", "workflow.tasks")
            for i, t_node in enumerate(items or []):
                task = self.task(t_node, f"workflow.tasks[{i}]", resources)
                if task is not None:
                    task.lead = True
                    groups.append(GroupSpec(name=f"{task.name}-group", tasks=[task]))
        elif "groups" in wf:
            declared_as = "groups"
            items = self.sequence(wf["groups"][1], "workflow.groups", "workflow groups")
            if items is not None and not items:
                self.error(wf["groups"][1], "workflow groups must not be empty", "workflow.groups")
            for i, g_node in enumerate(items or []):
                group = self.group(g_node, f"workflow.groups[{i}]", resources)
                if group is not None:
                    groups.append(group)
        else:
            self.error(wf_node, "workflow needs 'tasks' or 'groups'", "workflow")

        self.task_nodes = self._task_nodes(wf)
        self.check_names(wf, groups, declared_as)
        self.check_resources_used(groups, resources, wf)
        self.check_tokens(groups)
        ordered = self.order(groups, declared_as)

        if self.issues or name is None:
            return None
        return WorkflowSpec(
            version=version,
            name=name,
            groups=ordered,
            declared_as=declared_as,
            resources=resources or {},
            timeout=timeout or TimeoutSpec(),
            labels=labels or {},
            pool=pool,
            default_values=rendered.default_values,
        )

    # ---- sections -----------------------------------------------------------------------------

    def resources(self, item: tuple[Node, Node] | None) -> dict[str, ResourceSpec] | None:
        if item is None:
            return {"default": ResourceSpec()}
        node = item[1]
        if is_null(node):
            return {"default": ResourceSpec()}
        if not isinstance(node, MappingNode):
            self.error(
                node,
                "workflow resources must be a mapping of names to resource specs, got "
                f"{kind_name(node)}",
                "workflow.resources",
            )
            return None
        out: dict[str, ResourceSpec] = {}
        for k_node, v_node in mapping_items(node):
            if not isinstance(k_node, ScalarNode):
                self.error(k_node, "resource names must be strings", "workflow.resources")
                continue
            rname = str(k_node.value)
            if rname in out:
                self.error(k_node, f"duplicate resource {rname!r}", f"workflow.resources.{rname}")
                continue
            spec = self.resource_spec(v_node, f"workflow.resources.{rname}", f"resource {rname!r}")
            # An invalid entry was reported already; keep its name so tasks using it do not
            # get a second, misleading "not defined" error.
            out[rname] = spec if spec is not None else ResourceSpec()
        return out

    def resource_spec(self, node: Node, key: str, what: str) -> ResourceSpec | None:
        if is_null(node):
            return ResourceSpec()
        fields = self.mapping(node, key, RESOURCE_KEYS, what)
        if fields is None:
            return None
        spec = ResourceSpec()
        ok = True
        if "cpu" in fields:
            v_node = fields["cpu"][1]
            raw = scalar_value(v_node) if isinstance(v_node, ScalarNode) else None
            if isinstance(raw, float):
                self.error(
                    v_node,
                    f"{what} cpu must be a whole number of cores, got {v_node.value}",
                    f"{key}.cpu",
                )
                ok = False
            else:
                spec.cpu = self.integer(v_node, f"{key}.cpu", f"{what} cpu")
                ok = ok and spec.cpu is not None
        if "gpu" in fields:
            spec.gpu = self.integer(fields["gpu"][1], f"{key}.gpu", f"{what} gpu")
            ok = ok and spec.gpu is not None
        for fname in ("memory", "storage"):
            if fname in fields:
                v_node = fields[fname][1]
                size = self.parsed(
                    v_node, f"{key}.{fname}", units.parse_size, what=f"{what} {fname}"
                )
                if size is None:
                    ok = False
                    continue
                setattr(spec, fname, str(v_node.value))
                setattr(spec, f"{fname}_bytes", size)
        if "platform" in fields:
            spec.platform = self.string(
                fields["platform"][1], f"{key}.platform", f"{what} platform"
            )
        if "nodesExcluded" in fields:
            nodes = self.string_list(
                fields["nodesExcluded"][1], f"{key}.nodesExcluded", f"{what} nodesExcluded"
            )
            spec.nodes_excluded = nodes or []
        if "topology" in fields:
            items = self.sequence(fields["topology"][1], f"{key}.topology", f"{what} topology")
            for i, t_node in enumerate(items or []):
                tkey = f"{key}.topology[{i}]"
                tf = self.mapping(
                    t_node, tkey, ("key", "group", "requirementType"), "a topology requirement"
                )
                if tf is None:
                    continue
                k_node = self.require(tf, t_node, "key", tkey, "a topology requirement")
                tkey_value = self.string(k_node, f"{tkey}.key", "topology key") if k_node else None
                group = "default"
                if "group" in tf:
                    group = (
                        self.string(tf["group"][1], f"{tkey}.group", "topology group") or "default"
                    )
                req = "required"
                if "requirementType" in tf:
                    req_node = tf["requirementType"][1]
                    req_value = self.string(
                        req_node, f"{tkey}.requirementType", "topology requirementType"
                    )
                    if req_value not in ("required", "preferred"):
                        self.error(
                            req_node,
                            "topology requirementType must be 'required' or 'preferred', "
                            f"got {req_value!r}",
                            f"{tkey}.requirementType",
                        )
                    else:
                        req = req_value
                if tkey_value:
                    spec.topology.append(
                        TopologySpec(key=tkey_value, group=group, requirement_type=req)
                    )
        return spec if ok else None

    def timeout(self, item: tuple[Node, Node] | None) -> TimeoutSpec | None:
        if item is None or is_null(item[1]):
            return TimeoutSpec()
        node = item[1]
        fields = self.mapping(
            node, "workflow.timeout", ("exec_timeout", "queue_timeout"), "workflow timeout"
        )
        if fields is None:
            return None
        spec = TimeoutSpec()
        for fname in ("exec_timeout", "queue_timeout"):
            if fname in fields and not is_null(fields[fname][1]):
                setattr(
                    spec,
                    fname,
                    self.parsed(
                        fields[fname][1],
                        f"workflow.timeout.{fname}",
                        units.parse_duration,
                        what=fname,
                    ),
                )
        return spec

    def labels(self, item: tuple[Node, Node] | None) -> dict[str, str] | None:
        if item is None:
            return {}
        node = item[1]
        labels = self.string_map(node, "workflow.labels", "workflow labels")
        if labels is None:
            return None
        if len(labels) > MAX_LABELS:
            self.error(
                node,
                f"workflow has {len(labels)} labels; at most {MAX_LABELS} are allowed",
                "workflow.labels",
            )
        if isinstance(node, MappingNode):
            for k_node, v_node in mapping_items(node):
                if not isinstance(k_node, ScalarNode) or not isinstance(v_node, ScalarNode):
                    continue  # reported by string_map
                k, v = str(k_node.value), str(v_node.value) if not is_null(v_node) else ""
                if not LABEL_KEY_RE.match(k) or len(k.rsplit("/", 1)[-1]) > 63:
                    self.error(
                        k_node,
                        f"invalid label key {k!r}: use a Kubernetes label key (letters, "
                        "digits, '-', '_', '.', optional 'prefix/')",
                        f"workflow.labels.{k}",
                    )
                if not v:
                    self.error(v_node, f"label {k!r} has an empty value", f"workflow.labels.{k}")
                elif not LABEL_VALUE_RE.match(v) or len(v) > 63:
                    self.error(
                        v_node,
                        f"invalid value {v!r} for label {k!r}: at most 63 letters, digits, "
                        "'-', '_', '.', starting and ending with a letter or digit",
                        f"workflow.labels.{k}",
                    )
        return labels

    def group(
        self, node: Node, key: str, resources: dict[str, ResourceSpec] | None
    ) -> GroupSpec | None:
        peek = _peek_name(node)
        fields = self.mapping(node, key, GROUP_KEYS, f"group {peek!r}" if peek else "a group")
        if fields is None:
            return None
        name_node = self.require(fields, node, "name", key, "a group")
        name = self.string(name_node, f"{key}.name", "group name") if name_node else None
        what = f"group {name!r}" if name else "a group"
        if name is not None and not NAME_RE.match(name):
            self.error(
                name_node,
                f"invalid group name {name!r}: use letters, digits, '-' and '_', starting "
                "with a letter and ending with a letter or digit",
                f"{key}.name",
            )
        barrier = True
        if "barrier" in fields:
            barrier = (
                self.boolean(fields["barrier"][1], f"{key}.barrier", f"{what} barrier") is not False
            )
        ignore = True
        if "ignoreNonleadStatus" in fields:
            ignore = (
                self.boolean(
                    fields["ignoreNonleadStatus"][1],
                    f"{key}.ignoreNonleadStatus",
                    f"{what} ignoreNonleadStatus",
                )
                is not False
            )
        tasks_node = self.require(fields, node, "tasks", key, what)
        tasks: list[TaskSpec] = []
        if tasks_node is not None:
            items = self.sequence(tasks_node, f"{key}.tasks", f"{what} tasks")
            if items is not None and not items:
                self.error(tasks_node, f"{what} has no tasks", f"{key}.tasks")
            lead_nodes: list[Node] = []
            for i, t_node in enumerate(items or []):
                task = self.task(t_node, f"{key}.tasks[{i}]", resources)
                if task is None:
                    continue
                tasks.append(task)
                if task.lead:
                    lead_nodes.append(t_node)
            if len(tasks) == 1 and not lead_nodes and len(items or []) == 1:
                tasks[0].lead = True
            elif (
                tasks
                and len(tasks) == len(items or [])
                and not any("lead" in self.partial_tasks.get(t.name, ()) for t in tasks)
            ):
                if not lead_nodes:
                    self.error(
                        tasks_node,
                        f"{what} has {len(tasks)} tasks but none is marked 'lead: true'; "
                        "exactly one must be",
                        f"{key}.tasks",
                    )
                elif len(lead_nodes) > 1:
                    leads = ", ".join(t.name for t in tasks if t.lead)
                    self.error(
                        lead_nodes[1],
                        f"{what} has {len(lead_nodes)} lead tasks ({leads}); exactly one must be",
                        f"{key}.tasks",
                    )
        if name is None or not tasks:
            return None
        return GroupSpec(name=name, tasks=tasks, barrier=barrier, ignore_nonlead_status=ignore)

    def task(
        self, node: Node, key: str, resources: dict[str, ResourceSpec] | None
    ) -> TaskSpec | None:
        peek = _peek_name(node)
        fields = self.mapping(
            node, key, TASK_KEYS, f"task {peek!r}" if peek else "a task", peek, TASK_INTERNAL
        )
        if fields is None:
            return None
        name_node = self.require(fields, node, "name", key, "a task")
        name = self.string(name_node, f"{key}.name", "task name") if name_node else None
        what = f"task {name!r}" if name else "a task"
        t = name
        n_before = len(self.issues)
        if name is not None:
            if not NAME_RE.match(name):
                self.error(
                    name_node,
                    f"invalid task name {name!r}: use letters, digits, '-' and '_', starting "
                    "with a letter and ending with a letter or digit",
                    f"{key}.name",
                    t,
                )
            elif normalize_name(name) in RESERVED_TASK_NAMES:
                self.error(name_node, f"task name {name!r} is reserved", f"{key}.name", t)
        # Tag issues raised before the name was known with the task name.
        image_node = self.require(fields, node, "image", key, what, t)
        image = self.string(image_node, f"{key}.image", f"{what} image", t) if image_node else None
        if image is not None and not image.strip():
            self.error(image_node, f"{what} image must not be empty", f"{key}.image", t)
        command_node = self.require(fields, node, "command", key, what, t)
        command = None
        if command_node is not None:
            if isinstance(command_node, ScalarNode) and not is_null(command_node):
                self.error(
                    command_node,
                    f"{what} command must be a list, e.g. [bash, -c]",
                    f"{key}.command",
                    t,
                )
            else:
                command = self.string_list(command_node, f"{key}.command", f"{what} command", t)
                if command is not None and not command:
                    self.error(
                        command_node, f"{what} command must not be empty", f"{key}.command", t
                    )
        args: list[str] = []
        if "args" in fields:
            args = self.string_list(fields["args"][1], f"{key}.args", f"{what} args", t) or []
        lead = False
        if "lead" in fields:
            lead = bool(self.boolean(fields["lead"][1], f"{key}.lead", f"{what} lead", t))
        environment: dict[str, str] = {}
        if "environment" in fields:
            environment = (
                self.string_map(
                    fields["environment"][1], f"{key}.environment", f"{what} environment", t
                )
                or {}
            )
        files = self.files(fields.get("files"), key, what, t)
        inputs = self.inputs(fields.get("inputs"), key, what, t)
        outputs = self.outputs(fields.get("outputs"), key, what, t)
        credentials = self.credentials(fields.get("credentials"), key, what, t)
        resource = "default"
        if "resource" in fields:
            resource = (
                self.string(fields["resource"][1], f"{key}.resource", f"{what} resource", t)
                or "default"
            )
        volume_mounts: list[str] = []
        if "volumeMounts" in fields:
            volume_mounts = (
                self.string_list(
                    fields["volumeMounts"][1], f"{key}.volumeMounts", f"{what} volumeMounts", t
                )
                or []
            )
            for i, mount in enumerate(volume_mounts):
                src, _, dest = mount.partition(":")
                if not src.startswith("/") or (dest and not dest.startswith("/")):
                    self.error(
                        fields["volumeMounts"][1],
                        f"{what} volume mount {mount!r} must be an absolute path or 'src:dest' "
                        "with absolute paths",
                        f"{key}.volumeMounts[{i}]",
                        t,
                    )
        exit_actions = self.exit_actions(fields.get("exitActions"), key, what, t)
        checkpoint = self.checkpoints(fields.get("checkpoint"), key, what, t)
        privileged = False
        if "privileged" in fields:
            privileged = bool(
                self.boolean(fields["privileged"][1], f"{key}.privileged", f"{what} privileged", t)
            )
        host_network = False
        if "hostNetwork" in fields:
            host_network = bool(
                self.boolean(
                    fields["hostNetwork"][1], f"{key}.hostNetwork", f"{what} hostNetwork", t
                )
            )
        kpis = self.kpis(fields.get("kpis"), key, what, t)
        download_type = None
        if "downloadType" in fields:
            dt_node = fields["downloadType"][1]
            download_type = self.string(dt_node, f"{key}.downloadType", f"{what} downloadType", t)
            if download_type is not None and download_type not in DOWNLOAD_TYPES:
                self.error(
                    dt_node,
                    f"{what} downloadType {download_type!r} is not supported; use one "
                    f"of: {', '.join(DOWNLOAD_TYPES)}",
                    f"{key}.downloadType",
                    t,
                )
        cache_size = None
        if "cacheSize" in fields:
            cache_size = self.parsed(
                fields["cacheSize"][1],
                f"{key}.cacheSize",
                units.parse_cache_size,
                t,
                f"{what} cacheSize",
            )

        if name is not None:
            for i in range(n_before, len(self.issues)):
                if self.issues[i].task is None:
                    issue = self.issues[i]
                    self.issues[i] = SpecIssue(
                        issue.message, issue.line, issue.column, issue.key, name
                    )
        if name is None:
            return None
        self.task_keys.setdefault(name, key)
        # A task with problems of its own still takes part in the workflow-wide checks (names,
        # dependencies, resources), so that every problem of the file is reported at once; the
        # parts that failed are remembered so those checks do not report follow-on errors.
        failed = {_field_of(issue.key, key) for issue in self.issues[n_before:]}
        if failed or image is None or not command:
            self.partial_tasks[name] = failed
        res_spec = (resources or {}).get(resource, ResourceSpec())
        return TaskSpec(
            name=name,
            image=image or "",
            command=command or [],
            args=args,
            lead=lead,
            environment=environment,
            files=files,
            inputs=inputs,
            outputs=outputs,
            credentials=credentials,
            resource=resource,
            resources=res_spec,
            volume_mounts=volume_mounts,
            exit_actions=exit_actions,
            checkpoint=checkpoint,
            privileged=privileged,
            host_network=host_network,
            kpis=kpis,
            download_type=download_type,
            cache_size=cache_size,
        )

    # ---- task parts ---------------------------------------------------------------------------

    def files(
        self, item: tuple[Node, Node] | None, key: str, what: str, t: str | None
    ) -> list[FileSpec]:
        if item is None:
            return []
        items = self.sequence(item[1], f"{key}.files", f"{what} files", t) or []
        out: list[FileSpec] = []
        seen: set[str] = set()
        for i, f_node in enumerate(items):
            fkey = f"{key}.files[{i}]"
            ff = self.mapping(
                f_node, fkey, ("path", "contents", "localpath", "base64"), f"a file of {what}", t
            )
            if ff is None:
                continue
            p_node = self.require(ff, f_node, "path", fkey, f"a file of {what}", t)
            path = self.string(p_node, f"{fkey}.path", "file path", t) if p_node else None
            if path is not None and p_node is not None:
                norm = posixpath.normpath(path)
                if not path.startswith("/"):
                    self.error(p_node, f"file path {path!r} must be absolute", f"{fkey}.path", t)
                elif (norm == "/osmo" or norm.startswith("/osmo/")) and not norm.startswith(
                    OUTPUT_DIR + "/"
                ):
                    self.error(
                        p_node,
                        f"file path {path!r} is under /osmo, which is reserved "
                        f"(only {OUTPUT_DIR}/... is allowed)",
                        f"{fkey}.path",
                        t,
                    )
                elif norm in seen:
                    self.error(
                        p_node, f"file path {path!r} is injected more than once", f"{fkey}.path", t
                    )
                seen.add(norm)
            contents = localpath = None
            if "contents" in ff:
                contents = self.text(ff["contents"][1], f"{fkey}.contents", "file contents", t)
            if "localpath" in ff:
                localpath = self.string(
                    ff["localpath"][1], f"{fkey}.localpath", "file localpath", t
                )
            if "contents" in ff and "localpath" in ff:
                self.error(
                    ff["localpath"][0],
                    "a file takes 'contents' or 'localpath', not both",
                    f"{fkey}.localpath",
                    t,
                )
            elif "contents" not in ff and "localpath" not in ff:
                self.error(f_node, "a file needs 'contents' or 'localpath'", fkey, t)
            b64 = False
            if "base64" in ff:
                b64 = bool(self.boolean(ff["base64"][1], f"{fkey}.base64", "file base64", t))
                if b64 and contents is not None:
                    try:
                        base64.b64decode(contents, validate=True)
                    except (binascii.Error, ValueError):
                        self.error(
                            ff["contents"][1],
                            "file contents are marked base64 but are not valid base64",
                            f"{fkey}.contents",
                            t,
                        )
            if path is not None:
                out.append(FileSpec(path=path, contents=contents, localpath=localpath, base64=b64))
        return out

    def _regex(self, fields: dict[str, tuple[Node, Node]], key: str, t: str | None) -> str | None:
        if "regex" not in fields:
            return None
        r_node = fields["regex"][1]
        regex = self.string(r_node, f"{key}.regex", "regex", t)
        if regex is not None:
            try:
                re.compile(regex)
            except re.error as exc:
                self.error(r_node, f"invalid regex {regex!r}: {exc}", f"{key}.regex", t)
        return regex

    def _url(self, node: Node, key: str, t: str | None) -> str | None:
        url = self.string(node, key, "url", t)
        if url is not None and not url.startswith(URL_SCHEMES):
            self.error(
                node,
                f"unsupported storage URL {url!r}; use one of {', '.join(URL_SCHEMES)}",
                key,
                t,
            )
        return url

    def _dataset(self, node: Node, key: str, t: str | None, output: bool) -> DatasetRef | None:
        allowed = ("name", "regex", "metadata", "labels") if output else ("name", "regex")
        df = self.mapping(node, key, allowed, "a dataset reference", t)
        if df is None:
            return None
        n_node = self.require(df, node, "name", key, "a dataset reference", t)
        full = self.string(n_node, f"{key}.name", "dataset name", t) if n_node else None
        if full is None or n_node is None:
            return None
        name, _, version = full.partition(":")
        if not DATASET_NAME_RE.match(name) or (":" in full and not version):
            self.error(
                n_node,
                f"invalid dataset name {full!r}; use NAME or NAME:VERSION_OR_TAG",
                f"{key}.name",
                t,
            )
            return None
        if version and not re.match(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", version):
            self.error(n_node, f"invalid dataset version or tag {version!r}", f"{key}.name", t)
            return None
        if output and version.isdigit():
            self.error(
                n_node,
                f"an output dataset takes a tag, not a version number ({full!r}); versions "
                "are numbered by the platform",
                f"{key}.name",
                t,
            )
        regex = self._regex(df, key, t)
        metadata: dict[str, str] = {}
        labels: dict[str, str] = {}
        if "metadata" in df:
            metadata = (
                self.string_map(df["metadata"][1], f"{key}.metadata", "dataset metadata", t) or {}
            )
        if "labels" in df:
            labels = self.string_map(df["labels"][1], f"{key}.labels", "dataset labels", t) or {}
        return DatasetRef(
            name=name, version=version or None, regex=regex, metadata=metadata, labels=labels
        )

    def inputs(
        self, item: tuple[Node, Node] | None, key: str, what: str, t: str | None
    ) -> list[InputSpec]:
        if item is None:
            return []
        items = self.sequence(item[1], f"{key}.inputs", f"{what} inputs", t) or []
        out: list[InputSpec] = []
        for i, i_node in enumerate(items):
            ikey = f"{key}.inputs[{i}]"
            fi = self.mapping(i_node, ikey, ("task", "url", "dataset", "regex"), "an input", t)
            if fi is None:
                continue
            kinds = [k for k in ("task", "url", "dataset") if k in fi]
            if len(kinds) != 1:
                self.error(
                    i_node, "an input takes exactly one of 'task', 'url' or 'dataset'", ikey, t
                )
                continue
            regex = self._regex(fi, ikey, t)
            kind = kinds[0]
            v_node = fi[kind][1]
            if kind == "task":
                ref = self.string(v_node, f"{ikey}.task", "input task", t)
                if ref is None:
                    continue
                wf_id, sep, task_name = ref.rpartition(":")
                out.append(
                    InputSpec(
                        kind="task", task=task_name, workflow_id=wf_id if sep else None, regex=regex
                    )
                )
            elif kind == "url":
                url = self._url(v_node, f"{ikey}.url", t)
                if url is not None:
                    out.append(InputSpec(kind="url", url=url, regex=regex))
            else:
                ds = self._dataset(v_node, f"{ikey}.dataset", t, output=False)
                if ds is not None:
                    out.append(InputSpec(kind="dataset", dataset=ds, regex=regex))
        return out

    def outputs(
        self, item: tuple[Node, Node] | None, key: str, what: str, t: str | None
    ) -> list[OutputSpec]:
        if item is None:
            return []
        items = self.sequence(item[1], f"{key}.outputs", f"{what} outputs", t) or []
        out: list[OutputSpec] = []
        for i, o_node in enumerate(items):
            okey = f"{key}.outputs[{i}]"
            fo = self.mapping(o_node, okey, ("url", "dataset", "regex"), "an output", t)
            if fo is None:
                continue
            kinds = [k for k in ("url", "dataset") if k in fo]
            if len(kinds) != 1:
                self.error(o_node, "an output takes exactly one of 'url' or 'dataset'", okey, t)
                continue
            regex = self._regex(fo, okey, t)
            if kinds[0] == "url":
                url = self._url(fo["url"][1], f"{okey}.url", t)
                if url is not None:
                    out.append(OutputSpec(kind="url", url=url, regex=regex))
            else:
                ds = self._dataset(fo["dataset"][1], f"{okey}.dataset", t, output=True)
                if ds is not None:
                    out.append(OutputSpec(kind="dataset", dataset=ds, regex=regex))
        return out

    def credentials(
        self, item: tuple[Node, Node] | None, key: str, what: str, t: str | None
    ) -> dict[str, dict[str, str] | str]:
        if item is None or is_null(item[1]):
            return {}
        node = item[1]
        if not isinstance(node, MappingNode):
            self.error(
                node,
                f"{what} credentials must be a mapping of credential names to an env mapping "
                "or a folder path",
                f"{key}.credentials",
                t,
            )
            return {}
        out: dict[str, dict[str, str] | str] = {}
        for k_node, v_node in mapping_items(node):
            if not isinstance(k_node, ScalarNode):
                self.error(k_node, "credential names must be strings", f"{key}.credentials", t)
                continue
            cname = str(k_node.value)
            ckey = f"{key}.credentials.{cname}"
            if cname in out:
                self.error(k_node, f"credential {cname!r} is given more than once", ckey, t)
                continue
            if isinstance(v_node, MappingNode):
                env = self.string_map(v_node, ckey, f"credential {cname!r}", t) or {}
                for env_name in env:
                    if not re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", env_name):
                        self.error(
                            v_node,
                            f"credential {cname!r}: {env_name!r} is not a valid environment "
                            "variable name",
                            ckey,
                            t,
                        )
                out[cname] = env
            else:
                path = self.string(v_node, ckey, f"credential {cname!r} path", t)
                if path is not None:
                    if not path.startswith("/"):
                        self.error(
                            v_node,
                            f"credential {cname!r} folder {path!r} must be an absolute path",
                            ckey,
                            t,
                        )
                    out[cname] = path
        return out

    def exit_actions(
        self, item: tuple[Node, Node] | None, key: str, what: str, t: str | None
    ) -> dict[ExitAction, list[tuple[int, int]]]:
        if item is None or is_null(item[1]):
            return {}
        node = item[1]
        if not isinstance(node, MappingNode):
            self.error(
                node,
                f"{what} exitActions must be a mapping of COMPLETE, FAIL or RESCHEDULE "
                "to exit codes",
                f"{key}.exitActions",
                t,
            )
            return {}
        out: dict[ExitAction, list[tuple[int, int]]] = {}
        for k_node, v_node in mapping_items(node):
            if not isinstance(k_node, ScalarNode):
                self.error(
                    k_node,
                    "exitActions keys must be COMPLETE, FAIL or RESCHEDULE",
                    f"{key}.exitActions",
                    t,
                )
                continue
            action = str(k_node.value).upper()
            akey = f"{key}.exitActions.{k_node.value}"
            if action not in EXIT_ACTIONS:
                self.error(
                    k_node,
                    f"unknown exit action {k_node.value!r}; use COMPLETE, FAIL or RESCHEDULE",
                    akey,
                    t,
                )
                continue
            if action in out:
                self.error(k_node, f"exit action {action} is given more than once", akey, t)
                continue
            ranges = self.parsed(
                v_node, akey, units.parse_code_ranges, t, f"exit codes for {action}"
            )
            if ranges is not None:
                out[action] = ranges
        return out

    def checkpoints(
        self, item: tuple[Node, Node] | None, key: str, what: str, t: str | None
    ) -> list[CheckpointSpec]:
        if item is None:
            return []
        items = self.sequence(item[1], f"{key}.checkpoint", f"{what} checkpoint", t) or []
        out: list[CheckpointSpec] = []
        for i, c_node in enumerate(items):
            ckey = f"{key}.checkpoint[{i}]"
            fc = self.mapping(
                c_node, ckey, ("path", "url", "frequency", "regex"), "a checkpoint", t
            )
            if fc is None:
                continue
            p_node = self.require(fc, c_node, "path", ckey, "a checkpoint", t)
            u_node = self.require(fc, c_node, "url", ckey, "a checkpoint", t)
            f_node = self.require(fc, c_node, "frequency", ckey, "a checkpoint", t)
            path = self.string(p_node, f"{ckey}.path", "checkpoint path", t) if p_node else None
            if path is not None and not path.startswith("/"):
                self.error(p_node, f"checkpoint path {path!r} must be absolute", f"{ckey}.path", t)
            url = self._url(u_node, f"{ckey}.url", t) if u_node else None
            freq = (
                self.parsed(
                    f_node, f"{ckey}.frequency", units.parse_duration, t, "checkpoint frequency"
                )
                if f_node
                else None
            )
            if freq == 0:
                self.error(
                    f_node, "checkpoint frequency must be greater than zero", f"{ckey}.frequency", t
                )
            regex = self._regex(fc, ckey, t)
            if path and url and freq:
                out.append(CheckpointSpec(path=path, url=url, frequency_s=freq, regex=regex))
        return out

    def kpis(
        self, item: tuple[Node, Node] | None, key: str, what: str, t: str | None
    ) -> list[KpiSpec]:
        if item is None:
            return []
        items = self.sequence(item[1], f"{key}.kpis", f"{what} kpis", t) or []
        out: list[KpiSpec] = []
        for i, k_node in enumerate(items):
            kkey = f"{key}.kpis[{i}]"
            fk = self.mapping(k_node, kkey, ("index", "path"), "a kpi", t)
            if fk is None:
                continue
            idx_node = self.require(fk, k_node, "index", kkey, "a kpi", t)
            p_node = self.require(fk, k_node, "path", kkey, "a kpi", t)
            index = self.text(idx_node, f"{kkey}.index", "kpi index", t) if idx_node else None
            path = self.string(p_node, f"{kkey}.path", "kpi path", t) if p_node else None
            if index is not None and path is not None:
                out.append(KpiSpec(index=index, path=path))
        return out

    # ---- cross-checks -------------------------------------------------------------------------

    def _task_nodes(self, wf: dict[str, tuple[Node, Node]]) -> dict[str, Node]:
        """Name → mapping node of each task (for locating cross-reference errors)."""
        out: dict[str, Node] = {}

        def visit(tasks_node: Node) -> None:
            if isinstance(tasks_node, SequenceNode):
                for t_node in tasks_node.value:
                    if isinstance(t_node, MappingNode):
                        for k, v in mapping_items(t_node):
                            if getattr(k, "value", None) == "name" and isinstance(v, ScalarNode):
                                out.setdefault(str(v.value), t_node)

        if "tasks" in wf:
            visit(wf["tasks"][1])
        if "groups" in wf and isinstance(wf["groups"][1], SequenceNode):
            for g_node in wf["groups"][1].value:
                if isinstance(g_node, MappingNode):
                    for k, v in mapping_items(g_node):
                        if getattr(k, "value", None) == "tasks":
                            visit(v)
        return out

    def _field_node(self, mapping: Node | None, *path: str | int) -> Node | None:
        node = mapping
        for part in path:
            if isinstance(part, int):
                if not isinstance(node, SequenceNode) or part >= len(node.value):
                    return mapping
                node = node.value[part]
            else:
                if not isinstance(node, MappingNode):
                    return mapping
                found = None
                for k, v in mapping_items(node):
                    if getattr(k, "value", None) == part:
                        found = v
                if found is None:
                    return mapping
                node = found
        return node

    def _find_scalar(self, node: Node | None, match: Callable[[str], bool]) -> Node | None:
        if node is None:
            return None
        if isinstance(node, ScalarNode):
            return node if isinstance(node.value, str) and match(node.value) else None
        children = node.value if isinstance(node, SequenceNode) else []
        if isinstance(node, MappingNode):
            children = [v for _, v in node.value]
        for child in children:
            found = self._find_scalar(child, match)
            if found is not None:
                return found
        return None

    def _find_text(self, task: str, text: str) -> Node | None:
        """The scalar node of ``task`` whose value contains ``text`` (else the task itself)."""
        task_node = self.task_nodes.get(task)
        return self._find_scalar(task_node, lambda v: text in v) or task_node

    def _task_key(self, task: str | None, field: str = "") -> str:
        """The key path of a task (``workflow.tasks[2]``), or of one of its fields."""
        prefix = self.task_keys.get(task or "", "workflow")
        return f"{prefix}.{field}" if field else prefix

    def check_names(
        self, wf: dict[str, tuple[Node, Node]], groups: list[GroupSpec], declared_as: str
    ) -> None:
        names: list[tuple[str, Node, str]] = []  # (kind, name node, key) in file order

        def add_tasks(tasks_node: Node, prefix: str) -> None:
            if isinstance(tasks_node, SequenceNode):
                for i, t_node in enumerate(tasks_node.value):
                    n = self._field_node(t_node, "name")
                    if isinstance(n, ScalarNode) and n is not t_node and isinstance(n.value, str):
                        names.append(("task", n, f"{prefix}.tasks[{i}].name"))

        if declared_as == "tasks" and "tasks" in wf:
            add_tasks(wf["tasks"][1], "workflow")
        if declared_as == "groups" and isinstance(wf["groups"][1], SequenceNode):
            for gi, g_node in enumerate(wf["groups"][1].value):
                n = self._field_node(g_node, "name")
                if isinstance(n, ScalarNode) and n is not g_node:
                    names.append(("group", n, f"workflow.groups[{gi}].name"))
                tasks_node = self._field_node(g_node, "tasks")
                if tasks_node is not g_node and tasks_node is not None:
                    add_tasks(tasks_node, f"workflow.groups[{gi}]")
        seen: dict[str, str] = {}
        for kind, node, key in names:
            name = str(node.value)
            norm = normalize_name(name)
            if norm in seen:
                other = seen[norm]
                same = (
                    ""
                    if other == name
                    else f" (names compare ignoring case and '-'/'_': {other!r})"
                )
                self.error(
                    node,
                    f"duplicate {kind} name {name!r}{same}",
                    key,
                    name if kind == "task" else None,
                )
            else:
                seen[norm] = name

    def check_resources_used(
        self,
        groups: list[GroupSpec],
        resources: dict[str, ResourceSpec] | None,
        wf: dict[str, tuple[Node, Node]],
    ) -> None:
        if resources is None:
            return
        for g in groups:
            for task in g.tasks:
                if "resource" in self.partial_tasks.get(task.name, ()):
                    continue
                if task.resource not in resources:
                    node = self._field_node(self.task_nodes.get(task.name), "resource")
                    if task.resource == "default":
                        msg = (
                            f"task {task.name!r} uses resource 'default', but workflow.resources "
                            "has no 'default' entry"
                        )
                    else:
                        msg = (
                            f"task {task.name!r} uses resource {task.resource!r}, which "
                            "is not defined in workflow.resources"
                        )
                    hint = difflib.get_close_matches(task.resource, list(resources), n=1)
                    if hint:
                        msg += f"; did you mean {hint[0]!r}?"
                    self.error(node, msg, self._task_key(task.name, "resource"), task.name)

    def check_tokens(self, groups: list[GroupSpec]) -> None:
        for g in groups:
            peers = {t.name for t in g.tasks}
            for task in g.tasks:
                if task.name in self.partial_tasks:
                    continue
                input_tasks = {i.task for i in task.inputs if i.kind == "task"}
                texts = [*task.command, *task.args, *task.environment.values()]
                texts += [f.contents for f in task.files if f.contents and not f.base64]
                for text in texts:
                    for m in TOKEN_RE.finditer(text):
                        token = m.group(1)
                        kind, _, arg = token.partition(":")
                        if kind == "input":
                            if arg.isascii() and arg.isdigit():
                                if len(arg) > 6 or int(arg) >= len(task.inputs):
                                    self.error(
                                        self._find_text(task.name, m.group(0)),
                                        f"task {task.name!r}: {{{{input:{arg}}}}} refers "
                                        f"to input {arg}, but the task has {len(task.inputs)} "
                                        "input(s)",
                                        self._task_key(task.name),
                                        task.name,
                                    )
                            elif arg not in input_tasks:
                                self.error(
                                    self._find_text(task.name, m.group(0)),
                                    f"task {task.name!r}: {{{{input:{arg}}}}} names a "
                                    "task that is not among its inputs",
                                    self._task_key(task.name),
                                    task.name,
                                )
                        elif kind == "host" and arg not in peers:
                            self.error(
                                self._find_text(task.name, m.group(0)),
                                f"task {task.name!r}: {{{{host:{arg}}}}} names a task "
                                f"that is not in group {g.name!r}",
                                self._task_key(task.name),
                                task.name,
                            )

    def order(self, groups: list[GroupSpec], declared_as: str) -> list[GroupSpec]:
        problems, ordered = order_groups(groups, declared_as)
        for message, task, dep in problems:
            node = self._field_node(self.task_nodes.get(task or ""), "inputs")
            if dep is not None and node is not None:
                node = self._find_scalar(node, _matches_input(dep)) or node
            self.error(node, message, self._task_key(task, "inputs"), task)
        return ordered


def _field_of(issue_key: str | None, task_key: str) -> str:
    """The task key an issue is about: ``lead`` for ``workflow.tasks[0].lead``."""
    if issue_key and issue_key.startswith(task_key + "."):
        return re.split(r"[.\[]", issue_key[len(task_key) + 1 :])[0]
    return ""


def _matches_input(dep: str) -> Callable[[str], bool]:
    return lambda v: v == dep or v.endswith(":" + dep)


def _peek_name(node: Node) -> str | None:
    if isinstance(node, MappingNode):
        for k, v in mapping_items(node):
            if getattr(k, "value", None) == "name" and isinstance(v, ScalarNode):
                return str(v.value)
    return None


def _position(rendered: Rendered, offset: int) -> tuple[int, int]:
    """(line, column) in the user's file of a character offset into the rendered text."""
    before = rendered.text[:offset]
    line = rendered.line_map.original(before.count("\n") + 1)
    return line, offset - (before.rfind("\n") + 1) + 1


def _mark_position(rendered: Rendered, mark: Any) -> tuple[int, int]:
    """(line, column) in the user's file of a YAML mark; the end of the text (which YAML
    reports as the line after the last) is the end of the last line that has content."""
    if mark.line >= rendered.text.count("\n"):
        lines = rendered.text.rstrip().splitlines()
        if lines and mark.line >= len(lines):
            return rendered.line_map.original(len(lines)), len(lines[-1]) + 1
    return rendered.line_map.original(mark.line + 1), mark.column + 1


def parse_rendered(rendered: Rendered, *, max_num_tasks: int | None = None) -> ParseResult:
    """Validate rendered text into a ``WorkflowSpec`` (raises ``SpecError``)."""
    try:
        root = compose(rendered.text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        problem = exc.problem or exc.context or "invalid YAML"
        context = exc.context_mark
        if exc.problem_mark is not None and exc.context and problem.startswith("but "):
            problem = f"{exc.context}, {problem}"  # "expected a single document, but found..."
        elif exc.problem_mark is not None and exc.context and context is not None:
            where, at = _mark_position(rendered, context)
            problem += f" ({exc.context} at line {where}, column {at})"
        position: tuple[int | None, int | None] = (None, None)
        if mark is not None:
            position = _mark_position(rendered, mark)
        raise SpecError([SpecIssue(f"YAML syntax error: {problem}", *position)]) from None
    except yaml.reader.ReaderError as exc:
        offset = exc.position
        if USES_LIBYAML:  # libyaml counts bytes of the UTF-8 encoding, not characters
            offset = len(rendered.text.encode()[:offset].decode(errors="ignore"))
        line, column = _position(rendered, offset)
        char = f"#x{exc.character:04x}" if isinstance(exc.character, int) else repr(exc.character)
        raise SpecError(
            [
                SpecIssue(
                    f"YAML syntax error: unacceptable character {char}: {exc.reason}", line, column
                )
            ]
        ) from None
    except yaml.YAMLError as exc:
        raise SpecError([SpecIssue(f"YAML syntax error: {exc}")]) from None
    except UnicodeEncodeError as exc:  # e.g. a lone surrogate in text not read from a file
        line, column = _position(rendered, exc.start)
        raise SpecError(
            [SpecIssue(f"the spec is not valid Unicode text: {exc.reason}", line, column)]
        ) from None
    parser = _SpecParser(rendered.line_map)
    spec = parser.workflow(root, rendered)
    if spec is not None and max_num_tasks is not None:
        n = len(spec.tasks)
        if n > max_num_tasks:
            parser.error(
                None, f"workflow has {n} tasks; the limit is {max_num_tasks}", "workflow.tasks"
            )
    if parser.issues or spec is None:
        issues = sorted(parser.issues, key=lambda i: (i.line is None, i.line or 0, i.column or 0))
        raise SpecError(issues or [SpecIssue("invalid workflow spec")])
    return ParseResult(spec=spec, rendered=rendered.text, warnings=parser.warnings)


def parse_workflow(
    text: str,
    set_values: dict[str, Any] | None = None,
    set_string_values: dict[str, Any] | None = None,
    *,
    max_num_tasks: int | None = None,
    max_render_seconds: float | None = None,
) -> ParseResult:
    """Render and validate a workflow file's text. Raises ``SpecError`` listing every problem."""
    kwargs = {} if max_render_seconds is None else {"max_seconds": max_render_seconds}
    rendered = render(text, set_values, set_string_values, **kwargs)
    return parse_rendered(rendered, max_num_tasks=max_num_tasks)
