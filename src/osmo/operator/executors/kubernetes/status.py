"""Pods → task statuses and exit codes (reference §2.2-2.3); nodes → capacity (§9).

Pure functions over the JSON the API server returns (dicts, camelCase keys).
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass
from typing import Any

from ....protocol import NodeInfo
from .objects import CTRL, GPU_RESOURCE, INIT

BACKEND_ERROR = 3001
START_ERROR = 3003
EVICTED = 3004
START_TIMEOUT = 3005
PREEMPTED = 3006
RUNTIME_ERROR = 2002
INIT_OFFSET = 255  # reference §2.3: osmo-init exit codes are offset by 255 ...
CTRL_OFFSET = 2000  # ... and osmo-ctrl's by 2000, unless they report an OSMO code themselves

IMAGE_PULL_REASONS = {"ErrImagePull", "ImagePullBackOff", "InvalidImageName", "ErrImageNeverPull"}
CONFIG_ERROR_REASONS = {"CreateContainerConfigError", "CreateContainerError"}
START_ERROR_REASONS = {"StartError", "ContainerCannotRun", "RunContainerError"}
PREEMPTION_REASONS = {"PreemptionByScheduler", "PreemptionByKubeScheduler"}
EVICTION_REASONS = {"EvictionByEvictionAPI", "TerminationByKubelet"}
NODE_LOST_REASONS = {"DeletionByTaintManager", "DeletionByPodGC", "NodeLost"}


@dataclass(frozen=True)
class PodOutcome:
    status: str  # a TaskStatus value
    exit_code: int | None = None
    message: str | None = None
    node: str | None = None
    started_at: float | None = None
    finished_at: float | None = None

    @property
    def final(self) -> bool:
        return self.status not in ("INITIALIZING", "RUNNING", "SCHEDULING", "PROCESSING")


def _ts(value: str | None) -> float | None:
    if not value:
        return None
    from datetime import datetime

    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def _conditions(pod: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c.get("type", ""): c for c in pod.get("status", {}).get("conditions") or []}


def _statuses(pod: dict[str, Any], key: str) -> dict[str, dict[str, Any]]:
    return {c.get("name", ""): c for c in pod.get("status", {}).get(key) or []}


def _termination_code(term: dict[str, Any], offset: int) -> tuple[int, str | None]:
    """Exit code of a runtime container: the OSMO code it wrote as its termination message
    (``{"exit_code": N, "message": ...}``), else its raw code plus ``offset``."""
    raw = int(term.get("exitCode", 0) or 0)
    msg = term.get("message") or ""
    try:
        doc = json.loads(msg)
        if isinstance(doc, dict) and isinstance(doc.get("exit_code"), int):
            return int(doc["exit_code"]), doc.get("message")
    except ValueError:
        pass
    if raw == 0:
        return 0, None
    return raw + offset, msg.strip()[-500:] or term.get("reason")


def user_container_name(pod: dict[str, Any]) -> str:
    for c in pod.get("spec", {}).get("containers") or []:
        if c.get("name") != CTRL:
            return str(c.get("name"))
    return ""


def pod_outcome(
    pod: dict[str, Any],
    *,
    now: float | None = None,
    start_timeout: float = 1800.0,
    config_error_timeout: float = 600.0,
) -> PodOutcome | None:
    """The task status a pod implies, or None while it waits to be scheduled."""
    now = time.time() if now is None else now
    status = pod.get("status", {}) or {}
    phase = status.get("phase", "Pending")
    node = pod.get("spec", {}).get("nodeName") or None
    conds = _conditions(pod)
    init = _statuses(pod, "initContainerStatuses")
    containers = _statuses(pod, "containerStatuses")
    user = user_container_name(pod)
    started = _ts(status.get("startTime"))
    reason = status.get("reason") or ""
    message = status.get("message") or ""

    disruption = conds.get("DisruptionTarget")
    if disruption and disruption.get("status") == "True":
        d_reason = disruption.get("reason", "")
        d_msg = disruption.get("message") or d_reason
        if d_reason in PREEMPTION_REASONS:
            return PodOutcome("FAILED_PREEMPTED", PREEMPTED, d_msg, node, started, now)
        if d_reason in EVICTION_REASONS:
            return PodOutcome("FAILED_EVICTED", EVICTED, d_msg, node, started, now)
        if d_reason in NODE_LOST_REASONS:
            return PodOutcome("FAILED_BACKEND_ERROR", BACKEND_ERROR, d_msg, node, started, now)
    if reason == "Evicted":
        return PodOutcome("FAILED_EVICTED", EVICTED, message or "evicted", node, started, now)
    if reason in ("NodeLost", "UnexpectedAdmissionError", "NodeAffinity", "OutOfcpu"):
        return PodOutcome(
            "FAILED_BACKEND_ERROR", BACKEND_ERROR, f"{reason}: {message}", node, started, now
        )
    if reason in ("Preempting", "PreemptionByScheduler"):
        return PodOutcome("FAILED_PREEMPTED", PREEMPTED, message or reason, node, started, now)

    # Waiting reasons that end the task whatever the phase.
    all_status = list(init.values()) + list(containers.values())
    for cs in all_status:
        waiting = (cs.get("state") or {}).get("waiting") or {}
        w_reason = waiting.get("reason", "")
        if w_reason in IMAGE_PULL_REASONS:
            text = f"{cs.get('name')}: {w_reason}: {waiting.get('message') or cs.get('image')}"
            return PodOutcome("FAILED_IMAGE_PULL", START_ERROR, text, node, started, now)
        if w_reason in CONFIG_ERROR_REASONS:
            since = _ts((conds.get("PodScheduled") or {}).get("lastTransitionTime")) or started
            if since is not None and now - since > config_error_timeout:
                text = f"{cs.get('name')}: {w_reason}: {waiting.get('message', '')}"
                return PodOutcome("FAILED_BACKEND_ERROR", BACKEND_ERROR, text, node, started, now)

    for cs in all_status:
        term = (cs.get("state") or {}).get("terminated") or {}
        if term.get("reason") in START_ERROR_REASONS:
            text = f"{cs.get('name')}: {term.get('reason')}: {term.get('message', '')}".strip()
            return PodOutcome("FAILED_START_ERROR", START_ERROR, text, node, started, now)
        if term.get("reason") == "OOMKilled":
            text = f"{cs.get('name')} was OOMKilled (exit code {term.get('exitCode', 137)})"
            return PodOutcome("FAILED_EVICTED", EVICTED, text, node, started, now)

    if phase == "Pending":
        scheduled = conds.get("PodScheduled", {})
        if scheduled.get("status") != "True":
            return None  # still queued in the cluster: the task stays PROCESSING
        since = _ts(scheduled.get("lastTransitionTime")) or started or now
        if now - since > start_timeout:
            return PodOutcome(
                "FAILED_START_TIMEOUT",
                START_TIMEOUT,
                f"the pod did not start within {int(start_timeout)}s of being scheduled",
                node,
                started,
                now,
            )
        # An init container that already failed ends the task (restartPolicy Never).
        term = ((init.get(INIT) or {}).get("state") or {}).get("terminated") or {}
        if term and int(term.get("exitCode", 0) or 0) != 0:
            code, msg = _termination_code(term, INIT_OFFSET)
            return PodOutcome("FAILED", code, msg, node, started, now)
        return PodOutcome("INITIALIZING", None, None, node, started)

    if phase == "Running":
        user_state = (containers.get(user) or {}).get("state") or {}
        if "running" in user_state or "terminated" in user_state:
            run_started = _ts((user_state.get("running") or {}).get("startedAt")) or _ts(
                (user_state.get("terminated") or {}).get("startedAt")
            )
            return PodOutcome("RUNNING", None, None, node, run_started or started)
        return PodOutcome("INITIALIZING", None, None, node, started)

    if phase == "Unknown":
        return PodOutcome(
            "FAILED_BACKEND_ERROR",
            BACKEND_ERROR,
            message or "the pod's node stopped reporting (phase Unknown)",
            node,
            started,
            now,
        )

    if phase in ("Succeeded", "Failed"):
        return _final(pod, phase, init, containers, user, node, started, now)
    return None


def _final(
    pod: dict[str, Any],
    phase: str,
    init: dict[str, dict[str, Any]],
    containers: dict[str, dict[str, Any]],
    user: str,
    node: str | None,
    started: float | None,
    now: float,
) -> PodOutcome:
    """Exit code of a finished pod: the highest of user, offset init and offset ctrl codes."""
    codes: list[tuple[int, str | None]] = []
    finished = None
    run_started = None
    init_term = ((init.get(INIT) or {}).get("state") or {}).get("terminated")
    if init_term:
        codes.append(_termination_code(init_term, INIT_OFFSET))
    user_term = ((containers.get(user) or {}).get("state") or {}).get("terminated")
    if user_term:
        code = int(user_term.get("exitCode", 0) or 0)
        codes.append((code, None if code == 0 else f"the command exited with code {code}"))
        finished = _ts(user_term.get("finishedAt"))
        run_started = _ts(user_term.get("startedAt"))
    ctrl_term = ((containers.get(CTRL) or {}).get("state") or {}).get("terminated")
    if ctrl_term:
        codes.append(_termination_code(ctrl_term, CTRL_OFFSET))
        finished = _ts(ctrl_term.get("finishedAt")) or finished
    if not codes:
        code = 0 if phase == "Succeeded" else RUNTIME_ERROR
        msg = None if code == 0 else (pod.get("status", {}).get("message") or "the pod failed")
        codes.append((code, msg))
    code, msg = max(codes, key=lambda c: c[0])
    if phase == "Failed" and code == 0:
        code, msg = RUNTIME_ERROR, pod.get("status", {}).get("message") or "the pod failed"
    return PodOutcome(
        "COMPLETED" if code == 0 else "FAILED",
        code,
        msg,
        node,
        run_started or started,
        finished or now,
    )


# ---- nodes ------------------------------------------------------------------------------------

_SUFFIX = {
    "Ki": 1024,
    "Mi": 1024**2,
    "Gi": 1024**3,
    "Ti": 1024**4,
    "Pi": 1024**5,
    "Ei": 1024**6,
    "n": 1e-9,
    "u": 1e-6,
    "m": 1e-3,
    "k": 1e3,
    "M": 1e6,
    "G": 1e9,
    "T": 1e12,
    "P": 1e15,
    "E": 1e18,
}
_QTY = re.compile(r"^([+-]?[0-9.]+(?:[eE][+-]?[0-9]+)?)([A-Za-z]*)$")


def parse_quantity(q: str | int | float | None) -> float:
    """A Kubernetes resource quantity ("500m", "16Gi", "1e3") as a number."""
    if q is None:
        return 0.0
    if isinstance(q, int | float):
        return float(q)
    m = _QTY.match(q.strip())
    if not m:
        raise ValueError(f"invalid quantity {q!r}")
    number, suffix = m.groups()
    if suffix and suffix not in _SUFFIX:
        raise ValueError(f"invalid quantity suffix in {q!r}")
    return float(number) * (_SUFFIX[suffix] if suffix else 1)


def node_available(node: dict[str, Any], rules: dict[str, str]) -> bool:
    """Reference §9: not cordoned, and every condition whose type matches a rule has a status
    matching that rule (``^Ready$: True`` always applies)."""
    if node.get("spec", {}).get("unschedulable"):
        return False
    all_rules = {"^Ready$": "True", **rules}
    conditions = node.get("status", {}).get("conditions") or []
    ready_seen = False
    for c in conditions:
        ctype, cstatus = c.get("type", ""), c.get("status", "")
        if ctype == "Ready":
            ready_seen = True
        for type_re, status_re in all_rules.items():
            if re.search(type_re, ctype) and not re.fullmatch(status_re, cstatus):
                return False
    return ready_seen


def node_info(node: dict[str, Any], rules: dict[str, str]) -> NodeInfo:
    meta = node.get("metadata", {})
    status = node.get("status", {})
    alloc = status.get("allocatable") or status.get("capacity") or {}
    labels = dict(meta.get("labels") or {})
    return NodeInfo(
        name=meta.get("name", ""),
        cpus=parse_quantity(alloc.get("cpu")),
        memory_bytes=int(parse_quantity(alloc.get("memory"))),
        gpus=int(parse_quantity(alloc.get(GPU_RESOURCE))),
        gpu_type=labels.get("nvidia.com/gpu.product"),
        storage_bytes=int(parse_quantity(alloc.get("ephemeral-storage"))),
        labels=labels,
        available=node_available(node, rules),
        taints=[
            {k: str(v) for k, v in t.items() if k in ("key", "value", "effect")}
            for t in node.get("spec", {}).get("taints") or []
        ],
        unschedulable=bool(node.get("spec", {}).get("unschedulable")),
        conditions={c.get("type", ""): c.get("status", "") for c in status.get("conditions") or []},
    )
