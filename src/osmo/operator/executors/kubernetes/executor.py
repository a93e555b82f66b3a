"""The Kubernetes executor: task groups become pods (and their Secrets, Service, PodGroup).

State lives in the cluster: every object carries labels and annotations naming its workflow,
group, task and retry, so a restarted operator lists the pods it manages and carries on. Pods
are watched from the list's resourceVersion; a broken watch resumes from the last version seen,
and a 410 (version too old) lists again, comparing with what it knew, so no transition is lost.

Placement is the cluster's: pods never set ``nodeName``; kube-scheduler (or the configured gang
scheduler, guarded by a PodGroup) binds them. A group's objects are deleted by label once every
task of the group has finished and the control plane acknowledged it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from ....protocol import LaunchGroup, LogChunk, NodeInfo, TaskRef, TaskReport
from ..base import Executor
from .client import (
    NAMESPACES,
    NODES,
    PODS,
    SECRETS,
    SERVICES,
    ApiError,
    Gone,
    Kube,
    Resource,
    gather_limited,
    load_api_client,
)
from .config import KubernetesConfig
from .objects import (
    A_BARRIER,
    A_GROUP,
    A_LEAD,
    A_RETRY,
    A_TASK,
    A_WORKFLOW,
    COSCHED_GROUP,
    CTRL,
    KAI_GROUP,
    L_GROUP_UUID,
    MANAGED_BY,
    MANAGED_BY_VALUE,
    LaunchError,
    build_group,
    group_uuid,
    pod_name,
)
from .status import PodOutcome, node_info, pod_outcome, user_container_name

log = logging.getLogger(__name__)
Key = tuple[str, str, int]
STOPPED_EXIT_CODE = 143
FORCE_DELETE = frozenset(
    {"FAILED_IMAGE_PULL", "FAILED_START_TIMEOUT", "FAILED_BACKEND_ERROR", "FAILED_START_ERROR"}
)
LOG_LIMIT_BYTES = 8 << 20


def _key(ref: TaskRef) -> Key:
    return (ref.workflow_id, ref.task, ref.retry_id)


def _key_str(k: Key) -> str:
    return f"{k[0]}/{k[1]}/{k[2]}"


@dataclass
class Tracked:
    ref: TaskRef
    pod: str
    group: tuple[str, str]
    lead: bool = False
    outcome: PodOutcome | None = None  # latest from the pod
    reported: str | None = None  # status last put in the outbox
    final: bool = False  # terminal report queued
    acked: bool = False
    stopping: str | None = None  # reason, when we deleted the pod
    log_offset: int = 0
    gone: bool = False  # the pod no longer exists
    ctrl_ready: bool = False
    barrier_released: bool = True
    finishing: bool = False
    last_pod: dict[str, Any] | None = None


@dataclass
class Group:
    uuid: str
    members: set[Key] = field(default_factory=set)
    # Kinds this process created for the group (None: adopted, so look for every kind).
    kinds: set[str] | None = None
    gated: bool = False
    released: bool = False
    cleaning: bool = False


class KubernetesExecutor(Executor):
    kind = "kubernetes"

    def __init__(
        self,
        config: KubernetesConfig,
        *,
        kubeconfig: str | None = None,
        kube: Kube | None = None,
        housekeeping_interval: float = 5.0,
    ):
        super().__init__()
        self.config = config
        self.namespace = config.namespace
        self.kubeconfig = kubeconfig
        self.kube = kube
        self.housekeeping_interval = housekeeping_interval
        self.tasks: dict[Key, Tracked] = {}
        self.groups: dict[tuple[str, str], Group] = {}
        self._nodes: dict[str, NodeInfo] = {}
        self._loops: list[asyncio.Task[None]] = []
        self._background: set[asyncio.Task[Any]] = set()
        self.pod_rv = ""
        self.node_rv = ""
        self.relists = 0  # 410 recoveries (tests and figures)
        self._watch_interrupt = asyncio.Event()
        self._resume_from: str | None = None
        self._cleaned: OrderedDict[str, None] = OrderedDict()  # group uuids cleaned up
        self._synced = asyncio.Event()
        self._lock = asyncio.Lock()

    # ---- lifecycle ------------------------------------------------------------------------

    async def start(self) -> None:
        if self.kube is None:
            self.kube = Kube(await load_api_client(self.kubeconfig))
        # One cluster per backend name (reference §6.1): the kube-system namespace's UID.
        try:
            ns = await self.k.request("GET", NAMESPACES.path(None, "kube-system"))
            self.cluster_id = f"k8s:{ns['metadata']['uid']}"
        except ApiError as exc:
            log.warning("cannot read the kube-system namespace (%s); no cluster id", exc)
        await self._relist_nodes()
        await self._relist_pods()
        self._synced.set()
        self._loops = [
            asyncio.create_task(self._pod_loop(), name="k8s-pod-watch"),
            asyncio.create_task(self._node_loop(), name="k8s-node-watch"),
            asyncio.create_task(self._housekeeping(), name="k8s-housekeeping"),
        ]

    async def shutdown(self, stop_tasks: bool) -> None:
        if stop_tasks:
            live = [t.ref for t in self.tasks.values() if not t.final]
            if live:
                await self.stop(live, "the operator is shutting down")
        for loop in self._loops:
            loop.cancel()
        await asyncio.gather(*self._loops, return_exceptions=True)
        for t in list(self._background):
            t.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)
        if self.kube is not None:
            await self.kube.close()

    def _spawn(self, coro: Any, name: str) -> None:
        task = asyncio.create_task(coro, name=name)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    @property
    def k(self) -> Kube:
        assert self.kube is not None, "the executor is not started"
        return self.kube

    # ---- what the connection asks ---------------------------------------------------------

    def nodes(self) -> list[NodeInfo]:
        return sorted(self._nodes.values(), key=lambda n: n.name)

    def _report_for(self, t: Tracked) -> TaskReport:
        o = t.outcome
        base: dict[str, Any] = dict(
            workflow_id=t.ref.workflow_id, task=t.ref.task, retry_id=t.ref.retry_id
        )
        if o is None:
            return TaskReport(**base, status="PROCESSING")
        status = o.status
        if status == "RUNNING" and not t.barrier_released:
            status = "INITIALIZING"
        return TaskReport(
            **base,
            status=status,
            exit_code=o.exit_code,
            message=o.message,
            node=o.node,
            started_at=o.started_at,
            finished_at=o.finished_at,
        )

    def known_tasks(self) -> list[TaskReport]:
        return [self._report_for(t) for t in self.tasks.values() if not t.acked]

    def set_log_offsets(self, offsets: dict[str, int]) -> None:
        for k, t in self.tasks.items():
            t.log_offset = offsets.get(_key_str(k), t.log_offset)
            if t.final and not t.acked:
                t.final = False  # send the outcome again on this connection
            t.reported = None
        for t in list(self.tasks.values()):
            self._spawn(self._publish(t), "k8s-republish")

    async def acknowledged(self, refs: list[TaskRef]) -> None:
        touched: set[tuple[str, str]] = set()
        for ref in refs:
            t = self.tasks.get(_key(ref))
            if t is None or not t.final:
                continue
            t.acked = True
            touched.add(t.group)
        for gkey in touched:
            self._maybe_cleanup(gkey)

    # ---- launch ---------------------------------------------------------------------------

    async def launch(self, group: LaunchGroup) -> None:
        await self._synced.wait()
        gkey = (group.workflow_id, group.group)
        fresh = [s for s in group.tasks if _key(s) not in self.tasks]
        if not fresh:
            return  # a replayed launch
        guuid = group_uuid(group.workflow_id, group.group)
        state = self.groups.setdefault(gkey, Group(uuid=guuid))
        state.gated = group.barrier and len(group.tasks) > 1
        for spec in fresh:
            k = _key(spec)
            self.tasks[k] = Tracked(
                ref=TaskRef(workflow_id=spec.workflow_id, task=spec.task, retry_id=spec.retry_id),
                pod=pod_name(spec.workflow_id, spec.task, spec.retry_id),
                group=gkey,
                lead=spec.lead,
                barrier_released=not state.gated,
            )
            state.members.add(k)
        try:
            objects = build_group(self.config, group, fresh)
            known = state.kinds if state.kinds is not None else set()
            state.kinds = known | {"Pod"} | {o["kind"] for o in objects.prelude}
            if objects.pod_group is not None:
                state.kinds.add("PodGroup")
        except LaunchError as exc:
            self._fail_tasks([_key(s) for s in fresh], "FAILED_START_ERROR", 3003, str(exc))
            return
        limit = self.config.create_concurrency
        ns = self.namespace
        try:
            prelude = list(objects.prelude)
            if objects.pod_group is not None:
                prelude.append(objects.pod_group)
            for result in await gather_limited(limit, [self.k.create(o, ns) for o in prelude]):
                if isinstance(result, BaseException):
                    raise result
        except ApiError as exc:
            status = "FAILED_START_ERROR" if 400 <= exc.status < 500 else "FAILED_BACKEND_ERROR"
            code = 3003 if status == "FAILED_START_ERROR" else 3001
            self._fail_tasks(
                [_key(s) for s in fresh], status, code, f"could not create the group: {exc}"
            )
            self._spawn(self._cleanup_group(gkey, force=True), "k8s-cleanup")
            return
        except Exception as exc:
            log.exception("creating group %s/%s", *gkey)
            self._fail_tasks([_key(s) for s in fresh], "FAILED_BACKEND_ERROR", 3001, repr(exc))
            return
        results = await gather_limited(limit, [self.k.create(p, ns) for p in objects.pods])
        for spec, result in zip(fresh, results, strict=True):
            if isinstance(result, ApiError):
                bad = 400 <= result.status < 500
                self._fail_tasks(
                    [_key(spec)],
                    "FAILED_START_ERROR" if bad else "FAILED_BACKEND_ERROR",
                    3003 if bad else 3001,
                    f"could not create pod: {result}",
                )
            elif isinstance(result, BaseException):
                self._fail_tasks([_key(spec)], "FAILED_BACKEND_ERROR", 3001, repr(result))
            # A created pod is not observed from the POST's answer: by now the watch may have
            # delivered newer states of it, which that older object would overwrite.

    def _fail_tasks(self, keys: list[Key], status: str, code: int, message: str) -> None:
        now = time.time()
        for k in keys:
            t = self.tasks.get(k)
            if t is None or t.final:
                continue
            t.outcome = PodOutcome(status, code, message, None, None, now)
            self._queue(t)

    # ---- stop -----------------------------------------------------------------------------

    async def stop(self, refs: list[TaskRef], reason: str) -> None:
        targets: list[Tracked] = []
        for ref in refs:
            t = self.tasks.get(_key(ref))
            if t is None or t.final:
                continue
            t.stopping = reason or "stopped"
            targets.append(t)
        results = await gather_limited(
            self.config.create_concurrency,
            [self.k.delete(PODS, self.namespace, t.pod) for t in targets],
        )
        for t, result in zip(targets, results, strict=True):
            if result is False:  # the pod was already gone
                self._stopped(t)
            elif isinstance(result, BaseException):
                log.warning("deleting pod %s: %s", t.pod, result)

    def _stopped(self, t: Tracked) -> None:
        if t.final:
            return
        t.outcome = PodOutcome(
            "FAILED",
            STOPPED_EXIT_CODE,
            f"stopped: {t.stopping}",
            t.outcome.node if t.outcome else None,
            t.outcome.started_at if t.outcome else None,
            time.time(),
        )
        self._queue(t)

    # ---- pod events -----------------------------------------------------------------------

    def _track_pod(self, pod: dict[str, Any], deleted: bool = False) -> Tracked | None:
        meta = pod.get("metadata", {})
        ann = meta.get("annotations") or {}
        try:
            k = (ann[A_WORKFLOW], ann[A_TASK], int(ann[A_RETRY]))
        except (KeyError, ValueError):
            return None
        t = self.tasks.get(k)
        if t is not None:
            return t
        if deleted or (meta.get("labels") or {}).get(L_GROUP_UUID) in self._cleaned:
            return None  # the end of a group this operator already cleaned up
        if meta.get("deletionTimestamp") and pod.get("status", {}).get("phase") not in (
            "Succeeded",
            "Failed",
        ):
            pass  # adopted while being deleted: still report what it ends as
        gkey = (ann[A_WORKFLOW], ann.get(A_GROUP, ""))
        guuid = (meta.get("labels") or {}).get(L_GROUP_UUID) or group_uuid(*gkey)
        group = self.groups.setdefault(gkey, Group(uuid=guuid, released=True))
        gated = ann.get(A_BARRIER) == "held"
        group.gated = group.gated or gated
        t = Tracked(
            ref=TaskRef(workflow_id=k[0], task=k[1], retry_id=k[2]),
            pod=meta.get("name", ""),
            group=gkey,
            lead=ann.get(A_LEAD) == "true",
            barrier_released=not gated,
        )
        if gated:
            group.released = False
        self.tasks[k] = t
        group.members.add(k)
        return t

    def _observe(self, pod: dict[str, Any], deleted: bool = False) -> None:
        t = self._track_pod(pod, deleted)
        if t is None or t.final:
            return
        t.last_pod = pod
        ann = pod.get("metadata", {}).get("annotations") or {}
        t.barrier_released = ann.get(A_BARRIER, "released") == "released"
        statuses = pod.get("status", {}).get("containerStatuses") or []
        t.ctrl_ready = any(c.get("name") == CTRL and c.get("ready") for c in statuses)
        outcome = pod_outcome(
            pod,
            start_timeout=self.config.start_timeout,
            config_error_timeout=self.config.config_error_timeout,
        )
        if outcome is not None:
            t.outcome = outcome
        if deleted:
            t.gone = True
            if outcome is None or not outcome.final:
                if t.stopping is not None:
                    self._stopped(t)
                else:
                    self._lost(t, "the pod was deleted before it finished")
                return
        if t.outcome is not None and t.outcome.final:
            if not t.finishing:
                t.finishing = True
                self._spawn(self._finish(t, pod), "k8s-finish")
            return
        if t.outcome is not None:
            self._queue(t)
        group = self.groups.get(t.group)
        if group is not None and group.gated and not group.released:
            self._maybe_release(t.group)

    def _lost(self, t: Tracked, message: str) -> None:
        t.outcome = PodOutcome(
            "FAILED_BACKEND_ERROR",
            3001,
            message,
            t.outcome.node if t.outcome else None,
            t.outcome.started_at if t.outcome else None,
            time.time(),
        )
        self._queue(t)

    async def _finish(self, t: Tracked, pod: dict[str, Any]) -> None:
        """A pod ended: ship its log (the ctrl container streams the user's output), keep the
        last lines of failed containers, then report the outcome."""
        if t.final:
            return
        t.finishing = True
        outcome = t.outcome
        assert outcome is not None
        name = pod["metadata"]["name"]
        text = ""
        with contextlib.suppress(ApiError, OSError, asyncio.TimeoutError):
            text = await self.k.pod_log(self.namespace, name, CTRL, limit_bytes=LOG_LIMIT_BYTES)
        if not text and outcome.status != "COMPLETED":
            user = user_container_name(pod)
            with contextlib.suppress(ApiError, OSError, asyncio.TimeoutError):
                text = await self.k.pod_log(
                    self.namespace, name, user, tail_lines=self.config.error_log_lines
                )
        if t.final:
            return
        data = text.encode("utf-8", "surrogateescape")
        if len(data) > t.log_offset:
            chunk = data[t.log_offset :]
            self.outbox.put_nowait(
                LogChunk(
                    workflow_id=t.ref.workflow_id,
                    task=t.ref.task,
                    retry_id=t.ref.retry_id,
                    offset=t.log_offset,
                    data=chunk.decode("utf-8", "surrogateescape"),
                )
            )
            t.log_offset = len(data)
        self._queue(t)

    def _queue(self, t: Tracked) -> None:
        report = self._report_for(t)
        if report.status == t.reported:
            return
        if t.final:
            return
        t.reported = report.status
        if report.status not in ("PROCESSING", "INITIALIZING", "RUNNING"):
            t.final = True
            self._maybe_cleanup(t.group)
        self.outbox.put_nowait(report)

    async def _publish(self, t: Tracked) -> None:
        if t.outcome is not None and t.outcome.final and not t.final:
            if t.gone:
                self._queue(t)
            else:
                try:
                    pod = await self.k.request("GET", PODS.path(self.namespace, t.pod))
                    await self._finish(t, pod)
                except ApiError:
                    self._queue(t)
        else:
            self._queue(t)

    # ---- interactive (room for exec and port-forward; a later issue wires them to the CLI) --

    async def open_exec(
        self, ref: TaskRef, argv: list[str], tty: bool = False
    ) -> aiohttp.ClientWebSocketResponse:
        """A shell or command in the task's own container, through the Kubernetes API
        (needs ``pods/exec`` create: the chart's ``interactive`` value)."""
        t = self._running(ref)
        pod = t.last_pod or {}
        query = [("container", user_container_name(pod)), ("stdin", "true"), ("stdout", "true")]
        query += [("stderr", "false" if tty else "true"), ("tty", "true" if tty else "false")]
        query += [("command", a) for a in argv]
        return await self.k.open_stream(self.namespace, t.pod, "exec", query)

    async def open_port_forward(self, ref: TaskRef, port: int) -> aiohttp.ClientWebSocketResponse:
        """A forwarded TCP port of the task's pod (needs ``pods/portforward`` create)."""
        t = self._running(ref)
        return await self.k.open_stream(
            self.namespace, t.pod, "portforward", [("ports", str(port))]
        )

    def _running(self, ref: TaskRef) -> Tracked:
        t = self.tasks.get(_key(ref))
        if t is None or t.final or t.gone:
            raise LookupError(f"task {_key_str(_key(ref))} is not running on this backend")
        return t

    # ---- barrier --------------------------------------------------------------------------

    def _maybe_release(self, gkey: tuple[str, str]) -> None:
        group = self.groups[gkey]
        members = [self.tasks[k] for k in group.members if k in self.tasks]
        if not members:
            return
        if not all(m.ctrl_ready or m.final for m in members):
            return
        group.released = True
        self._spawn(self._release(gkey, members), "k8s-barrier")

    async def _release(self, gkey: tuple[str, str], members: list[Tracked]) -> None:
        patch = {"metadata": {"annotations": {A_BARRIER: "released"}}}
        todo = [m for m in members if not m.final and not m.barrier_released]
        results = await gather_limited(
            self.config.create_concurrency,
            [self.k.patch_merge(PODS, self.namespace, m.pod, patch) for m in todo],
        )
        failed = [r for r in results if isinstance(r, BaseException)]
        if failed:
            log.warning("releasing the barrier of %s/%s: %s (retried)", *gkey, failed[0])
            group = self.groups.get(gkey)
            if group is not None:
                group.released = False  # housekeeping tries again

    # ---- cleanup --------------------------------------------------------------------------

    def _maybe_cleanup(self, gkey: tuple[str, str]) -> None:
        group = self.groups.get(gkey)
        if group is None or group.cleaning:
            return
        members = [self.tasks[k] for k in group.members if k in self.tasks]
        if members and all(m.final and m.acked for m in members):
            group.cleaning = True
            # Pods that never ran, or whose node is gone, have no kubelet to end them gracefully.
            force = any(m.outcome is not None and m.outcome.status in FORCE_DELETE for m in members)
            self._spawn(self._cleanup_group(gkey, force=force), "k8s-cleanup")

    async def _cleanup_group(self, gkey: tuple[str, str], force: bool = False) -> None:
        group = self.groups.get(gkey)
        if group is None:
            return
        selector = f"{MANAGED_BY}={MANAGED_BY_VALUE},{L_GROUP_UUID}={group.uuid}"
        ns = self.namespace
        made = group.kinds  # None after a restart: every kind the configuration can create

        def wanted(kind: str) -> bool:
            return made is None or kind in made

        kinds: list[Resource] = [
            r
            for r, kind in ((PODS, "Pod"), (SECRETS, "Secret"), (SERVICES, "Service"))
            if wanted(kind)
        ]
        sched = self.config.scheduler.type
        if sched in ("kai", "coscheduling") and wanted("PodGroup"):
            g, v, plural, _ = KAI_GROUP if sched == "kai" else COSCHED_GROUP
            kinds.append(Resource(f"{g}/{v}", plural))
        for api_version, kind in self.config.group_template_kinds():
            if not wanted(kind):
                continue
            try:
                kinds.append(await self.k.resource_for(api_version, kind))
            except ApiError as exc:
                log.warning("cleanup of %s/%s: %s", api_version, kind, exc)
        try:
            for res in kinds:
                if res is SERVICES:
                    # Not every API server version has deletecollection for Services.
                    items = await self.k.request(
                        "GET", res.path(ns), query={"labelSelector": selector}
                    )
                    for item in items.get("items") or []:
                        await self.k.delete(res, ns, item["metadata"]["name"])
                else:
                    await self.k.delete_collection(res, ns, selector, grace=0 if force else None)
        except Exception as exc:
            log.warning("cleanup of group %s/%s failed (retried later): %s", *gkey, exc)
            group.cleaning = False
            return
        for k in list(group.members):
            self.tasks.pop(k, None)
        self.groups.pop(gkey, None)
        self._cleaned[group.uuid] = None
        while len(self._cleaned) > 10_000:
            self._cleaned.popitem(last=False)

    # ---- watching -------------------------------------------------------------------------

    def interrupt_watch(self, resume_from: str | None = None) -> None:
        """Drop the current pod watch connection; it resumes from the last version seen, or
        from ``resume_from`` (tests use a version the server no longer has)."""
        self._resume_from = resume_from
        self._watch_interrupt.set()

    async def _relist_pods(self) -> None:
        listed = await self.k.list(PODS, self.namespace, f"{MANAGED_BY}={MANAGED_BY_VALUE}")
        seen: set[Key] = set()
        for pod in listed["items"]:
            ann = pod.get("metadata", {}).get("annotations") or {}
            with contextlib.suppress(KeyError, ValueError):
                seen.add((ann[A_WORKFLOW], ann[A_TASK], int(ann[A_RETRY])))
            self._observe(pod)
        # Pods we knew that vanished while we were not watching.
        for k, t in list(self.tasks.items()):
            if k not in seen and not t.final and not t.gone:
                t.gone = True
                if t.stopping is not None:
                    self._stopped(t)
                elif t.outcome is not None and t.outcome.final:
                    self._queue(t)
                else:
                    self._lost(t, "the pod disappeared")
        self.pod_rv = listed["resourceVersion"]

    async def _pod_loop(self) -> None:
        delay = 0.2
        while True:
            try:
                await self._watch_pods_once()
                delay = 0.2
            except Gone:
                self.relists += 1
                log.info("pod watch: resourceVersion %s is gone; listing again", self.pod_rv)
                await self._relist_quietly()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.info("pod watch broke (%s); resuming in %.1fs", exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    async def _relist_quietly(self) -> None:
        delay = 0.2
        while True:
            try:
                await self._relist_pods()
                return
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.info("pod list failed (%s); retrying in %.1fs", exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    async def _watch_pods_once(self) -> None:
        self._watch_interrupt.clear()
        if self._resume_from is not None:
            self.pod_rv, self._resume_from = self._resume_from, None
        stream = self.k.watch(PODS, self.namespace, self.pod_rv, f"{MANAGED_BY}={MANAGED_BY_VALUE}")
        interrupted = asyncio.ensure_future(self._watch_interrupt.wait())
        try:
            iterator = stream.__aiter__()
            while True:
                nxt = asyncio.ensure_future(iterator.__anext__())
                done, _ = await asyncio.wait(
                    [nxt, interrupted], return_when=asyncio.FIRST_COMPLETED
                )
                if interrupted in done:
                    # An event read but not handled is seen again: the next watch starts
                    # from the version before it.
                    nxt.cancel()
                    with contextlib.suppress(BaseException):
                        await nxt
                    return
                try:
                    event = nxt.result()
                except StopAsyncIteration:
                    return
                obj = event.get("object") or {}
                rv = (obj.get("metadata") or {}).get("resourceVersion")
                etype = event.get("type")
                if etype in ("ADDED", "MODIFIED"):
                    self._observe(obj)
                elif etype == "DELETED":
                    self._observe(obj, deleted=True)
                if rv:
                    self.pod_rv = rv
        finally:
            interrupted.cancel()
            with contextlib.suppress(BaseException):
                await stream.aclose()

    async def _relist_nodes(self) -> None:
        selector = ",".join(f"{k}={v}" for k, v in self.config.node_selector.items()) or None
        listed = await self.k.list(NODES, None, selector)
        rules = self.config.node_conditions.rules
        self._nodes = {n["metadata"]["name"]: node_info(n, rules) for n in listed["items"]}
        self.node_rv = listed["resourceVersion"]

    async def _node_loop(self) -> None:
        delay = 0.2
        selector = ",".join(f"{k}={v}" for k, v in self.config.node_selector.items()) or None
        rules = self.config.node_conditions.rules
        while True:
            try:
                async for event in self.k.watch(NODES, None, self.node_rv, selector):
                    obj = event.get("object") or {}
                    meta = obj.get("metadata") or {}
                    if event.get("type") in ("ADDED", "MODIFIED"):
                        self._nodes[meta["name"]] = node_info(obj, rules)
                    elif event.get("type") == "DELETED":
                        self._nodes.pop(meta.get("name", ""), None)
                    if meta.get("resourceVersion"):
                        self.node_rv = meta["resourceVersion"]
                delay = 0.2
            except Gone:
                with contextlib.suppress(Exception):
                    await self._relist_nodes()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.info("node watch broke (%s); resuming in %.1fs", exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
                with contextlib.suppress(Exception):
                    await self._relist_nodes()

    async def _housekeeping(self) -> None:
        """Time-based outcomes (start timeout), retried cleanups, stuck barriers."""
        while True:
            await asyncio.sleep(self.housekeeping_interval)
            try:
                # Re-evaluate waiting pods locally: a start timeout needs no new event.
                for t in list(self.tasks.values()):
                    if not t.final and t.last_pod is not None and not t.gone:
                        self._observe(t.last_pod)
                for gkey, group in list(self.groups.items()):
                    if group.gated and not group.released:
                        self._maybe_release(gkey)
                for gkey in list(self.groups):
                    self._maybe_cleanup(gkey)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("housekeeping failed")


__all__ = ["KubernetesExecutor"]
