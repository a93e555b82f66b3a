"""The local executor: tasks run as processes on this host, isolated with namespaces.

Each task runs under its own supervisor (forked by a warm zygote), which spools the log and
records the exit code in the task's folder. Nothing depends on this process staying alive: a
restarted operator re-adopts every task folder it finds and reports what happened meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import shutil
import signal
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path

from ...protocol import LaunchGroup, LogChunk, NodeInfo, TaskRef, TaskReport
from ...runtime import (
    FileSpec,
    InputSource,
    OutputTarget,
    TaskLaunch,
    ZygoteClient,
    read_log,
    read_status,
    release_barrier,
    signal_task,
    write_exit_for_lost,
    write_task,
)
from ...runtime.launch import DatasetOutput as RtDatasetOutput
from .base import Executor

log = logging.getLogger(__name__)
ACKED_MARKER = "acknowledged"
LOST_EXIT_CODE = 3001
LOG_CHUNK = 256 * 1024
LIVENESS_EVERY = 2.0


@dataclass
class Tracked:
    ref: TaskRef
    path: Path
    group: tuple[str, str]
    barrier: bool
    lead: bool = False
    reported: str | None = None  # last status sent
    log_offset: int = 0
    state_mtime: float = -1.0
    final: bool = False  # terminal report queued
    checked_at: float = 0.0  # last full status read (catches supervisors that died)
    released: bool = False


@dataclass
class GroupState:
    members: set[tuple[str, str, int]] = field(default_factory=set)
    released: bool = False


def _key(ref: TaskRef) -> tuple[str, str, int]:
    return (ref.workflow_id, ref.task, ref.retry_id)


def _key_str(k: tuple[str, str, int]) -> str:
    return f"{k[0]}/{k[1]}/{k[2]}"


def host_nodes() -> list[NodeInfo]:
    memory = 0
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    memory = int(line.split()[1]) * 1024
                    break
    except OSError:
        pass
    gpus = (
        len([d for d in os.listdir("/dev") if d.startswith("nvidia") and d[6:].isdigit()])
        if os.path.isdir("/dev")
        else 0
    )
    try:
        disk = shutil.disk_usage("/").total
    except OSError:
        disk = 0
    return [
        NodeInfo(
            name=socket.gethostname(),
            cpus=float(os.cpu_count() or 1),
            memory_bytes=memory,
            gpus=gpus,
            storage_bytes=disk,
            labels={"osmo.io/executor": "local"},
            available=True,
        )
    ]


def host_id() -> str:
    """This host's identity (machine-id, else the host name)."""
    for path in ("/etc/machine-id", "/var/lib/dbus/machine-id"):
        try:
            value = Path(path).read_text().strip()
        except OSError:
            continue
        if value:
            return f"host-{value[:16]}"
    return f"host-{socket.gethostname()}"


class LocalExecutor(Executor):
    kind = "local"

    def __init__(self, state_dir: Path, *, kill_grace: float = 5.0, poll_interval: float = 0.02):
        super().__init__()
        self.root = state_dir / "tasks"
        self.kill_grace = kill_grace
        self.poll_interval = poll_interval
        self.tasks: dict[tuple[str, str, int], Tracked] = {}
        self.groups: dict[tuple[str, str], GroupState] = {}
        self.zygote = ZygoteClient()
        self._monitor: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._nodes = host_nodes()
        self.cluster_id = host_id()

    # ---- lifecycle ------------------------------------------------------------------------

    async def start(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        await self.zygote.start()
        self._adopt()
        self._monitor = asyncio.create_task(self._monitor_loop(), name="local-executor-monitor")

    def _adopt(self) -> None:
        """Take over task folders left by an earlier operator process."""
        for wf_dir in sorted(self.root.iterdir()) if self.root.exists() else []:
            for task_dir in sorted(wf_dir.iterdir()) if wf_dir.is_dir() else []:
                for retry_dir in sorted(task_dir.iterdir()) if task_dir.is_dir() else []:
                    if not retry_dir.name.isdigit() or not (retry_dir / "task.json").exists():
                        continue
                    if (retry_dir / ACKED_MARKER).exists():
                        shutil.rmtree(retry_dir, ignore_errors=True)
                        continue
                    try:
                        launch = TaskLaunch.model_validate_json(
                            (retry_dir / "task.json").read_text()
                        )
                    except (OSError, ValueError):
                        log.warning("unreadable task folder %s; leaving it", retry_dir)
                        continue
                    ref = TaskRef(
                        workflow_id=launch.workflow_id, task=launch.task, retry_id=launch.retry_id
                    )
                    k = _key(ref)
                    gkey = (launch.workflow_id, launch.group)
                    self.tasks[k] = Tracked(
                        ref=ref, path=retry_dir, group=gkey, barrier=launch.barrier, released=True
                    )
                    self.groups.setdefault(gkey, GroupState(released=True)).members.add(k)
        if self.tasks:
            log.info("adopted %d task(s) from an earlier run", len(self.tasks))

    async def shutdown(self, stop_tasks: bool) -> None:
        if stop_tasks:
            live = [t for t in self.tasks.values() if not t.final]
            for t in live:
                signal_task(t.path, signal.SIGTERM)
            deadline = time.monotonic() + self.kill_grace + 3
            while time.monotonic() < deadline:
                if all(not read_status(t.path).supervisor_alive for t in live):
                    break
                await asyncio.sleep(0.05)
        if self._monitor is not None:
            self._monitor.cancel()
            await asyncio.gather(self._monitor, return_exceptions=True)
        await self.zygote.close()

    # ---- what the connection asks ---------------------------------------------------------

    def nodes(self) -> list[NodeInfo]:
        return self._nodes

    def known_tasks(self) -> list[TaskReport]:
        out = []
        for t in self.tasks.values():
            report = self._report(t, read_status(t.path))
            if report is not None:
                out.append(report)
        return out

    def set_log_offsets(self, offsets: dict[str, int]) -> None:
        for k, t in self.tasks.items():
            t.log_offset = offsets.get(_key_str(k), 0)
            t.reported = None  # report the current state again on this connection
            t.final = False
        self._wake.set()

    async def acknowledged(self, refs: list[TaskRef]) -> None:
        for ref in refs:
            t = self.tasks.get(_key(ref))
            if t is None or not read_status(t.path).done:
                continue
            self.tasks.pop(_key(ref), None)
            group = self.groups.get(t.group)
            if group is not None:
                group.members.discard(_key(ref))
                if not group.members:
                    self.groups.pop(t.group, None)
            with contextlib.suppress(OSError):
                (t.path / ACKED_MARKER).touch()
            await asyncio.to_thread(shutil.rmtree, t.path, True)

    async def launch(self, group: LaunchGroup) -> None:
        gkey = (group.workflow_id, group.group)
        gate = group.barrier and len(group.tasks) > 1
        hosts = {t.task: "127.0.0.1" for t in group.tasks}
        state = self.groups.setdefault(gkey, GroupState())
        fresh: list[tuple[Tracked, TaskLaunch]] = []
        for spec in group.tasks:
            k = _key(spec)
            path = self.root / spec.workflow_id / spec.task / str(spec.retry_id)
            if k in self.tasks or path.exists():
                continue  # a replayed launch
            launch = TaskLaunch(
                workflow_id=spec.workflow_id,
                group=spec.group,
                task=spec.task,
                retry_id=spec.retry_id,
                command=spec.command,
                args=spec.args,
                environment=spec.environment,
                files=[
                    FileSpec(path=f.path, contents=f.contents, base64=f.base64) for f in spec.files
                ],
                inputs=[
                    InputSource(name=i.name, url=i.url, regex=i.regex, manifest=i.manifest)
                    for i in spec.inputs
                ],
                dataset_outputs=[
                    RtDatasetOutput.model_validate(d.model_dump()) for d in spec.dataset_outputs
                ],
                dataset_bucket=spec.dataset_bucket,
                output_url=spec.output_url,
                outputs=[OutputTarget(url=o.url, regex=o.regex) for o in spec.outputs],
                data_credentials=spec.data_credentials,
                barrier=gate,
                hosts=hosts,
                image=spec.image,
                kill_grace_seconds=self.kill_grace,
            )
            ref = TaskRef(workflow_id=spec.workflow_id, task=spec.task, retry_id=spec.retry_id)
            tracked = Tracked(ref=ref, path=path, group=gkey, barrier=gate, lead=spec.lead)
            # Register the whole group before spawning anything: the barrier must not be
            # released while only part of the group is known.
            self.tasks[k] = tracked
            state.members.add(k)
            fresh.append((tracked, launch))
        for tracked, launch in fresh:
            try:
                write_task(tracked.path, launch)
                await self.zygote.spawn(tracked.path)
            except Exception as exc:
                log.exception("could not start task %s", _key_str(_key(tracked.ref)))
                tracked.path.mkdir(parents=True, exist_ok=True)
                write_exit_for_lost(tracked.path, 3003, f"could not start the task: {exc}")
        self._wake.set()

    async def stop(self, refs: list[TaskRef], reason: str) -> None:
        for ref in refs:
            t = self.tasks.get(_key(ref))
            if t is None:
                continue
            if not signal_task(t.path, signal.SIGTERM):
                status = read_status(t.path)
                if not status.done:
                    write_exit_for_lost(t.path, 143, f"stopped before it started: {reason}")
        self._wake.set()

    # ---- watching tasks -------------------------------------------------------------------

    def _report(self, t: Tracked, status: object) -> TaskReport | None:
        from ...runtime import TaskStatus as RtStatus

        assert isinstance(status, RtStatus)
        base = dict(
            workflow_id=t.ref.workflow_id,
            task=t.ref.task,
            retry_id=t.ref.retry_id,
            node=self._nodes[0].name,
        )
        if status.exit is not None:
            e = status.exit
            if e.phase == "lost":
                return TaskReport(
                    **base,
                    status="FAILED_BACKEND_ERROR",
                    exit_code=LOST_EXIT_CODE,
                    message=e.error,
                    started_at=e.started_at,
                    finished_at=e.finished_at,
                )
            code = e.exit_code
            datasets: list[dict[str, object]] = []
            if code == 0:
                try:
                    datasets = json.loads((t.path / "datasets.json").read_text())
                except (OSError, ValueError):
                    datasets = []
            return TaskReport(
                **base,
                datasets=datasets,
                status="COMPLETED" if code == 0 else "FAILED",
                exit_code=code,
                message=e.error,
                started_at=e.started_at,
                finished_at=e.finished_at,
            )
        if status.lost:
            return TaskReport(
                **base,
                status="FAILED_BACKEND_ERROR",
                exit_code=LOST_EXIT_CODE,
                message="the task's supervisor died",
            )
        if status.state in ("running", "uploading"):
            return TaskReport(**base, status="RUNNING", started_at=status.started_at)
        return TaskReport(**base, status="INITIALIZING")

    async def _monitor_loop(self) -> None:
        idle = 0
        while True:
            try:
                busy = self._scan()
            except Exception:
                log.exception("task monitor failed")
                busy = False
            idle = 0 if busy else idle + 1
            # Poll fast while tasks are moving; back off when nothing changes.
            delay = self.poll_interval if idle < 50 else min(0.25, self.poll_interval * 5)
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), delay)

    def _scan(self) -> bool:
        changed = False
        for t in list(self.tasks.values()):
            if t.final:
                continue
            try:
                mtime = os.stat(t.path / "state").st_mtime
            except FileNotFoundError:
                mtime = 0.0
            changed |= self._ship_log(t)
            now = time.monotonic()
            if (
                mtime == t.state_mtime
                and t.reported is not None
                and now - t.checked_at < LIVENESS_EVERY
            ):
                continue
            t.checked_at = now
            status = read_status(t.path)
            if status.lost:
                write_exit_for_lost(
                    t.path,
                    LOST_EXIT_CODE,
                    "the task's supervisor died without recording an exit code",
                )
                status = read_status(t.path)
            t.state_mtime = mtime
            report = self._report(t, status)
            if report is None:
                continue
            if report.status == t.reported and not status.done:
                continue
            if status.done:
                self._ship_log(t, everything=True)
                t.final = True
            t.reported = report.status
            self.outbox.put_nowait(report)
            changed = True
        self._release_barriers()
        return changed

    def _ship_log(self, t: Tracked, everything: bool = False) -> bool:
        try:
            size = os.stat(t.path / "output.log").st_size
        except FileNotFoundError:
            return False
        shipped = False
        while size > t.log_offset:
            data, new_offset = read_log(t.path, t.log_offset, LOG_CHUNK)
            if not data:
                break
            self.outbox.put_nowait(
                LogChunk(
                    workflow_id=t.ref.workflow_id,
                    task=t.ref.task,
                    retry_id=t.ref.retry_id,
                    offset=t.log_offset,
                    data=data.decode("utf-8", "surrogateescape"),
                )
            )
            t.log_offset = new_offset
            shipped = True
            if not everything:
                break
        return shipped

    def _release_barriers(self) -> None:
        for _gkey, group in self.groups.items():
            if group.released:
                continue
            members = [self.tasks[k] for k in group.members if k in self.tasks]
            gated = [m for m in members if m.barrier]
            if not gated:
                group.released = True
                continue
            states = [read_status(m.path) for m in gated]
            if any(s.done for s in states) or all(
                s.state in ("ready", "running", "uploading", "done") for s in states
            ):
                for m in gated:
                    release_barrier(m.path)
                group.released = True
