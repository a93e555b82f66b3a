"""The Helm charts and the container build file.

``helm template`` output must pass ``kubernetes-validate`` (strict schemas of the Kubernetes
version the tests run) and a server-side dry run on the real API server; the image can not be
built here (no registry), so every command the build file and the charts name must exist in the
installed package, and the task runtime must work with a /bin/sh-only image
(test_pod_runtime.py).
"""

from __future__ import annotations

import re
import shutil
import sys
from importlib.metadata import distribution
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
from cluster import REPO, SYSTEM_NS, KubeCluster, helm_template

from osmo.operator.executors.kubernetes.config import KubernetesConfig
from osmo.operator.executors.kubernetes.objects import build_group
from osmo.protocol import LaunchGroup, TaskLaunchSpec

pytestmark = pytest.mark.k8s
K8S_SCHEMA = "1.36.0"
CHARTS = REPO / "deploy" / "charts"
DOCKERFILE = REPO / "deploy" / "Dockerfile"

OPERATOR_VALUES: list[dict[str, Any]] = [
    {"server": {"url": "https://osmo.example.com"}, "token": {"value": "t"}},
    {
        "server": {"url": "https://osmo.example.com"},
        "token": {"existingSecret": "osmo-token"},
        "createWorkflowNamespace": True,
        "interactive": True,
        "priorityClasses": {"create": False},
        "executor": {
            "scheduler": {"type": "kai", "name": "kai-scheduler"},
            "podTemplates": {"gpu": {"spec": {"nodeSelector": {"gpu": "true"}}}},
            "pools": {"default": {"common_pod_template": ["gpu"]}},
        },
        "extraRules": [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["create"]}],
    },
]
SERVER_VALUES: list[dict[str, Any]] = [
    {"database": {"url": "postgresql+psycopg://osmo:pw@db:5432/osmo"}},
    {
        "database": {"existingSecret": "db"},
        "redis": {"url": "redis://redis:6379/0"},
        "operatorTokens": {"value": "abc"},
        "storage": {
            "dataUrl": "s3://bucket/data",
            "logUrl": "s3://bucket/logs",
            "credentialsSecret": "s3",
        },
        "settings": {"MAX_NUM_TASKS": "5000"},
        "replicas": 2,
    },
]


def _render(bins: Path, chart: str, values: dict[str, Any]) -> list[dict[str, Any]]:
    return helm_template(bins, CHARTS / chart, "--namespace", SYSTEM_NS, values=values)


@pytest.mark.parametrize(
    ("chart", "values"),
    [("osmo-operator", v) for v in OPERATOR_VALUES] + [("osmo", v) for v in SERVER_VALUES],
)
def test_helm_template_passes_kubernetes_validate(
    k8s_bins: Path, chart: str, values: dict[str, Any]
) -> None:
    docs = _render(k8s_bins, chart, values)
    assert docs
    for doc in docs:
        kubernetes_validate.validate(doc, K8S_SCHEMA, strict=True)
    kinds = {d["kind"] for d in docs}
    if chart == "osmo-operator":
        assert {"ServiceAccount", "Role", "ClusterRole", "Deployment", "ConfigMap"} <= kinds
        cfg_doc = next(d for d in docs if d["kind"] == "ConfigMap")
        import yaml

        # The executor accepts the configuration the chart writes.
        KubernetesConfig.model_validate(yaml.safe_load(cfg_doc["data"]["executor.yaml"]))
    else:
        assert {"Deployment", "Service", "Secret"} <= kinds


def test_operator_cluster_role_is_read_only(k8s_bins: Path) -> None:
    docs = _render(k8s_bins, "osmo-operator", OPERATOR_VALUES[0])
    cluster_role = next(d for d in docs if d["kind"] == "ClusterRole")
    for rule in cluster_role["rules"]:
        assert set(rule["verbs"]) <= {"get", "list", "watch"}
    role = next(d for d in docs if d["kind"] == "Role")
    secrets = next(r for r in role["rules"] if "secrets" in r["resources"])
    assert "get" not in secrets["verbs"] and "list" not in secrets["verbs"]


def test_chart_objects_dry_run_on_the_api_server(kube: KubeCluster, k8s_bins: Path) -> None:
    """Everything the charts render is accepted by the real API server (server-side dry run)."""
    assert kube.http is not None
    for chart, values in [("osmo-operator", OPERATOR_VALUES[1]), ("osmo", SERVER_VALUES[1])]:
        for doc in _render(k8s_bins, chart, values):
            path = kube.path_for(doc, SYSTEM_NS)
            r = kube.http.post(path, params={"dryRun": "All"}, json=doc)
            assert r.status_code in (200, 201, 409), f"{doc['kind']}: {r.status_code} {r.text}"


def test_task_pods_pass_kubernetes_validate() -> None:
    cfg = KubernetesConfig(namespace="w", scheduler={"type": "kai", "name": "kai-scheduler"})
    tasks = [
        TaskLaunchSpec(
            workflow_id="v-1",
            task=f"t{i}",
            group="g",
            image="ubuntu",
            command=["true"],
            cpu=2,
            gpu=i,
        )
        for i in range(2)
    ]
    objs = build_group(cfg, LaunchGroup(workflow_id="v-1", group="g", barrier=True, tasks=tasks))
    for doc in [*objs.prelude, *objs.pods]:
        kubernetes_validate.validate(doc, K8S_SCHEMA, strict=True)


def _console_scripts() -> set[str]:
    return {ep.name for ep in distribution("osmo").entry_points if ep.group == "console_scripts"}


def test_every_entrypoint_the_image_and_charts_name_is_installed() -> None:
    text = DOCKERFILE.read_text()
    named = set(re.findall(r'ENTRYPOINT \["([^"]+)"', text))
    named |= set(re.findall(r"^#\s+(osmo[\w-]*)\s{2,}", text, re.M))
    for chart in CHARTS.iterdir():
        for tpl in (chart / "templates").glob("*.yaml"):
            for m in re.finditer(r"command:\s*\[?\s*\n?\s*-?\s*\[?(osmo[\w-]*)", tpl.read_text()):
                named.add(m.group(1))
    objs = build_group(
        KubernetesConfig(),
        LaunchGroup(
            workflow_id="e-1",
            group="g",
            barrier=False,
            tasks=[
                TaskLaunchSpec(workflow_id="e-1", task="t", group="g", image="x", command=["x"])
            ],
        ),
    )
    pod = objs.pods[0]["spec"]
    named |= {c["command"][0] for c in pod["initContainers"] + pod["containers"][1:]}
    assert named >= {"osmo", "osmo-runtime"}, named
    scripts = _console_scripts()
    missing = named - scripts
    assert not missing, f"named by the image or charts but not installed: {missing}"
    for name in named:
        assert shutil.which(name, path=str(Path(sys.executable).parent)), name
