"""The Kubernetes executor's own configuration: a YAML file the operator is started with.

Until the control plane serves pool and platform configs to operators, the pod templates,
group templates, platform allowances and scheduler settings of a backend live here:

    namespace: osmo-workflows
    runtime_image: ghcr.io/example/osmo:0.1.0     # image with `osmo-runtime` (init + ctrl)
    scheduler: {type: kai, name: kai-scheduler, queue: osmo-pool-default}   # or coscheduling / none
    priority_classes: true                        # pods get priorityClassName osmo-<priority>
    node_conditions: {rules: {"^Ready$": "True"}} # reference §9 node health
    start_timeout: 1800                           # scheduled but not running -> START_TIMEOUT
    pod_templates: {name: {...partial Pod...}}
    group_templates: {name: {...full manifest...}}
    pools:
      default:
        common_pod_template: [name, ...]
        common_group_templates: [name, ...]
        common_default_variables: {USER_CPU: 1}
        default_platform: cpu
        platforms:
          cpu: {override_pod_template: [...], default_variables: {...},
                privileged_allowed: false, host_network_allowed: false,
                allowed_mounts: [/dev/shm], default_mounts: []}
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from .templates import check_template

DEFAULT_RUNTIME_IMAGE = "osmo:latest"


class _Cfg(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SchedulerSettings(_Cfg):
    """Which scheduler binds the pods, and which PodGroup kind guards the gang."""

    type: Literal["none", "kai", "coscheduling"] = "none"
    name: str | None = None  # pod schedulerName; None: the cluster's default scheduler
    queue: str | None = None  # KAI queue (default osmo-pool-<namespace>-<pool>)
    timeout: int = 30  # coscheduling scheduleTimeoutSeconds


class NodeConditions(_Cfg):
    # Condition type regex -> allowed status regex; ``^Ready$: True`` is always implied.
    rules: dict[str, str] = Field(default_factory=dict)
    prefix: str = "osmo.nvidia.com/"


class PlatformConfig(_Cfg):
    description: str = ""
    override_pod_template: list[str] = Field(default_factory=list)
    default_variables: dict[str, Any] = Field(default_factory=dict)
    privileged_allowed: bool = False
    host_network_allowed: bool = False
    allowed_mounts: list[str] = Field(default_factory=list)
    default_mounts: list[str] = Field(default_factory=list)


class PoolConfig(_Cfg):
    description: str = ""
    common_pod_template: list[str] = Field(default_factory=list)
    common_group_templates: list[str] = Field(default_factory=list)
    common_default_variables: dict[str, Any] = Field(default_factory=dict)
    default_platform: str | None = None
    platforms: dict[str, PlatformConfig] = Field(default_factory=dict)


class KubernetesConfig(_Cfg):
    namespace: str = "default"
    runtime_image: str = DEFAULT_RUNTIME_IMAGE
    runtime_image_pull_policy: str = "IfNotPresent"
    image_pull_secrets: list[str] = Field(default_factory=list)  # existing Secrets, every pod
    data_env_secret: str | None = None  # Secret with storage credentials for init and ctrl
    scheduler: SchedulerSettings = Field(default_factory=SchedulerSettings)
    priority_classes: bool = True
    node_conditions: NodeConditions = Field(default_factory=NodeConditions)
    node_selector: dict[str, str] = Field(default_factory=dict)  # which nodes to report
    start_timeout: float = 1800.0
    config_error_timeout: float = 600.0
    error_log_lines: int = 100
    label_prefix: str = "osmo.label/"
    pod_templates: dict[str, dict[str, Any]] = Field(default_factory=dict)
    group_templates: dict[str, dict[str, Any]] = Field(default_factory=dict)
    pools: dict[str, PoolConfig] = Field(default_factory=dict)
    create_concurrency: int = 64  # API writes in flight at once

    @field_validator("pod_templates")
    @classmethod
    def _check_pod_templates(cls, v: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
        for name, t in v.items():
            check_template(name, t)
        return v

    @field_validator("group_templates")
    @classmethod
    def _check_group_templates(cls, v: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
        for name, t in v.items():
            if not isinstance(t, dict):
                raise ValueError(f"group template {name!r}: expected a mapping")
            for key in ("apiVersion", "kind"):
                if not isinstance(t.get(key), str):
                    raise ValueError(f"group template {name!r}: {key} is required")
            meta = t.get("metadata")
            if not isinstance(meta, dict) or not isinstance(meta.get("name"), str):
                raise ValueError(f"group template {name!r}: metadata.name is required")
            if "namespace" in meta:
                raise ValueError(
                    f"group template {name!r}: metadata.namespace may not be set "
                    "(objects go to the workflow namespace)"
                )
        return v

    @model_validator(mode="after")
    def _check_references(self) -> KubernetesConfig:
        for pname, pool in self.pools.items():
            for t in pool.common_pod_template:
                if t not in self.pod_templates:
                    raise ValueError(f"pool {pname!r}: unknown pod template {t!r}")
            for t in pool.common_group_templates:
                if t not in self.group_templates:
                    raise ValueError(f"pool {pname!r}: unknown group template {t!r}")
            for plname, platform in pool.platforms.items():
                for t in platform.override_pod_template:
                    if t not in self.pod_templates:
                        raise ValueError(
                            f"pool {pname!r} platform {plname!r}: unknown pod template {t!r}"
                        )
            if pool.default_platform and pool.default_platform not in pool.platforms:
                raise ValueError(
                    f"pool {pname!r}: default_platform {pool.default_platform!r} is not one "
                    "of its platforms"
                )
        return self

    def group_template_kinds(self) -> list[tuple[str, str]]:
        """(apiVersion, kind) of every group template: what cleanup has to look for."""
        return sorted({(t["apiVersion"], t["kind"]) for t in self.group_templates.values()})


def load_config(path: str | Path | None, **overrides: Any) -> KubernetesConfig:
    data: dict[str, Any] = {}
    if path is not None:
        raw = yaml.safe_load(Path(path).read_text()) or {}
        if not isinstance(raw, dict):
            raise ValueError(f"{path}: expected a mapping")
        data = raw
    data.update({k: v for k, v in overrides.items() if v is not None})
    return KubernetesConfig.model_validate(data)
