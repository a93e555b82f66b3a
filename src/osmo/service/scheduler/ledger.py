"""Capacity bookkeeping: what each backend's nodes have, what admitted groups hold, gang fit."""

from __future__ import annotations

from dataclasses import dataclass, field

from ...protocol import NodeInfo


@dataclass(frozen=True)
class Request:
    """One task's explicit resource request; unset fields request nothing."""

    cpu: float = 0
    gpu: int = 0
    memory: int = 0

    def size(self) -> tuple[int, float, int]:
        return (self.gpu, self.cpu, self.memory)


@dataclass
class NodeUse:
    cpu: float = 0
    gpu: int = 0
    memory: int = 0


@dataclass
class Ledger:
    nodes: dict[str, list[NodeInfo]] = field(default_factory=dict)  # backend -> nodes
    used: dict[str, dict[str, NodeUse]] = field(default_factory=dict)  # backend -> node -> use
    holdings: dict[int, tuple[str, list[tuple[str, Request]]]] = field(default_factory=dict)

    def set_nodes(self, backend: str, nodes: list[NodeInfo]) -> None:
        self.nodes[backend] = list(nodes)
        self.used.setdefault(backend, {})

    def fit(self, backend: str, requests: list[Request]) -> list[str] | None:
        """Node per request (same order) if the whole gang fits now, else None."""
        nodes = [n for n in self.nodes.get(backend, []) if n.available]
        if not nodes:
            return None
        used = self.used.setdefault(backend, {})
        free = {
            n.name: [
                n.cpus - used.get(n.name, NodeUse()).cpu,
                n.gpus - used.get(n.name, NodeUse()).gpu,
                n.memory_bytes - used.get(n.name, NodeUse()).memory,
            ]
            for n in nodes
        }
        order = sorted(range(len(requests)), key=lambda i: requests[i].size(), reverse=True)
        placement: list[str | None] = [None] * len(requests)
        for i in order:
            r = requests[i]
            for n in nodes:
                f = free[n.name]
                if r.cpu <= f[0] and r.gpu <= f[1] and r.memory <= f[2]:
                    f[0] -= r.cpu
                    f[1] -= r.gpu
                    f[2] -= r.memory
                    placement[i] = n.name
                    break
            else:
                return None
        return [p for p in placement if p is not None]

    def hold(self, group_pk: int, backend: str, placed: list[tuple[str, Request]]) -> None:
        if group_pk in self.holdings:
            return
        used = self.used.setdefault(backend, {})
        for node, r in placed:
            u = used.setdefault(node, NodeUse())
            u.cpu += r.cpu
            u.gpu += r.gpu
            u.memory += r.memory
        self.holdings[group_pk] = (backend, placed)

    def release(self, group_pk: int) -> None:
        held = self.holdings.pop(group_pk, None)
        if held is None:
            return
        backend, placed = held
        used = self.used.setdefault(backend, {})
        for node, r in placed:
            u = used.setdefault(node, NodeUse())
            u.cpu -= r.cpu
            u.gpu -= r.gpu
            u.memory -= r.memory
