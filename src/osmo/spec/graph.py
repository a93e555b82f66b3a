"""The DAG of group dependencies: derived from task inputs, checked, topologically ordered."""

from __future__ import annotations

import difflib
import heapq

from .model import GroupSpec


def order_groups(
    groups: list[GroupSpec], declared_as: str
) -> tuple[list[tuple[str, str | None, str | None]], list[GroupSpec]]:
    """Fill each group's ``upstream`` and return (problems, groups in topological order).

    Inputs may name tasks declared later in the file. Ties keep declaration order, so a file
    written upstream-first comes out unchanged. Problems are (message, task name, the input it
    is about).
    """
    problems: list[tuple[str, str | None, str | None]] = []
    group_of: dict[str, int] = {}
    for gi, g in enumerate(groups):
        for t in g.tasks:
            group_of.setdefault(t.name, gi)
    upstream: list[set[int]] = [set() for _ in groups]
    for gi, g in enumerate(groups):
        for t in g.tasks:
            for dep in t.upstream_tasks():
                if dep == t.name:
                    problems.append((f"task {t.name!r} lists itself as an input", t.name, dep))
                    continue
                if dep not in group_of:
                    hint = difflib.get_close_matches(dep, list(group_of), n=1)
                    more = f"; did you mean {hint[0]!r}?" if hint else ""
                    problems.append(
                        (
                            f"task {t.name!r} has an input from unknown task {dep!r}{more}",
                            t.name,
                            dep,
                        )
                    )
                    continue
                dgi = group_of[dep]
                if dgi == gi:
                    problems.append(
                        (
                            f"task {t.name!r} takes input from task {dep!r} of its own group "
                            f"{g.name!r}; tasks of a group start together, so put {dep!r} in an "
                            "earlier group",
                            t.name,
                            dep,
                        )
                    )
                    continue
                upstream[gi].add(dgi)

    def label(gi: int) -> str:
        g = groups[gi]
        return g.tasks[0].name if declared_as == "tasks" else g.name

    indegree = [len(u) for u in upstream]
    downstream: list[list[int]] = [[] for _ in groups]
    for gi, ups in enumerate(upstream):
        for u in ups:
            downstream[u].append(gi)
    ready = [gi for gi, d in enumerate(indegree) if d == 0]
    heapq.heapify(ready)
    order: list[int] = []
    while ready:
        gi = heapq.heappop(ready)
        order.append(gi)
        for d in downstream[gi]:
            indegree[d] -= 1
            if indegree[d] == 0:
                heapq.heappush(ready, d)
    if len(order) < len(groups):
        remaining = {gi for gi in range(len(groups)) if gi not in set(order)}
        cycle = _find_cycle(remaining, upstream)
        path = " -> ".join(label(gi) for gi in cycle)
        kind = "tasks" if declared_as == "tasks" else "groups"
        problems.append(
            (f"dependency cycle between {kind}: {path}", groups[cycle[0]].tasks[0].name, None)
        )
        order += sorted(remaining)
    for gi, g in enumerate(groups):
        g.upstream = [groups[u].name for u in sorted(upstream[gi])]
    return problems, [groups[gi] for gi in order]


def _find_cycle(nodes: set[int], upstream: list[set[int]]) -> list[int]:
    """One cycle among ``nodes`` following upstream edges, closed (first == last)."""
    start = min(nodes)
    path: list[int] = []
    index: dict[int, int] = {}
    node = start
    while node not in index:
        index[node] = len(path)
        path.append(node)
        node = min(u for u in upstream[node] if u in nodes)
    cycle = [*path[index[node] :], node]
    cycle.reverse()  # report in data-flow direction: upstream -> downstream
    return cycle
