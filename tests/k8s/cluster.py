"""A real Kubernetes control plane for tests: etcd, kube-apiserver (RBAC, service-account keys),
kube-controller-manager, kube-scheduler and kwok (fake nodes and pod lifecycle).

Binaries come from ``scripts/k8s/build-test-binaries.sh`` (cached outside the repository).
Everything binds 127.0.0.1 on free ports and is stopped by ``stop()``.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
import yaml

REPO = Path(__file__).resolve().parents[2]
BUILD_SCRIPT = REPO / "scripts" / "k8s" / "build-test-binaries.sh"
KWOK_DIR = Path(__file__).parent / "kwok"
SYSTEM_NS = "osmo-system"  # where the operator chart is installed
WORKFLOW_NS = "osmo-workflows"  # where the executor creates workflow objects
BINARIES = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok", "helm")

# Minimal CRDs for the two PodGroup kinds the executor creates (written for these tests: the
# fields the executor sets, typed, and nothing else preserved).
CRDS: list[dict[str, Any]] = [
    {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"podgroups.{group}"},
        "spec": {
            "group": group,
            "names": {
                "kind": "PodGroup",
                "listKind": "PodGroupList",
                "plural": "podgroups",
                "singular": "podgroup",
            },
            "scope": "Namespaced",
            "versions": [
                {
                    "name": version,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "properties": {
                                "spec": {
                                    "type": "object",
                                    "required": ["minMember"],
                                    "properties": props,
                                },
                                "status": {
                                    "type": "object",
                                    "x-kubernetes-preserve-unknown-fields": True,
                                },
                            },
                        }
                    },
                }
            ],
        },
    }
    for group, version, props in (
        (
            "scheduling.run.ai",
            "v2alpha2",
            {
                "minMember": {"type": "integer", "minimum": 1},
                "queue": {"type": "string", "minLength": 1},
                "priorityClassName": {"type": "string"},
            },
        ),
        (
            "scheduling.x-k8s.io",
            "v1alpha1",
            {
                "minMember": {"type": "integer", "minimum": 1},
                "scheduleTimeoutSeconds": {"type": "integer", "minimum": 0},
            },
        ),
    )
]

NODES: list[dict[str, Any]] = [
    {"name": "kwok-cpu-0", "cpu": "16", "memory": "64Gi", "gpu": None},
    {"name": "kwok-cpu-1", "cpu": "16", "memory": "64Gi", "gpu": None},
    {"name": "kwok-gpu-0", "cpu": "64", "memory": "512Gi", "gpu": "8"},
]


def _die_with_parent() -> None:
    import ctypes

    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def bin_dir() -> Path:
    """The cached binaries; builds what is missing (a cold build takes minutes)."""
    out = subprocess.run(["bash", str(BUILD_SCRIPT)], capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"{BUILD_SCRIPT} failed (exit {out.returncode}):\n{out.stderr[-4000:]}")
    path = Path(out.stdout.strip().splitlines()[-1])
    missing = [b for b in BINARIES if not (path / b).exists()]
    if missing:
        raise RuntimeError(f"missing test binaries in {path}: {missing}")
    return path


class KubeCluster:
    def __init__(self, root: Path, bins: Path, pod_watch_cache: bool = False):
        # Without the API server's pod watch cache, a watch from a compacted version gets 410
        # (the tests need that); benchmarks keep the cache, as real clusters do.
        self.pod_watch_cache = pod_watch_cache
        self.root = root
        self.bins = bins
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.token = secrets.token_hex(16)
        self.api_port = 0
        self.url = ""
        self.http: httpx.Client | None = None
        self.kubeconfig = root / "admin.kubeconfig"

    # ---- processes --------------------------------------------------------------------------

    def _spawn(self, name: str, argv: list[str]) -> subprocess.Popen[bytes]:
        log = open(self.root / f"{name}.log", "ab")  # noqa: SIM115 - closed with the process
        proc = subprocess.Popen(
            argv,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=self.root,
            preexec_fn=_die_with_parent,  # nothing outlives a killed test run
        )
        log.close()
        self.procs[name] = proc
        return proc

    def log_tail(self, name: str, n: int = 3000) -> str:
        try:
            return (self.root / f"{name}.log").read_text(errors="replace")[-n:]
        except OSError:
            return ""

    def _wait(self, what: str, check: Any, timeout: float = 60, proc: str | None = None) -> None:
        deadline = time.monotonic() + timeout
        last: Exception | None = None
        while time.monotonic() < deadline:
            if proc and self.procs[proc].poll() is not None:
                raise RuntimeError(f"{proc} exited early:\n{self.log_tail(proc)}")
            try:
                if check():
                    return
            except Exception as exc:
                last = exc
            time.sleep(0.2)
        raise RuntimeError(f"{what} not ready in {timeout}s ({last}):\n{self.log_tail(proc or '')}")

    def start(self) -> None:
        r = self.root
        (r / "certs").mkdir(parents=True, exist_ok=True)
        subprocess.run(
            ["openssl", "genrsa", "-out", str(r / "sa.key"), "2048"],
            check=True,
            capture_output=True,
        )
        subprocess.run(
            ["openssl", "rsa", "-in", str(r / "sa.key"), "-pubout", "-out", str(r / "sa.pub")],
            check=True,
            capture_output=True,
        )
        (r / "tokens.csv").write_text(f'{self.token},admin,admin,"system:masters"\n')
        etcd_port, peer_port = free_port(), free_port()
        self._spawn(
            "etcd",
            [
                str(self.bins / "etcd"),
                "--data-dir", str(r / "etcd"),
                "--listen-client-urls", f"http://127.0.0.1:{etcd_port}",
                "--advertise-client-urls", f"http://127.0.0.1:{etcd_port}",
                "--listen-peer-urls", f"http://127.0.0.1:{peer_port}",
                "--initial-advertise-peer-urls", f"http://127.0.0.1:{peer_port}",
                "--initial-cluster", f"default=http://127.0.0.1:{peer_port}",
                "--listen-metrics-urls", f"http://127.0.0.1:{free_port()}",
                "--quota-backend-bytes", str(2 << 30),
                "--log-level", "warn",
            ],
        )  # fmt: skip
        self._wait(
            "etcd",
            lambda: httpx.get(f"http://127.0.0.1:{etcd_port}/health", timeout=2).status_code == 200,
            proc="etcd",
        )
        self.api_port = free_port()
        self.url = f"https://127.0.0.1:{self.api_port}"
        self.etcd_url = f"http://127.0.0.1:{etcd_port}"
        self._start_apiserver()
        self.http = httpx.Client(
            base_url=self.url,
            verify=False,
            headers={"Authorization": f"Bearer {self.token}"},
            timeout=30,
        )
        self.write_kubeconfig(self.kubeconfig, self.token)
        kc = str(self.kubeconfig)
        self._spawn(
            "kube-controller-manager",
            [
                str(self.bins / "kube-controller-manager"),
                "--kubeconfig", kc,
                "--authentication-kubeconfig", kc,
                "--authorization-kubeconfig", kc,
                "--leader-elect=false",
                "--bind-address", "127.0.0.1",
                "--secure-port", str(free_port()),
                # nodelifecycle stays: it lifts the not-ready taint new nodes get.
                "--controllers", "*,-nodeipam,-cloud-node-lifecycle,-service-lb-controller",
                "--node-monitor-grace-period", "120s",
                "--service-account-private-key-file", str(r / "sa.key"),
                "--use-service-account-credentials=false",
                "--concurrent-gc-syncs", "10",
            ],
        )  # fmt: skip
        self._spawn(
            "kube-scheduler",
            [
                str(self.bins / "kube-scheduler"),
                "--kubeconfig", kc,
                # The default 50 QPS would make binding the bottleneck of the benchmark.
                "--kube-api-qps", "500",
                "--kube-api-burst", "1000",
                "--authentication-kubeconfig", kc,
                "--authorization-kubeconfig", kc,
                "--leader-elect=false",
                "--bind-address", "127.0.0.1",
                "--secure-port", str(free_port()),
            ],
        )  # fmt: skip
        stages = r / "kwok.yaml"
        # kwok's standard stages (from its module, put beside the binaries by the build
        # script) plus osmo's own completion stage.
        # Sorted by file name together: kwok takes the first matching stage in this order.
        files = sorted(
            [*(self.bins / "kwok-stages").glob("*.yaml"), *KWOK_DIR.glob("*.yaml")],
            key=lambda f: f.name,
        )
        docs = [yaml.safe_load(f.read_text()) for f in files]
        stages.write_text(yaml.safe_dump_all(docs))
        self._spawn(
            "kwok",
            [
                str(self.bins / "kwok"),
                "--kubeconfig", kc,
                "--config", str(stages),
                "--manage-all-nodes=false",
                "--manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake",
                "--disregard-status-with-annotation-selector=kwok.x-k8s.io/status=custom",
                "--cidr=10.0.0.1/24",
                "--node-ip=127.0.0.1",
                "--node-lease-duration-seconds=40",
                "--server-address", f"127.0.0.1:{free_port()}",
            ],
        )  # fmt: skip
        for crd in CRDS:
            self.apply(crd)
        for name in ("scheduling.run.ai", "scheduling.x-k8s.io"):
            self._wait(
                f"CRD {name}",
                lambda n=name: (
                    self.get(
                        f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/podgroups.{n}"
                    )["status"]
                    .get("acceptedNames", {})
                    .get("kind")
                    == "PodGroup"
                ),
            )
        for node in NODES:
            self.create_node(**node)
        self._wait("kwok nodes", self.nodes_ready, proc="kwok", timeout=60)

    def _start_apiserver(self) -> None:
        r = self.root
        self._spawn(
            "kube-apiserver",
            [
                str(self.bins / "kube-apiserver"),
                "--etcd-servers", self.etcd_url,
                "--bind-address", "127.0.0.1",
                "--advertise-address", "127.0.0.1",
                "--secure-port", str(self.api_port),
                "--cert-dir", str(r / "certs"),
                "--token-auth-file", str(r / "tokens.csv"),
                "--authorization-mode", "RBAC",
                "--service-account-issuer", "https://kubernetes.default.svc.cluster.local",
                "--service-account-key-file", str(r / "sa.pub"),
                "--service-account-signing-key-file", str(r / "sa.key"),
                "--service-cluster-ip-range", "10.96.0.0/16",
                "--allow-privileged=true",
                "--profiling=false",
                "--event-ttl", "10m",
                # Old versions go soon, so a test can resume a watch from one (410 Gone).
                "--etcd-compaction-interval", "5s",
                *([] if self.pod_watch_cache else ["--watch-cache-sizes", "pods#0"]),
            ],
        )  # fmt: skip
        self._wait(
            "kube-apiserver",
            lambda: (
                httpx.get(
                    f"{self.url}/readyz",
                    verify=False,
                    headers={"Authorization": f"Bearer {self.token}"},
                    timeout=2,
                ).status_code
                == 200
            ),
            proc="kube-apiserver",
            timeout=90,
        )

    def restart_apiserver(self) -> None:
        self._stop_proc("kube-apiserver")
        self._start_apiserver()

    def _stop_proc(self, name: str) -> None:
        proc = self.procs.pop(name, None)
        if proc is None:
            return
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def stop(self) -> None:
        if self.http is not None:
            self.http.close()
        for name in ("kwok", "kube-scheduler", "kube-controller-manager", "kube-apiserver", "etcd"):
            self._stop_proc(name)

    # ---- API --------------------------------------------------------------------------------

    def write_kubeconfig(self, path: Path, token: str) -> Path:
        path.write_text(
            yaml.safe_dump(
                {
                    "apiVersion": "v1",
                    "kind": "Config",
                    "clusters": [
                        {
                            "name": "test",
                            "cluster": {"server": self.url, "insecure-skip-tls-verify": True},
                        }
                    ],
                    "users": [{"name": "u", "user": {"token": token}}],
                    "contexts": [{"name": "c", "context": {"cluster": "test", "user": "u"}}],
                    "current-context": "c",
                }
            )
        )
        return path

    def _check(self, r: httpx.Response) -> Any:
        if r.status_code >= 400:
            raise AssertionError(f"{r.request.method} {r.request.url}: {r.status_code} {r.text}")
        return r.json() if r.content else None

    def get(self, path: str, **params: Any) -> Any:
        assert self.http is not None
        return self._check(self.http.get(path, params=params))

    def post(self, path: str, body: Any) -> Any:
        assert self.http is not None
        return self._check(self.http.post(path, json=body))

    def patch(self, path: str, body: Any, subresource: str = "") -> Any:
        assert self.http is not None
        return self._check(
            self.http.patch(
                path + subresource,
                content=__import__("json").dumps(body),
                headers={"Content-Type": "application/merge-patch+json"},
            )
        )

    def delete(self, path: str) -> None:
        assert self.http is not None
        r = self.http.delete(path)
        if r.status_code not in (200, 202, 404):
            raise AssertionError(f"DELETE {path}: {r.status_code} {r.text}")

    def path_for(self, obj: dict[str, Any], namespace: str | None = None) -> str:
        api_version, kind = obj["apiVersion"], obj["kind"]
        base = "/api/v1" if api_version == "v1" else f"/apis/{api_version}"
        resources = self.get(base)["resources"]
        res = next(x for x in resources if x["kind"] == kind and "/" not in x["name"])
        ns = obj.get("metadata", {}).get("namespace") or namespace
        if res["namespaced"]:
            return f"{base}/namespaces/{ns or 'default'}/{res['name']}"
        return f"{base}/{res['name']}"

    def apply(self, obj: dict[str, Any], namespace: str | None = None) -> Any:
        """Create ``obj`` (as the admin); an existing object is replaced."""
        path = self.path_for(obj, namespace)
        assert self.http is not None
        r = self.http.post(path, json=obj)
        if r.status_code == 409:
            name = obj["metadata"]["name"]
            current = self.get(f"{path}/{name}")
            obj = {
                **obj,
                "metadata": {
                    **obj["metadata"],
                    "resourceVersion": current["metadata"]["resourceVersion"],
                },
            }
            return self._check(self.http.put(f"{path}/{name}", json=obj))
        return self._check(r)

    def version_expired(self, namespace: str, rv: str) -> bool:
        """True once a pod watch from ``rv`` is refused with 410 (etcd compacted it)."""
        assert self.http is not None
        params = {"watch": "true", "resourceVersion": rv, "timeoutSeconds": "1"}
        with self.http.stream("GET", f"/api/v1/namespaces/{namespace}/pods", params=params) as r:
            if r.status_code == 410:
                return True
            for line in r.iter_lines():
                return '"code":410' in line
        return False

    def create_node(self, name: str, cpu: str, memory: str, gpu: str | None) -> None:
        capacity = {"cpu": cpu, "memory": memory, "pods": "500", "ephemeral-storage": "1Ti"}
        labels = {"kubernetes.io/hostname": name, "type": "kwok", "osmo.test/node": "yes"}
        if gpu:
            capacity["nvidia.com/gpu"] = gpu
            labels["nvidia.com/gpu.product"] = "NVIDIA-H100"
        self.apply(
            {
                "apiVersion": "v1",
                "kind": "Node",
                "metadata": {
                    "name": name,
                    "labels": labels,
                    "annotations": {"kwok.x-k8s.io/node": "fake"},
                },
                "status": {"capacity": capacity, "allocatable": capacity},
            }
        )

    def nodes_ready_count(self) -> int:
        items = self.get("/api/v1/nodes", labelSelector="type=kwok")["items"]
        return sum(
            1
            for n in items
            if not n.get("spec", {}).get("taints")
            and any(
                c["type"] == "Ready" and c["status"] == "True"
                for c in n.get("status", {}).get("conditions") or []
            )
        )

    def nodes_ready(self) -> bool:
        items = self.get("/api/v1/nodes", labelSelector="type=kwok")["items"]
        ready = [
            n
            for n in items
            if not n.get("spec", {}).get("taints")  # the not-ready taint is lifted
            and any(
                c["type"] == "Ready" and c["status"] == "True"
                for c in n.get("status", {}).get("conditions") or []
            )
        ]
        return len(ready) == len(NODES)

    def create_namespace(self, name: str) -> None:
        self.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
        # The ServiceAccount admission plugin needs the namespace's default account.
        self._wait(
            f"default ServiceAccount in {name}",
            lambda: bool(self.get(f"/api/v1/namespaces/{name}/serviceaccounts")["items"]),
        )

    def pods(
        self, namespace: str, selector: str = "app.kubernetes.io/managed-by=osmo"
    ) -> list[dict[str, Any]]:
        return list(
            self.get(f"/api/v1/namespaces/{namespace}/pods", labelSelector=selector)["items"]
        )

    def service_account_token(self, namespace: str, name: str) -> str:
        doc = self.post(
            f"/api/v1/namespaces/{namespace}/serviceaccounts/{name}/token",
            {
                "apiVersion": "authentication.k8s.io/v1",
                "kind": "TokenRequest",
                "spec": {"expirationSeconds": 7200},
            },
        )
        return str(doc["status"]["token"])

    def wait_for(self, what: str, check: Any, timeout: float = 60) -> Any:
        deadline = time.monotonic() + timeout
        last: Any = None
        while time.monotonic() < deadline:
            with contextlib.suppress(AssertionError, httpx.HTTPError):
                last = check()
                if last:
                    return last
            time.sleep(0.1)
        raise AssertionError(f"{what}: not true in {timeout}s (last: {last!r})")


def helm_template(
    bins: Path, chart: Path, *args: str, values: dict[str, Any] | None = None
) -> list[dict[str, Any]]:
    argv = [str(bins / "helm"), "template", "t", str(chart), *args]
    env = dict(
        os.environ, HELM_CACHE_HOME="/tmp/osmo-helm-cache", HELM_CONFIG_HOME="/tmp/osmo-helm-config"
    )
    if values:
        vf = Path(f"/tmp/osmo-helm-values-{os.getpid()}.yaml")
        vf.write_text(yaml.safe_dump(values))
        argv += ["-f", str(vf)]
    out = subprocess.run(argv, capture_output=True, text=True, env=env, check=False)
    if out.returncode != 0:
        raise AssertionError(f"helm template failed: {out.stderr}")
    return [d for d in yaml.safe_load_all(out.stdout) if d]
