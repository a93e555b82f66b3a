"""The Kubernetes objects of one task group (reference §6.4-6.5), built as plain dicts.

Per group: a Secret with the injected files of all its tasks, a Secret with GENERIC credential
values, an image-pull Secret for registry credentials, a headless Service when the group has more
than one task (``{{host:<task>}}`` resolves to ``<task>.<service>.<namespace>.svc``), the
rendered group templates, a PodGroup when a gang scheduler is configured, and one Pod per task.

Every object carries ``app.kubernetes.io/managed-by=osmo`` and ``osmo.group_uuid=<hash>``, so a
group's objects are found (and deleted) by label; exact identities (workflow id, task name,
retry) are annotations, since label values are restricted.

A task pod:

- ``osmo-init`` (runtime image): makes ``/osmo/data/{input/<i>,output}``, downloads the inputs,
  and writes the launcher ``/osmo/bin/osmo_exec`` (a ``/bin/sh`` script) to a shared volume.
- the user container (the task's image; needs only ``/bin/sh``): ``/bin/sh /osmo/bin/osmo_exec
  <command> <args>`` waits for the ctrl sidecar's go, runs the command with its output sent to
  the sidecar, and records the exit code.
- ``osmo-ctrl`` (runtime image): streams the log, becomes Ready once inputs are in (the operator
  releases the group barrier when every member is Ready, through the ``osmo.io/barrier``
  annotation the sidecar reads from the downward API), uploads outputs after the command exits,
  and exits with the task's result in its termination message.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ....protocol import LaunchGroup, TaskLaunchSpec
from ....runtime.tokens import TokenContext, TokenError, substitute
from .config import KubernetesConfig, PlatformConfig, PoolConfig
from .templates import TemplateError, merge_all, render, variables_for

MANAGED_BY = "app.kubernetes.io/managed-by"
MANAGED_BY_VALUE = "osmo"
L_WORKFLOW = "osmo.workflow_id"
L_GROUP = "osmo.group"
L_GROUP_UUID = "osmo.group_uuid"
L_TASK = "osmo.task_name"
L_TASK_UUID = "osmo.task_uuid"
L_RETRY = "osmo.retry_id"
L_LEAD = "osmo.lead_container"
L_POOL = "osmo.pool"
L_PLATFORM = "osmo.platform"
L_PRIORITY = "osmo.priority"
L_SUBMITTED_BY = "osmo.submitted_by"
L_KIND = "osmo.kind"  # pod / files / secrets / pull / service / podgroup / template
A_WORKFLOW = "osmo.io/workflow-id"
A_GROUP = "osmo.io/group"
A_TASK = "osmo.io/task"
A_RETRY = "osmo.io/retry-id"
A_BARRIER = "osmo.io/barrier"  # "held" until the operator releases it, then "released"
A_GROUP_SIZE = "osmo.io/group-size"
A_LEAD = "osmo.io/lead"
A_POD_GROUP = "pod-group-name"  # KAI's annotation
L_COSCHED_POD_GROUP = "scheduling.x-k8s.io/pod-group"

CTRL = "osmo-ctrl"
INIT = "osmo-init"
RESERVED_CONTAINERS = (CTRL, INIT)
DATA_DIR = "/osmo/data"
BIN_DIR = "/osmo/bin"
PODINFO_DIR = "/osmo/podinfo"
LAUNCHER = f"{BIN_DIR}/osmo_exec"
READY_FILE = f"{BIN_DIR}/ready"
GPU_RESOURCE = "nvidia.com/gpu"
PRIORITIES = ("HIGH", "NORMAL", "LOW")

KAI_GROUP = ("scheduling.run.ai", "v2alpha2", "podgroups", "PodGroup")
COSCHED_GROUP = ("scheduling.x-k8s.io", "v1alpha1", "podgroups", "PodGroup")

_INVALID = re.compile(r"[^a-z0-9-]+")
_LABEL_INVALID = re.compile(r"[^A-Za-z0-9._-]+")


def short_hash(*parts: str, n: int = 8) -> str:
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:n]


def dns_label(text: str, max_len: int = 63) -> str:
    """A DNS-1123 label made from ``text``; a hash of the original is appended whenever the
    text had to change, so different inputs never collide."""
    clean = _INVALID.sub("-", text.lower()).strip("-")
    if clean == text and len(clean) <= max_len and clean and clean[0].isalpha():
        return clean
    suffix = short_hash(text, n=8)
    room = max_len - len(suffix) - 1
    head = clean[:room].strip("-")
    if not head or not head[0].isalpha():
        head = ("t" + head)[:room].strip("-")
    return f"{head}-{suffix}"


def label_value(text: str) -> str:
    """A valid label value (≤63 characters of ``[A-Za-z0-9._-]``, alphanumeric at both ends)."""
    clean = _LABEL_INVALID.sub("-", text).strip("-._")
    if clean == text and len(clean) <= 63:
        return clean
    suffix = short_hash(text, n=8)
    head = clean[: 63 - len(suffix) - 1].strip("-._")
    return f"{head}-{suffix}" if head else suffix


def group_uuid(workflow_id: str, group: str) -> str:
    return short_hash(workflow_id, group, n=16)


def task_uuid(workflow_id: str, task: str, retry_id: int) -> str:
    return short_hash(workflow_id, task, str(retry_id), n=16)


def pod_name(workflow_id: str, task: str, retry_id: int) -> str:
    return dns_label(f"{workflow_id}-{task}-{retry_id}")


def group_object_name(workflow_id: str, group: str, what: str) -> str:
    return dns_label(f"{workflow_id}-{group}") + f"-{what}"


def container_name(task: str) -> str:
    name = dns_label(task)
    return name if name not in RESERVED_CONTAINERS else f"{name}-user"


class LaunchError(Exception):
    """The group cannot be turned into objects (a platform refuses something, a template
    fails to render); every task of the group fails with START_ERROR and this message."""


@dataclass
class GroupObjects:
    """What one group needs created, in creation order (pods last)."""

    group_uuid: str
    selector: str
    prelude: list[dict[str, Any]] = field(default_factory=list)  # secrets, service, templates
    pod_group: dict[str, Any] | None = None
    pods: list[dict[str, Any]] = field(default_factory=list)


def _pool_platform(
    cfg: KubernetesConfig, pool_name: str | None, platform_name: str | None
) -> tuple[PoolConfig, PlatformConfig, str]:
    pool = cfg.pools.get(pool_name or "") or PoolConfig()
    name = platform_name or pool.default_platform or ""
    if platform_name and pool.platforms and platform_name not in pool.platforms:
        raise LaunchError(
            f"platform {platform_name!r} is not configured for pool {pool_name!r} on this backend"
        )
    return pool, pool.platforms.get(name) or PlatformConfig(), name


def _quantity_bytes(n: int) -> str:
    for unit, factor in (("Ti", 1024**4), ("Gi", 1024**3), ("Mi", 1024**2), ("Ki", 1024)):
        if n % factor == 0:
            return f"{n // factor}{unit}"
    return str(n)


def _resources(spec: TaskLaunchSpec) -> dict[str, Any]:
    req: dict[str, str] = {}
    if spec.cpu:
        req["cpu"] = str(spec.cpu)
    if spec.memory_bytes:
        req["memory"] = _quantity_bytes(spec.memory_bytes)
    if spec.storage_bytes:
        req["ephemeral-storage"] = _quantity_bytes(spec.storage_bytes)
    if spec.gpu:
        req[GPU_RESOURCE] = str(spec.gpu)
    if not req:
        return {}
    return {"requests": dict(req), "limits": dict(req)}


def _mounts(
    spec: TaskLaunchSpec, platform: PlatformConfig
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """hostPath volumes and mounts for ``volumeMounts`` (``src`` or ``src:dest``) plus the
    platform's default mounts; a source outside ``allowed_mounts`` is refused."""
    volumes: list[dict[str, Any]] = []
    mounts: list[dict[str, Any]] = []
    requested = list(platform.default_mounts)
    for m in spec.volume_mounts:
        src = m.split(":", 1)[0]
        if src not in platform.allowed_mounts:
            raise LaunchError(
                f"task {spec.task}: volume mount {src!r} is not allowed on this platform "
                f"(allowed: {', '.join(platform.allowed_mounts) or 'none'})"
            )
        requested.append(m)
    for i, m in enumerate(requested):
        src, _, dest = m.partition(":")
        name = f"osmo-host-{i}"
        volumes.append({"name": name, "hostPath": {"path": src}})
        mounts.append({"name": name, "mountPath": dest or src})
    return volumes, mounts


def _token_context(group: LaunchGroup, spec: TaskLaunchSpec, hosts: dict[str, str]) -> TokenContext:
    names: dict[str, int] = {}
    for i, inp in enumerate(spec.inputs):
        if inp.name is not None:
            names.setdefault(inp.name, i)
    return TokenContext(
        workflow_id=group.workflow_id,
        output=f"{DATA_DIR}/output",
        inputs=[f"{DATA_DIR}/input/{i}" for i in range(len(spec.inputs))],
        input_names=names,
        hosts=hosts,
        uuid=task_uuid(group.workflow_id, spec.task, spec.retry_id),
    )


def _secret_env(spec: TaskLaunchSpec) -> dict[str, str]:
    """Environment values that are secrets: GENERIC credentials given as ``secret_env``, and
    environment entries whose value the control plane asks to mask. They go into the group's
    credentials Secret (``secretKeyRef``), never into the Pod object."""
    masked = set(spec.mask)
    out = {k: v for k, v in spec.environment.items() if v in masked}
    out.update(spec.secret_env)
    return out


def runtime_task_doc(group: LaunchGroup, spec: TaskLaunchSpec, gated: bool) -> dict[str, Any]:
    """What ``osmo-runtime`` (init and ctrl) needs to know, passed as ``OSMO_TASK`` (JSON)."""
    return {
        "workflow_id": group.workflow_id,
        "group": group.group,
        "task": spec.task,
        "retry_id": spec.retry_id,
        "inputs": [i.model_dump() for i in spec.inputs],
        "output_url": spec.output_url,
        "outputs": [o.model_dump() for o in spec.outputs],
        "barrier": gated,
    }


def build_group(
    cfg: KubernetesConfig, group: LaunchGroup, specs: list[TaskLaunchSpec] | None = None
) -> GroupObjects:
    """Every object of ``group`` (or of ``specs``, a subset being relaunched)."""
    ns = cfg.namespace
    tasks = specs if specs is not None else group.tasks
    guuid = group_uuid(group.workflow_id, group.group)
    priority = (group.priority or "NORMAL").upper()
    if priority not in PRIORITIES:
        raise LaunchError(f"unknown priority {group.priority!r}")
    pool_name = group.pool or "default"
    multi = len(group.tasks) > 1
    gated = group.barrier and multi
    service = group_object_name(group.workflow_id, group.group, "hosts")
    hostnames = {t.task: dns_label(t.task) for t in group.tasks}
    hosts = (
        {name: f"{h}.{service}.{ns}.svc" for name, h in hostnames.items()}
        if multi
        else {name: "localhost" for name in hostnames}
    )
    base_labels = {
        MANAGED_BY: MANAGED_BY_VALUE,
        L_WORKFLOW: label_value(group.workflow_id),
        L_GROUP: label_value(group.group),
        L_GROUP_UUID: guuid,
        L_POOL: label_value(pool_name),
        L_PRIORITY: priority.lower(),
    }
    if group.submitted_by:
        base_labels[L_SUBMITTED_BY] = label_value(group.submitted_by)
    user_labels = {
        label_value(cfg.label_prefix + k)
        if len(cfg.label_prefix + k) <= 63
        else label_value(k): label_value(v)
        for k, v in group.labels.items()
    }
    group_annotations = {A_WORKFLOW: group.workflow_id, A_GROUP: group.group}

    def meta(name: str, kind: str, extra: Mapping[str, str] | None = None) -> dict[str, Any]:
        return {
            "name": name,
            "namespace": ns,
            "labels": {**base_labels, L_KIND: kind, **(extra or {})},
            "annotations": dict(group_annotations),
        }

    out = GroupObjects(group_uuid=guuid, selector=f"{L_GROUP_UUID}={guuid}")

    # ---- secrets ----------------------------------------------------------------------------
    files_secret = group_object_name(group.workflow_id, group.group, "files")
    files_data: dict[str, str] = {}
    creds_secret = group_object_name(group.workflow_id, group.group, "creds")
    creds_data: dict[str, str] = {}
    for ti, spec in enumerate(tasks):
        ctx = _token_context(group, spec, hosts)
        for fi, f in enumerate(spec.files):
            try:
                text = f.contents if f.base64 else substitute(f.contents, ctx)
            except TokenError as exc:
                raise LaunchError(f"task {spec.task}: file {f.path}: {exc}") from None
            files_data[f"t{ti}-f{fi}"] = (
                text if f.base64 else base64.b64encode(text.encode()).decode()
            )
        for var, value in _secret_env(spec).items():
            creds_data[f"t{ti}-env-{short_hash(var)}"] = base64.b64encode(value.encode()).decode()
        for folder, entries in spec.secret_files.items():
            for fname, value in entries.items():
                key = f"t{ti}-file-{short_hash(folder, fname)}"
                creds_data[key] = base64.b64encode(value.encode()).decode()
    if files_data:
        out.prelude.append(
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": meta(files_secret, "files"),
                "type": "Opaque",
                "data": files_data,
            }
        )
    if creds_data:
        out.prelude.append(
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": meta(creds_secret, "secrets"),
                "type": "Opaque",
                "data": creds_data,
            }
        )
    pull_secrets = [{"name": s} for s in cfg.image_pull_secrets]
    if group.registry_credentials:
        pull_name = group_object_name(group.workflow_id, group.group, "pull")
        auths = {
            c.registry: {
                "username": c.username,
                "password": c.password,
                "auth": base64.b64encode(f"{c.username}:{c.password}".encode()).decode(),
            }
            for c in group.registry_credentials
        }
        out.prelude.append(
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": meta(pull_name, "pull"),
                "type": "kubernetes.io/dockerconfigjson",
                "data": {
                    ".dockerconfigjson": base64.b64encode(
                        json.dumps({"auths": auths}).encode()
                    ).decode()
                },
            }
        )
        pull_secrets.append({"name": pull_name})

    # ---- service ----------------------------------------------------------------------------
    if multi:
        out.prelude.append(
            {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": meta(service, "service"),
                "spec": {
                    "clusterIP": "None",
                    "selector": {L_GROUP_UUID: guuid, L_KIND: "pod"},
                    # Members must resolve each other before they are Ready (the barrier).
                    "publishNotReadyAddresses": True,
                },
            }
        )

    # ---- pod group --------------------------------------------------------------------------
    sched = cfg.scheduler
    pg_name = group_object_name(group.workflow_id, group.group, "pg")
    queue = sched.queue or f"osmo-pool-{ns}-{pool_name}"
    pod_extra_labels: dict[str, str] = {}
    pod_extra_annotations: dict[str, str] = {}
    if sched.type == "kai":
        api_group, version, _, kind = KAI_GROUP
        spec_pg: dict[str, Any] = {"minMember": len(group.tasks), "queue": queue}
        if cfg.priority_classes:
            spec_pg["priorityClassName"] = f"osmo-{priority.lower()}"
        out.pod_group = {
            "apiVersion": f"{api_group}/{version}",
            "kind": kind,
            "metadata": meta(pg_name, "podgroup", {"kai.scheduler/queue": label_value(queue)}),
            "spec": spec_pg,
        }
        pod_extra_labels = {
            "kai.scheduler/queue": label_value(queue),
            "runai/queue": label_value(queue),
        }
        pod_extra_annotations = {A_POD_GROUP: pg_name}
    elif sched.type == "coscheduling":
        api_group, version, _, kind = COSCHED_GROUP
        out.pod_group = {
            "apiVersion": f"{api_group}/{version}",
            "kind": kind,
            "metadata": meta(pg_name, "podgroup"),
            "spec": {"minMember": len(group.tasks), "scheduleTimeoutSeconds": sched.timeout},
        }
        pod_extra_labels = {L_COSCHED_POD_GROUP: pg_name}

    # ---- group templates --------------------------------------------------------------------
    pool_cfg = cfg.pools.get(pool_name) or PoolConfig()
    wf_vars = {
        "WF_ID": group.workflow_id,
        "WF_UUID": short_hash(group.workflow_id, n=16),
        "WF_GROUP_UUID": guuid,
        "WF_SUBMITTED_BY": group.submitted_by or "",
        "WF_POOL": pool_name,
    }
    for tname in pool_cfg.common_group_templates:
        manifest = render(cfg.group_templates[tname], wf_vars, f"group template {tname}")
        if not isinstance(manifest, dict):
            raise LaunchError(f"group template {tname!r} did not render to a mapping")
        md = manifest.setdefault("metadata", {})
        md["namespace"] = ns
        md.setdefault("labels", {}).update({**base_labels, L_KIND: "template"})
        md.setdefault("annotations", {}).update(group_annotations)
        out.prelude.append(manifest)

    # ---- pods -------------------------------------------------------------------------------
    for ti, spec in enumerate(tasks):
        out.pods.append(
            _build_pod(
                cfg,
                group,
                spec,
                ti=ti,
                gated=gated,
                hostname=hostnames[spec.task],
                service=service if multi else None,
                hosts=hosts,
                base_labels=base_labels,
                user_labels=user_labels,
                extra_labels=pod_extra_labels,
                extra_annotations=pod_extra_annotations,
                files_secret=files_secret if files_data else None,
                creds_secret=creds_secret if creds_data else None,
                pull_secrets=pull_secrets,
                priority=priority,
                pool_name=pool_name,
                wf_vars=wf_vars,
            )
        )
    return out


def _build_pod(
    cfg: KubernetesConfig,
    group: LaunchGroup,
    spec: TaskLaunchSpec,
    *,
    ti: int,
    gated: bool,
    hostname: str,
    service: str | None,
    hosts: dict[str, str],
    base_labels: dict[str, str],
    user_labels: dict[str, str],
    extra_labels: dict[str, str],
    extra_annotations: dict[str, str],
    files_secret: str | None,
    creds_secret: str | None,
    pull_secrets: list[dict[str, str]],
    priority: str,
    pool_name: str,
    wf_vars: dict[str, str],
) -> dict[str, Any]:
    pool, platform, platform_name = _pool_platform(cfg, group.pool, spec.platform)
    if spec.privileged and not platform.privileged_allowed:
        raise LaunchError(f"task {spec.task}: privileged containers are not allowed here")
    if spec.host_network and not platform.host_network_allowed:
        raise LaunchError(f"task {spec.task}: hostNetwork is not allowed here")
    ctx = _token_context(group, spec, hosts)
    secret_env = _secret_env(spec)
    try:
        argv = [substitute(s, ctx) for s in (*spec.command, *spec.args)]
        env = {k: substitute(v, ctx) for k, v in spec.environment.items() if k not in secret_env}
    except TokenError as exc:
        raise LaunchError(f"task {spec.task}: {exc}") from None
    user = container_name(spec.task)
    name = pod_name(group.workflow_id, spec.task, spec.retry_id)
    task_doc = json.dumps(runtime_task_doc(group, spec, gated), separators=(",", ":"))
    osmo_env = [
        {"name": "OSMO_WORKFLOW_ID", "value": group.workflow_id},
        {"name": "OSMO_GROUP_NAME", "value": group.group},
        {"name": "OSMO_TASK_NAME", "value": spec.task},
        {"name": "OSMO_RETRY_ID", "value": str(spec.retry_id)},
    ]
    user_env: list[dict[str, Any]] = [{"name": k, "value": v} for k, v in env.items()]
    user_env += osmo_env
    if not spec.gpu:
        user_env.append({"name": "NVIDIA_VISIBLE_DEVICES", "value": ""})
    volumes: list[dict[str, Any]] = [
        {"name": "osmo-data", "emptyDir": {}},
        {"name": "osmo-bin", "emptyDir": {"medium": "Memory", "sizeLimit": "16Mi"}},
        {
            "name": "osmo-podinfo",
            "downwardAPI": {
                "items": [
                    {"path": "annotations", "fieldRef": {"fieldPath": "metadata.annotations"}}
                ]
            },
        },
    ]
    user_mounts: list[dict[str, Any]] = [
        {"name": "osmo-data", "mountPath": DATA_DIR},
        {"name": "osmo-bin", "mountPath": BIN_DIR},
    ]
    if files_secret and spec.files:
        volumes.append(
            {
                "name": "osmo-files",
                "secret": {
                    "secretName": files_secret,
                    "items": [
                        {"key": f"t{ti}-f{fi}", "path": f"t{ti}-f{fi}"}
                        for fi in range(len(spec.files))
                    ],
                },
            }
        )
        for fi, f in enumerate(spec.files):
            user_mounts.append(
                {
                    "name": "osmo-files",
                    "mountPath": f.path,
                    "subPath": f"t{ti}-f{fi}",
                    "readOnly": True,
                }
            )
    if creds_secret:
        for var in secret_env:
            user_env.append(
                {
                    "name": var,
                    "valueFrom": {
                        "secretKeyRef": {
                            "name": creds_secret,
                            "key": f"t{ti}-env-{short_hash(var)}",
                        }
                    },
                }
            )
        for di, (folder, entries) in enumerate(spec.secret_files.items()):
            vol = f"osmo-cred-{di}"
            volumes.append(
                {
                    "name": vol,
                    "secret": {
                        "secretName": creds_secret,
                        "items": [
                            {"key": f"t{ti}-file-{short_hash(folder, fname)}", "path": fname}
                            for fname in entries
                        ],
                    },
                }
            )
            user_mounts.append({"name": vol, "mountPath": folder, "readOnly": True})
    host_volumes, host_mounts = _mounts(spec, platform)
    volumes += host_volumes
    user_mounts += host_mounts
    user_container: dict[str, Any] = {
        "name": user,
        "image": spec.image,
        "command": ["/bin/sh", LAUNCHER],
        "args": argv,
        "env": user_env,
        "volumeMounts": user_mounts,
        "terminationMessagePolicy": "FallbackToLogsOnError",
    }
    resources = _resources(spec)
    if resources:
        user_container["resources"] = resources
    if spec.privileged:
        user_container["securityContext"] = {"privileged": True}
    data_env_from = [{"secretRef": {"name": cfg.data_env_secret}}] if cfg.data_env_secret else []
    runtime_env = [*osmo_env, {"name": "OSMO_TASK", "value": task_doc}]
    runtime_resources = {
        "requests": {"cpu": "50m", "memory": "64Mi"},
        "limits": {"memory": "512Mi"},
    }
    init_container: dict[str, Any] = {
        "name": INIT,
        "image": cfg.runtime_image,
        "imagePullPolicy": cfg.runtime_image_pull_policy,
        "command": ["osmo-runtime", "init"],
        "env": runtime_env,
        "volumeMounts": [
            {"name": "osmo-data", "mountPath": DATA_DIR},
            {"name": "osmo-bin", "mountPath": BIN_DIR},
        ],
        "resources": runtime_resources,
    }
    ctrl_container: dict[str, Any] = {
        "name": CTRL,
        "image": cfg.runtime_image,
        "imagePullPolicy": cfg.runtime_image_pull_policy,
        "command": ["osmo-runtime", "ctrl"],
        "env": runtime_env,
        "volumeMounts": [
            {"name": "osmo-data", "mountPath": DATA_DIR},
            {"name": "osmo-bin", "mountPath": BIN_DIR},
            {"name": "osmo-podinfo", "mountPath": PODINFO_DIR, "readOnly": True},
        ],
        "readinessProbe": {
            "exec": {"command": ["test", "-e", READY_FILE]},
            "periodSeconds": 1,
            "failureThreshold": 1,
        },
        "resources": runtime_resources,
    }
    if data_env_from:
        init_container["envFrom"] = data_env_from
        ctrl_container["envFrom"] = data_env_from
    labels = {
        **base_labels,
        L_KIND: "pod",
        L_TASK: label_value(spec.task),
        L_TASK_UUID: task_uuid(group.workflow_id, spec.task, spec.retry_id),
        L_RETRY: str(spec.retry_id),
        L_LEAD: "true" if spec.lead else "false",
        L_PLATFORM: label_value(platform_name or "default"),
        **extra_labels,
        **{k: v for k, v in user_labels.items() if k not in base_labels},
    }
    annotations = {
        A_WORKFLOW: group.workflow_id,
        A_GROUP: group.group,
        A_TASK: spec.task,
        A_RETRY: str(spec.retry_id),
        A_LEAD: "true" if spec.lead else "false",
        A_GROUP_SIZE: str(len(group.tasks)),
        A_BARRIER: "held" if gated else "released",
        **extra_annotations,
    }
    pod_spec: dict[str, Any] = {
        "restartPolicy": "Never",
        "hostname": hostname,
        "enableServiceLinks": False,
        "automountServiceAccountToken": False,
        "terminationGracePeriodSeconds": 30,
        "initContainers": [init_container],
        "containers": [user_container, ctrl_container],
        "volumes": volumes,
    }
    if service:
        pod_spec["subdomain"] = service
    if cfg.scheduler.name:
        pod_spec["schedulerName"] = cfg.scheduler.name
    if cfg.priority_classes:
        pod_spec["priorityClassName"] = f"osmo-{priority.lower()}"
    if pull_secrets:
        pod_spec["imagePullSecrets"] = pull_secrets
    if spec.host_network:
        pod_spec["hostNetwork"] = True
        pod_spec["dnsPolicy"] = "ClusterFirstWithHostNet"
    if spec.nodes_excluded:
        pod_spec["affinity"] = {
            "nodeAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": {
                    "nodeSelectorTerms": [
                        {
                            "matchExpressions": [
                                {
                                    "key": "kubernetes.io/hostname",
                                    "operator": "NotIn",
                                    "values": list(spec.nodes_excluded),
                                }
                            ]
                        }
                    ]
                }
            }
        }
    base = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": cfg.namespace,
            "labels": labels,
            "annotations": annotations,
        },
        "spec": pod_spec,
    }
    template_names = [*pool.common_pod_template, *platform.override_pod_template]
    if not template_names:
        return base
    variables = variables_for(
        defaults=[pool.common_default_variables, platform.default_variables],
        cpu=spec.cpu,
        gpu=spec.gpu,
        memory_bytes=spec.memory_bytes,
        storage_bytes=spec.storage_bytes,
        cache_size=spec.cache_size,
        excluded_nodes=spec.nodes_excluded,
        container_name=user,
        workflow={
            **wf_vars,
            "WF_TASK_NAME": spec.task,
            "WF_PLATFORM": platform_name,
            "WF_POOL": pool_name,
        },
        labels=group.labels,
    )
    try:
        rendered = [
            render(cfg.pod_templates[t], variables, f"pod template {t}") for t in template_names
        ]
    except TemplateError as exc:
        raise LaunchError(f"task {spec.task}: {exc}") from None
    merged = merge_all(base, rendered)
    # Templates cannot rename or move the pod, nor change what the containers run.
    merged["metadata"]["name"] = name
    merged["metadata"]["namespace"] = cfg.namespace
    merged["metadata"]["labels"].update(labels)
    merged["metadata"]["annotations"].update(annotations)
    by_name = {c["name"]: c for c in (user_container, ctrl_container, init_container)}
    for field_name in ("containers", "initContainers"):
        for c in merged["spec"].get(field_name, []):
            original = by_name.get(c.get("name", ""))
            if original is not None:
                for key in ("image", "command", "args"):
                    if key in original:
                        c[key] = original[key]
                    else:
                        c.pop(key, None)
    return merged
