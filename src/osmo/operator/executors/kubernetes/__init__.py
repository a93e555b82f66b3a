"""The Kubernetes executor (``osmo operator start --executor kubernetes``).

``templates`` (pod template merge and rendering), ``objects`` (the objects of a group),
``status`` (pod → task status, node → capacity) and ``config`` are pure and need no cluster;
``executor`` and ``client`` talk to the API server through ``kubernetes_asyncio``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .executor import KubernetesExecutor


def __getattr__(name: str) -> Any:
    if name == "KubernetesExecutor":
        from .executor import KubernetesExecutor

        return KubernetesExecutor
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["KubernetesExecutor"]
