"""Fixtures: one real Kubernetes control plane per test session (see cluster.py), the operator
chart's RBAC applied to it, and a kubeconfig holding only the chart ServiceAccount's token."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from cluster import REPO, SYSTEM_NS, WORKFLOW_NS, KubeCluster, bin_dir, helm_template

OPERATOR_CHART = REPO / "deploy" / "charts" / "osmo-operator"


@pytest.fixture(scope="session")
def k8s_bins() -> Path:
    try:
        return bin_dir()
    except RuntimeError as exc:
        pytest.fail(str(exc), pytrace=False)


@pytest.fixture(scope="session")
def kube(k8s_bins: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[KubeCluster]:
    c = KubeCluster(tmp_path_factory.mktemp("kube"), k8s_bins)
    try:
        c.start()
        c.create_namespace(SYSTEM_NS)
        c.create_namespace(WORKFLOW_NS)
        yield c
    finally:
        c.stop()


def operator_chart_docs(bins: Path, **values: Any) -> list[dict[str, Any]]:
    base: dict[str, Any] = {
        "server": {"url": "http://127.0.0.1:1"},
        "token": {"value": "bootstrap-token"},
        "workflowNamespace": WORKFLOW_NS,
    }
    base.update(values)
    return helm_template(bins, OPERATOR_CHART, "--namespace", SYSTEM_NS, values=base)


@pytest.fixture(scope="session")
def operator_rbac(kube: KubeCluster, k8s_bins: Path) -> list[dict[str, Any]]:
    """Everything the chart makes except the Deployment (no kubelet runs it here), applied."""
    docs = operator_chart_docs(k8s_bins)
    for doc in docs:
        if doc["kind"] == "Deployment":
            continue
        kube.apply(doc, SYSTEM_NS if doc["metadata"].get("namespace") is None else None)
    return docs


@pytest.fixture(scope="session")
def operator_kubeconfig(
    kube: KubeCluster, operator_rbac: list[dict[str, Any]], tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """A kubeconfig with the chart ServiceAccount's token: the operator's only rights."""
    sa = next(d for d in operator_rbac if d["kind"] == "ServiceAccount")
    token = kube.service_account_token(SYSTEM_NS, sa["metadata"]["name"])
    return kube.write_kubeconfig(tmp_path_factory.mktemp("sa") / "operator.kubeconfig", token)
