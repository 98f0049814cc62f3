"""The kubelet's probe manager, as upstream's pkg/kubelet/prober/prober_manager.go with its
results managers: one worker per probe of every running container, and the results they record.

The kubelet tells it when a container starts (``container_started``: the container's workers
start, replacing those of an earlier instance, with fresh results) and stops, and asks
``ready()`` and ``started()`` when it writes the pod's status, as upstream's UpdatePodStatus:

* started: the startup probe has succeeded, or the container has none;
* ready: started, and the readiness probe has succeeded (it starts as failed), or there is none;
  asking while it has no success yet triggers an immediate readiness probe, as upstream does.

Both are False for a container not running (never started, or stopped). The manager calls back:

* ``on_change(pod_uid)`` when a readiness result flips or a startup probe succeeds, so the
  kubelet rewrites the pod status (and the EndpointSlice controller follows);
* ``on_liveness_failure(pod_uid, container_name, message)`` when the liveness or the startup
  probe fails (after failureThreshold), with upstream's kill message "Container <name> failed
  liveness probe" / "... failed startup probe"; the kubelet kills the container with
  ``probe_grace(pod, name, kind)`` and restarts it per restartPolicy, then calls
  ``container_started`` for the new instance.

Callbacks are called from the event loop; an exception in one is logged, never raised here.
"""
from __future__ import annotations

import asyncio
import logging
import time
from typing import Callable

from kubelab.client.events import EventRecorder

from .execprobe import ExecSync
from .prober import LIVENESS, PROBE_KINDS, READINESS, STARTUP, Prober, find_container, probe_grace, probe_key
from .results import Result
from .worker import INITIAL_RESULT, Worker

log = logging.getLogger(__name__)

_Key = tuple[str, str]            # (pod uid, container name)
_WorkerKey = tuple[str, str, str]  # (pod uid, container name, kind)


class ProbeManager:
    """Probe workers of all containers of one kubelet, and their results."""

    def __init__(self, exec_sync: ExecSync, *, on_change: Callable[[str], None],
                 on_liveness_failure: Callable[[str, str, str], None],
                 recorder: EventRecorder | None = None, clock: Callable[[], float] = time.time) -> None:
        self.prober = Prober(exec_sync, recorder)
        self.on_change = on_change
        self.on_liveness_failure = on_liveness_failure
        self.clock = clock                   # wall clock: containers' started_at are Unix times
        self.start_time = time.monotonic()   # when the kubelet started: first probes are jittered until a period later
        self._workers: dict[_WorkerKey, Worker] = {}
        self._results: dict[_WorkerKey, tuple[str, Result]] = {}   # -> (container id, result)
        self._running: dict[_Key, str] = {}                        # -> container id
        self._stopping: set[asyncio.Task] = set()
        self._closed = False

    # -- what the kubelet tells ----------------------------------------------------------------

    def container_started(self, pod: dict, container_name: str, container_id: str, started_at: float,
                          pod_ip: str) -> None:
        """A container (a new instance) is running since ``started_at`` (Unix seconds): start its
        probe workers with fresh results, stopping those of an earlier instance. Calling it again
        for the same container_id changes nothing (but the pod the workers see). Call it from
        the event loop's thread: the workers are tasks of the running loop."""
        if self._closed:
            return
        uid = str((pod.get("metadata") or {}).get("uid") or "")
        if self._running.get((uid, container_name)) == container_id:
            self.update_pod(pod)  # the same instance again: keep its workers, thresholds and results
            return
        self._stop_container(uid, container_name)
        self._running[(uid, container_name)] = container_id
        found = find_container(pod, container_name)
        if found is None:
            log.warning("probe manager: container %s not in pod %s", container_name, uid)
            return
        container = found[0]
        for kind in PROBE_KINDS:
            if not isinstance(container.get(probe_key(kind)), dict):
                continue
            worker = Worker(self, kind, pod, container, container_id, started_at, pod_ip)
            self._workers[(uid, container_name, kind)] = worker
            self._results[(uid, container_name, kind)] = (container_id, INITIAL_RESULT[kind])
            worker.start()

    def container_stopped(self, pod_uid: str, container_name: str) -> None:
        """The container is no longer running: stop its workers and forget its results."""
        self._stop_container(pod_uid, container_name)

    def remove_pod(self, pod_uid: str) -> None:
        """The pod is gone (or terminal): stop the workers of all its containers."""
        for uid, name in [k for k in self._running if k[0] == pod_uid]:
            self._stop_container(uid, name)
        for uid, name, _ in [k for k in self._workers if k[0] == pod_uid]:
            self._stop_container(uid, name)

    def update_pod(self, pod: dict) -> None:
        """A newer version of a pod: its workers see it (a deletionTimestamp quiets liveness and
        startup probes, as upstream)."""
        uid = str((pod.get("metadata") or {}).get("uid") or "")
        for (wuid, _, _), worker in self._workers.items():
            if wuid == uid:
                worker.pod = pod

    # -- what the kubelet asks -------------------------------------------------------------------

    probe_grace = staticmethod(probe_grace)

    def started(self, pod_uid: str, container_name: str) -> bool:
        """Whether the running container has started: its startup probe succeeded, or it has none."""
        if (pod_uid, container_name) not in self._running:
            return False
        found = self._results.get((pod_uid, container_name, STARTUP))
        if found is not None:
            return found[1] == Result.SUCCESS
        return (pod_uid, container_name, STARTUP) not in self._workers

    def ready(self, pod_uid: str, container_name: str) -> bool:
        """Whether the running container is ready: started, and its readiness probe succeeded
        (or it has none)."""
        if not self.started(pod_uid, container_name):
            return False
        found = self._results.get((pod_uid, container_name, READINESS))
        if found is not None and found[1] == Result.SUCCESS:
            return True
        worker = self._workers.get((pod_uid, container_name, READINESS))
        if worker is None:
            return True
        worker.trigger()
        return False

    def result(self, pod_uid: str, container_name: str, kind: str) -> Result | None:
        """The recorded result of a probe of a running container (None without that probe)."""
        found = self._results.get((pod_uid, container_name, kind))
        return found[1] if found else None

    # -- what the workers report -----------------------------------------------------------------

    def set_result(self, worker: Worker, result: Result) -> None:
        """Record a worker's result and tell the kubelet what changed."""
        key = (worker.pod_uid, worker.container_name, worker.kind)
        if self._workers.get(key) is not worker:
            return  # a stopped worker's late result
        previous = self._results.get(key)
        self._results[key] = (worker.container_id, result)
        if previous is not None and previous[1] == result:
            return
        if result == Result.FAILURE and worker.kind in (LIVENESS, STARTUP):
            message = f"Container {worker.container_name} failed {worker.kind} probe"
            self._call(self.on_liveness_failure, worker.pod_uid, worker.container_name, message)
        elif worker.kind == READINESS or (worker.kind == STARTUP and result == Result.SUCCESS):
            self._call(self.on_change, worker.pod_uid)

    def _call(self, fn: Callable[..., None], *args: str) -> None:
        try:
            fn(*args)
        except Exception:  # noqa: BLE001 - a callback's bug must not stop probing
            log.exception("probe manager callback %s failed", getattr(fn, "__name__", fn))

    # -- stopping --------------------------------------------------------------------------------

    def _stop_container(self, pod_uid: str, container_name: str) -> None:
        self._running.pop((pod_uid, container_name), None)
        for kind in PROBE_KINDS:
            key = (pod_uid, container_name, kind)
            self._results.pop(key, None)
            worker = self._workers.pop(key, None)
            if worker is not None:
                worker.stop()
                if worker.task is not None and not worker.task.done():
                    self._stopping.add(worker.task)
                    worker.task.add_done_callback(self._stopping.discard)

    async def close(self) -> None:
        """Stop every worker and wait until they have ended."""
        self._closed = True
        for uid, name, _ in list(self._workers):
            self._stop_container(uid, name)
        self._running.clear()
        pending = list(self._stopping)
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)
