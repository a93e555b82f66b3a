"""Capacity bookkeeping: what each backend's nodes have, what admitted groups hold, gang fit.

Free capacity is kept per node in flat lists so a fit is a few comparisons per node; the scan
starts where the last placement succeeded (next-fit), which keeps packing many small tasks onto
many nodes cheap.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from itertools import chain

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
class BackendNodes:
    nodes: list[NodeInfo]
    index: dict[str, int]
    cpu: list[float]
    gpu: list[int]
    memory: list[int]
    cursor: int = 0


@dataclass
class Ledger:
    backends: dict[str, BackendNodes] = field(default_factory=dict)
    holdings: dict[int, tuple[str, list[tuple[str, Request]]]] = field(default_factory=dict)
    version: int = 0  # bumped whenever capacity grows (release, node changes)

    def set_nodes(self, backend: str, nodes: list[NodeInfo]) -> None:
        index = {n.name: i for i, n in enumerate(nodes)}
        b = BackendNodes(
            nodes=list(nodes),
            index=index,
            cpu=[n.cpus if n.available else 0.0 for n in nodes],
            gpu=[n.gpus if n.available else 0 for n in nodes],
            memory=[n.memory_bytes if n.available else 0 for n in nodes],
        )
        for held_backend, placed in self.holdings.values():
            if held_backend != backend:
                continue
            for node, r in placed:
                i = index.get(node)
                if i is not None:
                    b.cpu[i] -= r.cpu
                    b.gpu[i] -= r.gpu
                    b.memory[i] -= r.memory
        self.backends[backend] = b
        self.version += 1

    def nodes(self, backend: str) -> list[NodeInfo]:
        b = self.backends.get(backend)
        return b.nodes if b else []

    def usage(self, backend: str) -> list[tuple[NodeInfo, float, int, int]]:
        """(node, used cpu, used gpu, used memory) per node."""
        b = self.backends.get(backend)
        if b is None:
            return []
        out = []
        for i, n in enumerate(b.nodes):
            if n.available:
                out.append((n, n.cpus - b.cpu[i], n.gpus - b.gpu[i], n.memory_bytes - b.memory[i]))
            else:
                out.append((n, 0.0, 0, 0))
        return out

    def fit(
        self, backend: str, requests: list[Request], allowed: list[list[int] | None] | None = None
    ) -> list[str] | None:
        """Node per request (same order) if the whole gang fits now, else None."""
        b = self.backends.get(backend)
        if b is None or not b.nodes:
            return None
        n_nodes = len(b.nodes)
        taken: dict[int, list[float]] = {}  # node -> [cpu, gpu, mem] tentatively used by this gang
        order = sorted(range(len(requests)), key=lambda i: requests[i].size(), reverse=True)
        placement: list[int] = [-1] * len(requests)
        start = b.cursor
        for i in order:
            r = requests[i]
            candidates = allowed[i] if allowed is not None and allowed[i] is not None else None
            seq: Iterable[int] = candidates if candidates is not None else _rotate(n_nodes, start)
            for j in seq:
                t = taken.get(j)
                cpu, gpu, mem = (
                    (b.cpu[j], b.gpu[j], b.memory[j])
                    if t is None
                    else (b.cpu[j] - t[0], b.gpu[j] - t[1], b.memory[j] - t[2])
                )
                if r.cpu <= cpu and r.gpu <= gpu and r.memory <= mem:
                    if t is None:
                        taken[j] = [r.cpu, r.gpu, r.memory]
                    else:
                        t[0] += r.cpu
                        t[1] += r.gpu
                        t[2] += r.memory
                    placement[i] = j
                    break
            else:
                return None
        b.cursor = placement[order[-1]] if order else b.cursor
        return [b.nodes[j].name for j in placement]

    def hold(self, group_pk: int, backend: str, placed: list[tuple[str, Request]]) -> None:
        if group_pk in self.holdings:
            return
        b = self.backends.get(backend)
        if b is not None:
            for node, r in placed:
                i = b.index.get(node)
                if i is not None:
                    b.cpu[i] -= r.cpu
                    b.gpu[i] -= r.gpu
                    b.memory[i] -= r.memory
        self.holdings[group_pk] = (backend, placed)

    def release(self, group_pk: int) -> None:
        held = self.holdings.pop(group_pk, None)
        if held is None:
            return
        backend, placed = held
        b = self.backends.get(backend)
        if b is not None:
            for node, r in placed:
                i = b.index.get(node)
                if i is not None:
                    b.cpu[i] += r.cpu
                    b.gpu[i] += r.gpu
                    b.memory[i] += r.memory
        self.version += 1


def _rotate(n: int, start: int) -> Iterable[int]:
    if start <= 0 or start >= n:
        return range(n)
    return chain(range(start, n), range(start))
