"""Pool and platform configuration: what a pool offers and the rules its workflows must meet.

A pool maps to one backend; platforms select nodes of that backend by labels and carry their
defaults and permissions. GPU quota: NORMAL and HIGH work of a pool is limited to its
``guarantee``; LOW work may borrow idle GPUs up to ``maximum`` and is preempted when
under-guarantee work needs them; ``weight`` shares borrowed capacity between pools.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from ...protocol import NodeInfo
from ...spec.units import UnitError, parse_code_ranges

UNSET = -1


class _Config(BaseModel):
    model_config = ConfigDict(extra="forbid")


class GpuQuota(_Config):
    guarantee: int = Field(
        default=UNSET, ge=UNSET, description="GPUs guaranteed to NORMAL/HIGH work; -1 unlimited"
    )
    maximum: int = Field(
        default=UNSET, ge=UNSET, description="hard cap including borrowed GPUs; -1 unlimited"
    )
    weight: float = Field(default=1.0, gt=0, description="share of capacity above guarantees")


class PoolResources(_Config):
    gpu: GpuQuota = Field(default_factory=GpuQuota)


class ResourceRule(_Config):
    """``left operator right``; operands are numbers or names like USER_GPU, K8_GPU (node)."""

    operator: Literal["LE", "GE", "LT", "GT", "EQ", "NE"]
    left_operand: str
    right_operand: str
    assert_message: str = ""


class PlatformConfig(_Config):
    description: str = ""
    node_labels: dict[str, str] = Field(
        default_factory=dict, description="nodes with all these labels"
    )
    default_variables: dict[str, Any] = Field(default_factory=dict)
    privileged_allowed: bool = False
    host_network_allowed: bool = False
    allowed_mounts: list[str] = Field(default_factory=list)
    default_mounts: list[str] = Field(default_factory=list)
    resource_validations: list[ResourceRule] = Field(default_factory=list)
    override_pod_template: dict[str, Any] = Field(default_factory=dict)


class PoolConfig(_Config):
    name: str = ""
    backend: str
    description: str = ""
    enable_maintenance: bool = False
    default_platform: str | None = None
    default_exit_actions: dict[str, str] = Field(default_factory=dict)
    resources: PoolResources = Field(default_factory=PoolResources)
    common_default_variables: dict[str, Any] = Field(default_factory=dict)
    common_resource_validations: list[ResourceRule] = Field(default_factory=list)
    common_pod_template: dict[str, Any] = Field(default_factory=dict)
    platforms: dict[str, PlatformConfig] = Field(default_factory=dict)

    @field_validator("default_exit_actions")
    @classmethod
    def _actions(cls, v: dict[str, str]) -> dict[str, str]:
        out = {}
        for action, codes in v.items():
            upper = action.upper()
            if upper not in ("COMPLETE", "FAIL", "RESCHEDULE"):
                raise ValueError(
                    f"unknown exit action {action!r}; use COMPLETE, FAIL or RESCHEDULE"
                )
            try:
                parse_code_ranges(str(codes))
            except UnitError as exc:
                raise ValueError(f"exit codes for {upper}: {exc}") from None
            out[upper] = str(codes)
        return out

    @property
    def gpu(self) -> GpuQuota:
        return self.resources.gpu

    def platform(self, name: str | None) -> tuple[str | None, PlatformConfig | None]:
        """The platform a task asks for (or the pool default); (None, None) when the pool has none."""
        chosen = name or self.default_platform
        if chosen is None:
            if len(self.platforms) == 1:
                only = next(iter(self.platforms))
                return only, self.platforms[only]
            return None, None
        return chosen, self.platforms.get(chosen)

    def node_matches(self, platform: PlatformConfig | None, node: NodeInfo) -> bool:
        if platform is None:
            return True
        return all(node.labels.get(k) == v for k, v in platform.node_labels.items())


class PoolCache:
    """Pool configs by name, read from the database and dropped when a pool is written."""

    def __init__(self) -> None:
        self._pools: dict[str, PoolConfig] | None = None

    async def load(self, session: Any) -> dict[str, PoolConfig]:
        if self._pools is None:
            from sqlalchemy import select

            from ..db.models import Pool

            rows = (await session.execute(select(Pool))).scalars().all()
            self._pools = {
                r.name: PoolConfig.model_validate(
                    {**r.config, "name": r.name, "backend": r.backend}
                )
                for r in rows
            }
        return self._pools

    async def get(self, session: Any, name: str) -> PoolConfig | None:
        return (await self.load(session)).get(name)

    def invalidate(self) -> None:
        self._pools = None
