"""Side effects a transaction produces, carried out only after it commits."""

from __future__ import annotations

from dataclasses import dataclass, field

from ...protocol import LaunchGroup, TaskRef


@dataclass
class Effects:
    launches: list[tuple[str, LaunchGroup]] = field(default_factory=list)
    stops: dict[str, list[TaskRef]] = field(default_factory=dict)
    stop_reasons: dict[str, str] = field(default_factory=dict)
    released: list[int] = field(default_factory=list)  # groups whose capacity is free again
    queued: list[int] = field(default_factory=list)  # groups that became ready to schedule
    wake_scheduler: bool = False
    changed_workflows: set[str] = field(default_factory=set)

    def stop(self, backend: str | None, ref: TaskRef, reason: str) -> None:
        if backend is None:
            return
        self.stops.setdefault(backend, []).append(ref)
        self.stop_reasons[backend] = reason
