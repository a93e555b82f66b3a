"""Pod templates, group objects, pod → status and node → capacity, without a cluster."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from osmo.operator.executors.kubernetes import objects as ob
from osmo.operator.executors.kubernetes.config import KubernetesConfig
from osmo.operator.executors.kubernetes.status import (
    node_available,
    node_info,
    parse_quantity,
    pod_outcome,
)
from osmo.operator.executors.kubernetes.templates import (
    TemplateError,
    check_template,
    merge,
    render,
    size_variables,
    variables_for,
)
from osmo.protocol import LaunchGroup, RegistryCredential, TaskFile, TaskLaunchSpec

# ---- templates ----------------------------------------------------------------------------------


def test_merge_lists_by_name_and_scalars() -> None:
    base = {
        "spec": {
            "containers": [{"name": "a", "env": [{"name": "X", "value": "1"}]}, {"name": "b"}],
            "tolerations": [{"key": "k1"}],
            "nodeSelector": {"zone": "a"},
        }
    }
    over = {
        "spec": {
            "containers": [
                {"name": "a", "env": [{"name": "X", "value": "2"}, {"name": "Y", "value": "3"}]},
                {"name": "c"},
            ],
            "tolerations": [{"key": "k1"}, {"key": "k2"}],
            "nodeSelector": {"gpu": "yes"},
            "hostIPC": False,
        }
    }
    out = merge(base, over)
    assert out["spec"]["containers"] == [
        {"name": "a", "env": [{"name": "X", "value": "2"}, {"name": "Y", "value": "3"}]},
        {"name": "b"},
        {"name": "c"},
    ]
    assert out["spec"]["tolerations"] == [{"key": "k1"}, {"key": "k2"}]
    assert out["spec"]["nodeSelector"] == {"zone": "a", "gpu": "yes"}
    assert base["spec"]["nodeSelector"] == {"zone": "a"}  # inputs untouched


def test_render_native_values_and_text() -> None:
    v = {"USER_GPU": 2, "USER_EXCLUDED_NODES": ["n1", "n2"], "WF_ID": "wf-3"}
    t = {"a": "{{USER_GPU}}", "b": "{{ USER_EXCLUDED_NODES }}", "c": "id-{{WF_ID}}", "n": 5}
    assert render(t, v) == {"a": 2, "b": ["n1", "n2"], "c": "id-wf-3", "n": 5}
    assert render({"x": "{% if USER_GPU > 0 %}gpu{% else %}cpu{% endif %}"}, v) == {"x": "gpu"}


def test_render_errors_are_located_and_sandboxed() -> None:
    with pytest.raises(TemplateError, match=r"t\.spec\.x: .*UNKNOWN"):
        render({"spec": {"x": "{{UNKNOWN}}"}}, {}, "t")
    with pytest.raises(TemplateError):
        render({"x": "{{ ''.__class__.__mro__ }}"}, {})


def test_templates_may_not_set_image_command_args() -> None:
    with pytest.raises(TemplateError, match="image"):
        check_template("t", {"spec": {"containers": [{"name": "x", "image": "evil"}]}})
    check_template("ok", {"spec": {"containers": [{"name": "x", "resources": {}}]}})
    with pytest.raises(ValueError, match="image"):
        KubernetesConfig(pod_templates={"t": {"spec": {"initContainers": [{"command": ["x"]}]}}})


def test_size_and_variable_layers() -> None:
    assert size_variables("USER_MEMORY", 16 * 1024**3) | {} == {
        "USER_MEMORY": "16Gi",
        "USER_MEMORY_VAL": 16,
        "USER_MEMORY_UNIT": "Gi",
        "USER_MEMORY_B": 16 * 1024**3,
        "USER_MEMORY_Ki": 16 * 1024**2,
        "USER_MEMORY_Mi": 16 * 1024,
        "USER_MEMORY_Gi": 16,
        "USER_MEMORY_Ti": 0.016,
    }
    v = variables_for(
        defaults=[{"USER_CPU": 1, "USER_MEMORY": "1Gi", "X": "pool"}, {"X": "platform"}],
        cpu=None,
        gpu=1,
        memory_bytes=None,
        storage_bytes=10 * 1024**3,
        cache_size="50%",
        excluded_nodes=["bad"],
        container_name="train",
        workflow={"WF_ID": "w-1"},
        labels={"team": "robots"},
    )
    assert v["USER_CPU"] == 1 and v["USER_GPU"] == 1 and v["USER_MEMORY"] == "1Gi"
    assert v["X"] == "platform" and v["USER_CACHE"] == "5Gi" and v["team"] == "robots"
    assert v["USER_EXCLUDED_NODES"] == ["bad"] and v["USER_CONTAINER_NAME"] == "train"


# ---- objects ------------------------------------------------------------------------------------


def _spec(name: str, **kw: Any) -> TaskLaunchSpec:
    return TaskLaunchSpec(
        workflow_id="wf-1", task=name, group="g", image="busybox", command=["sh", "-c"], **kw
    )


CFG = KubernetesConfig.model_validate(
    {
        "namespace": "work",
        "runtime_image": "osmo:test",
        "scheduler": {"type": "kai", "name": "kai-scheduler"},
        "pod_templates": {
            "gpu": {
                "spec": {
                    "nodeSelector": {"pool": "{{WF_POOL}}"},
                    "containers": [
                        {
                            "name": "{{USER_CONTAINER_NAME}}",
                            "resources": {"limits": {"nvidia.com/gpu": "{{USER_GPU}}"}},
                        }
                    ],
                }
            }
        },
        "group_templates": {
            "cm": {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": "cm-{{WF_GROUP_UUID}}"},
                "data": {"wf": "{{WF_ID}}"},
            }
        },
        "pools": {
            "p": {
                "common_pod_template": ["gpu"],
                "common_group_templates": ["cm"],
                "default_platform": "dgx",
                "platforms": {"dgx": {"allowed_mounts": ["/dev/shm"]}},
            }
        },
    }
)


def test_group_objects_three_tasks() -> None:
    group = LaunchGroup(
        workflow_id="wf-1",
        group="g",
        barrier=True,
        pool="p",
        priority="HIGH",
        submitted_by="ann@example.com",
        tasks=[
            _spec(
                "lead",
                lead=True,
                args=["echo {{host:w1}} {{output}}"],
                gpu=2,
                cpu=4,
                memory_bytes=8 << 30,
                storage_bytes=1 << 30,
                files=[TaskFile(path="/etc/x.txt", contents="wf={{workflow_id}}")],
                nodes_excluded=["node-9"],
                volume_mounts=["/dev/shm"],
                secret_env={"API_KEY": "s3cret"},
                environment={"WANDB_KEY": "masked-value-123", "PLAIN": "ok"},
                mask=["masked-value-123"],
            ),
            _spec("w1"),
            _spec("W_2"),
        ],
        registry_credentials=[RegistryCredential(registry="r.io", username="u", password="p")],
    )
    objs = ob.build_group(CFG, group)
    kinds = [o["kind"] for o in objs.prelude]
    assert kinds == ["Secret", "Secret", "Secret", "Service", "ConfigMap"]
    assert objs.pod_group is not None
    assert objs.pod_group["apiVersion"] == "scheduling.run.ai/v2alpha2"
    assert objs.pod_group["spec"] == {
        "minMember": 3,
        "queue": "osmo-pool-work-p",
        "priorityClassName": "osmo-high",
    }
    assert len(objs.pods) == 3
    lead = objs.pods[0]
    spec = lead["spec"]
    assert "nodeName" not in spec
    assert spec["schedulerName"] == "kai-scheduler"
    assert spec["priorityClassName"] == "osmo-high"
    assert spec["nodeSelector"] == {"pool": "p"}
    user = spec["containers"][0]
    assert user["name"] == "lead" and user["command"] == ["/bin/sh", "/osmo/bin/osmo_exec"]
    host = f"w1.{ob.group_object_name('wf-1', 'g', 'hosts')}.work.svc"
    assert user["args"] == ["sh", "-c", f"echo {host} /osmo/data/output"]
    assert user["resources"]["limits"] == {
        "cpu": "4",
        "memory": "8Gi",
        "ephemeral-storage": "1Gi",
        "nvidia.com/gpu": 2,  # the template's native value replaced the string
    }
    assert spec["containers"][1]["name"] == "osmo-ctrl"
    assert spec["initContainers"][0]["command"] == ["osmo-runtime", "init"]
    terms = spec["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    assert terms["nodeSelectorTerms"][0]["matchExpressions"][0]["values"] == ["node-9"]
    labels = lead["metadata"]["labels"]
    assert labels["kai.scheduler/queue"] == "osmo-pool-work-p"
    assert labels["osmo.priority"] == "high" and labels["osmo.lead_container"] == "true"
    assert labels["osmo.submitted_by"].startswith("ann-example.com")
    ann = lead["metadata"]["annotations"]
    assert ann["osmo.io/barrier"] == "held" and ann["pod-group-name"].endswith("-pg")
    files = objs.prelude[0]
    assert base64.b64decode(files["data"]["t0-f0"]).decode() == "wf=wf-1"
    mounts = {m["mountPath"]: m for m in user["volumeMounts"]}
    assert mounts["/etc/x.txt"]["subPath"] == "t0-f0" and "/dev/shm" in mounts
    env = {e["name"]: e for e in user["env"]}
    assert "secretKeyRef" in env["API_KEY"]["valueFrom"]
    assert "secretKeyRef" in env["WANDB_KEY"]["valueFrom"] and env["PLAIN"]["value"] == "ok"
    assert "masked-value-123" not in json.dumps(lead)
    assert "NVIDIA_VISIBLE_DEVICES" not in env
    w2 = objs.pods[2]
    assert w2["spec"]["containers"][0]["name"] != "W_2"  # sanitized, unique
    assert {e["name"]: e.get("value") for e in w2["spec"]["containers"][0]["env"]}[
        "NVIDIA_VISIBLE_DEVICES"
    ] == ""
    task_doc = json.loads(
        {e["name"]: e.get("value") for e in spec["initContainers"][0]["env"]}["OSMO_TASK"]
    )
    assert task_doc["barrier"] is True and task_doc["task"] == "lead"
    cm = objs.prelude[4]
    assert cm["metadata"]["name"] == f"cm-{objs.group_uuid}" and cm["data"] == {"wf": "wf-1"}
    assert cm["metadata"]["labels"]["osmo.group_uuid"] == objs.group_uuid


def test_platform_refusals() -> None:
    def launch(**kw: Any) -> None:
        ob.build_group(
            CFG,
            LaunchGroup(
                workflow_id="w-1", group="g", barrier=False, pool="p", tasks=[_spec("t", **kw)]
            ),
        )

    with pytest.raises(ob.LaunchError, match="privileged"):
        launch(privileged=True)
    with pytest.raises(ob.LaunchError, match="hostNetwork"):
        launch(host_network=True)
    with pytest.raises(ob.LaunchError, match="/opt"):
        launch(volume_mounts=["/opt:/x"])
    with pytest.raises(ob.LaunchError, match="host:nope"):
        launch(args=["{{host:nope}}"])


def test_names_are_valid_and_distinct() -> None:
    names = {ob.dns_label(x) for x in ["a_b", "a-b", "A-B", "9lives", "x" * 80, "x" * 81]}
    assert len(names) == 6
    for n in names:
        assert len(n) <= 63 and n[0].isalpha() and n == n.lower()
    assert ob.label_value("ok.value-1") == "ok.value-1"
    assert len(ob.label_value("y" * 100)) <= 63


def test_single_task_group_no_service_no_pg_without_scheduler() -> None:
    cfg = KubernetesConfig(namespace="n", priority_classes=False)
    g = LaunchGroup(workflow_id="w-1", group="g", barrier=True, tasks=[_spec("t")])
    objs = ob.build_group(cfg, g)
    assert objs.prelude == [] and objs.pod_group is None
    pod = objs.pods[0]
    assert "schedulerName" not in pod["spec"] and "priorityClassName" not in pod["spec"]
    assert pod["metadata"]["annotations"]["osmo.io/barrier"] == "released"


def test_coscheduling_pod_group() -> None:
    cfg = KubernetesConfig(namespace="n", scheduler={"type": "coscheduling", "name": "sp"})
    g = LaunchGroup(workflow_id="w-1", group="g", barrier=False, tasks=[_spec("a"), _spec("b")])
    objs = ob.build_group(cfg, g)
    assert objs.pod_group is not None
    assert objs.pod_group["apiVersion"] == "scheduling.x-k8s.io/v1alpha1"
    assert objs.pod_group["spec"]["minMember"] == 2
    assert objs.pods[0]["metadata"]["labels"]["scheduling.x-k8s.io/pod-group"].endswith("-pg")


# ---- status ---------------------------------------------------------------------------------------


def _pod(phase: str, **status: Any) -> dict[str, Any]:
    return {
        "spec": {"nodeName": "n1", "containers": [{"name": "t"}, {"name": "osmo-ctrl"}]},
        "status": {"phase": phase, **status},
    }


SCHEDULED = {"type": "PodScheduled", "status": "True", "lastTransitionTime": "2026-01-01T00:00:00Z"}
T0 = 1767225600.0  # 2026-01-01T00:00:00Z


def _term(code: int, **kw: Any) -> dict[str, Any]:
    return {"terminated": {"exitCode": code, **kw}}


def test_pending_and_running() -> None:
    assert pod_outcome(_pod("Pending")) is None
    o = pod_outcome(_pod("Pending", conditions=[SCHEDULED]), now=T0 + 5)
    assert o is not None and o.status == "INITIALIZING" and o.node == "n1"
    o = pod_outcome(_pod("Pending", conditions=[SCHEDULED]), now=T0 + 4000, start_timeout=1800)
    assert o is not None and (o.status, o.exit_code) == ("FAILED_START_TIMEOUT", 3005)
    running = _pod(
        "Running",
        containerStatuses=[
            {"name": "t", "state": {"running": {"startedAt": "2026-01-01T00:00:09Z"}}}
        ],
    )
    o = pod_outcome(running)
    assert o is not None and o.status == "RUNNING" and o.started_at == T0 + 9


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        (
            {
                "containerStatuses": [
                    {"name": "t", "state": _term(0)},
                    {"name": "osmo-ctrl", "state": _term(0)},
                ]
            },
            ("COMPLETED", 0),
        ),
        ({"containerStatuses": [{"name": "t", "state": _term(7)}]}, ("FAILED", 7)),
        (
            {
                "containerStatuses": [
                    {"name": "t", "state": _term(0)},
                    {
                        "name": "osmo-ctrl",
                        "state": _term(1, message=json.dumps({"exit_code": 2012, "message": "up"})),
                    },
                ]
            },
            ("FAILED", 2012),
        ),
        (
            {"containerStatuses": [{"name": "osmo-ctrl", "state": _term(2)}]},
            ("FAILED", 2002),
        ),
        (
            {"initContainerStatuses": [{"name": "osmo-init", "state": _term(1)}]},
            ("FAILED", 256),
        ),
        (
            {"containerStatuses": [{"name": "t", "state": _term(137, reason="OOMKilled")}]},
            ("FAILED_EVICTED", 3004),
        ),
        ({"reason": "Evicted", "message": "disk"}, ("FAILED_EVICTED", 3004)),
        (
            {
                "conditions": [
                    {
                        "type": "DisruptionTarget",
                        "status": "True",
                        "reason": "PreemptionByScheduler",
                    }
                ]
            },
            ("FAILED_PREEMPTED", 3006),
        ),
        (
            {
                "conditions": [
                    {
                        "type": "DisruptionTarget",
                        "status": "True",
                        "reason": "DeletionByTaintManager",
                    }
                ]
            },
            ("FAILED_BACKEND_ERROR", 3001),
        ),
        ({"reason": "UnexpectedAdmissionError"}, ("FAILED_BACKEND_ERROR", 3001)),
        (
            {"containerStatuses": [{"name": "t", "state": _term(128, reason="StartError")}]},
            ("FAILED_START_ERROR", 3003),
        ),
    ],
)
def test_final_outcomes(status: dict[str, Any], expected: tuple[str, int]) -> None:
    phase = "Succeeded" if expected == ("COMPLETED", 0) else "Failed"
    o = pod_outcome(_pod(phase, **status))
    assert o is not None and (o.status, o.exit_code) == expected


def test_image_pull_and_config_error() -> None:
    waiting = {"waiting": {"reason": "ImagePullBackOff", "message": "no such image"}}
    o = pod_outcome(
        _pod("Pending", conditions=[SCHEDULED], containerStatuses=[{"name": "t", "state": waiting}])
    )
    assert (
        o is not None and o.status == "FAILED_IMAGE_PULL" and "no such image" in (o.message or "")
    )
    cfg_err = {"waiting": {"reason": "CreateContainerConfigError", "message": "secret missing"}}
    pod = _pod(
        "Pending", conditions=[SCHEDULED], containerStatuses=[{"name": "t", "state": cfg_err}]
    )
    o = pod_outcome(pod, now=T0 + 60)
    assert o is not None and o.status == "INITIALIZING"
    o = pod_outcome(pod, now=T0 + 601)
    assert o is not None and o.status == "FAILED_BACKEND_ERROR"
    assert pod_outcome(_pod("Unknown")) is not None


def test_nodes() -> None:
    assert parse_quantity("500m") == 0.5 and parse_quantity("2Gi") == 2 * 1024**3
    assert parse_quantity("1e3") == 1000 and parse_quantity("4") == 4
    node = {
        "metadata": {"name": "gpu-1", "labels": {"nvidia.com/gpu.product": "H100"}},
        "spec": {"taints": [{"key": "gpu", "value": "yes", "effect": "NoSchedule"}]},
        "status": {
            "allocatable": {
                "cpu": "7500m",
                "memory": "64Gi",
                "nvidia.com/gpu": "8",
                "ephemeral-storage": "100Gi",
            },
            "conditions": [
                {"type": "Ready", "status": "True"},
                {"type": "osmo.nvidia.com/gpu-ok", "status": "False"},
            ],
        },
    }
    info = node_info(node, {})
    assert (info.cpus, info.gpus, info.gpu_type, info.available) == (7.5, 8, "H100", True)
    assert info.taints == [{"key": "gpu", "value": "yes", "effect": "NoSchedule"}]
    assert info.conditions["osmo.nvidia.com/gpu-ok"] == "False"
    assert not node_available(node, {"^osmo.nvidia.com/": "True"})
    cordoned = {**node, "spec": {"unschedulable": True}}
    assert not node_available(cordoned, {})
    not_ready = {
        **node,
        "status": {**node["status"], "conditions": [{"type": "Ready", "status": "Unknown"}]},
    }
    assert not node_info(not_ready, {}).available
