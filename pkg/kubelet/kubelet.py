"""The kubelet: the pods bound to this node, run through CRI (upstream's kubelet.go, pod_workers.go,
the generic PLEG and the status manager, in one place for now).

* The Node is registered and its status kept (node.py); its Lease renewed every 10 s.
* Pods come from a field-selected watch (spec.nodeName=<node>). Each pod has a worker task that
  syncs it whenever its spec changes, the PLEG sees its containers change (a relist of the runtime
  every second) or its resync period passes: the runtime's view (cri.RuntimeClient.pod_runtime)
  and the spec give the actions (actions.compute: sandbox, init containers in order, app
  containers, restarts with CrashLoopBackOff), which run, and the status (podstatus.pod_status)
  is patched when it changed.
* Images follow imagePullPolicy, with ErrImagePull then ImagePullBackOff.
* A pod being deleted has its containers stopped within its grace period, its sandbox stopped, and
  is then deleted from the API for good (grace 0, uid precondition); its sandboxes are removed.
* Sandboxes of pods the API no longer has are stopped and removed.
* Containers get the kubelet-managed /etc/hosts (hostsfile.py) with the pod's hostAliases.
* Restart safety: everything is read back from the runtime, so a restarted kubelet adopts running
  containers without restarting them.
Events carry upstream's reasons and messages (Scheduled is the scheduler's; Pulling, Pulled,
Created, Started, Killing, BackOff, Failed, FailedCreatePodSandBox, SandboxChanged).
"""
from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path
from typing import Any, Callable

import grpc
from aiohttp import web

from kubelab.api.objcopy import deep_copy
from kubelab.api.resources import to_int
from kubelab.api.timefmt import now_rfc3339
from kubelab.client.events import EventRecorder
from kubelab.client.healthz import healthz_handler, self_signed_context, serve
from kubelab.client.informer import DeletedFinalStateUnknown, SharedInformerFactory
from kubelab.client.rest import ApiError, Client, is_conflict, is_not_found

from . import admission, gc
from . import node as nodestatus
from .actions import Backoff, PodRuntime, compute
from .config import KubeletConfig
from .cri import RuntimeClient, rpc_message as _rpc_message
from .envvars import EnvError, container_env
from .gc import ContainerGC, ImageGC
from .eviction import EvictionManager, hard_eviction_reservation
from .hostsfile import ETC_HOSTS, mounts_etc_hosts, write_hosts_file
from .lifecycle import run_hook
from .podstatus import Waiting, pod_status
from .prober import ProbeManager
from .server import KubeletServer
from .stats import StatsProvider
from . import static
from .runtimespec import POD_UID, container_config, host_resolv, image_pull_policy, sandbox_config
from .volumes import Mount, VolumeError, VolumeManager

log = logging.getLogger(__name__)

Obj = dict[str, Any]

IMAGE_BACKOFF_INITIAL, IMAGE_BACKOFF_MAX = 10.0, 300.0


def _sources(pod: Obj, kind: str) -> set[str]:
    """Names of the configMaps (kind "configMap") or secrets ("secret") a pod's volumes and env use."""
    key = "name" if kind == "configMap" else "secretName"
    out: set[str] = set()
    spec = pod.get("spec") or {}
    for v in spec.get("volumes") or []:
        if kind in v:
            out.add(v[kind].get(key) or v[kind].get("name") or "")
        for src in (v.get("projected") or {}).get("sources") or []:
            if kind in src:
                out.add(src[kind].get("name") or "")
    for c in (spec.get("containers") or []) + (spec.get("initContainers") or []):
        for e in c.get("envFrom") or []:
            ref = e.get(f"{kind}Ref")
            if ref:
                out.add(ref.get("name") or "")
        for e in c.get("env") or []:
            ref = (e.get("valueFrom") or {}).get(f"{kind}KeyRef")
            if ref:
                out.add(ref.get("name") or "")
    return out


def _differ_semantically(a: Obj, b: Obj) -> bool:
    """upstream's podsDifferSemantically: spec, labels, annotations or deletion fields changed (a
    status-only update of a pod is not a reason to sync it, unless its status is not the one this
    kubelet wrote: then a sync puts the kubelet's view back, like upstream's readiness reconcile)."""
    ma, mb = a.get("metadata") or {}, b.get("metadata") or {}
    return (a.get("spec") != b.get("spec") or ma.get("labels") != mb.get("labels")
            or ma.get("annotations") != mb.get("annotations")
            or ma.get("deletionTimestamp") != mb.get("deletionTimestamp")
            or ma.get("deletionGracePeriodSeconds") != mb.get("deletionGracePeriodSeconds"))


class Kubelet:
    def __init__(self, cfg: KubeletConfig, client: Client, runtime: RuntimeClient | None = None) -> None:
        self.cfg = cfg
        self.client = client
        self.runtime = runtime or RuntimeClient(cfg.container_runtime_endpoint, cfg.runtime_request_timeout)
        self.factory = SharedInformerFactory(client)
        self.pods = self.factory.informer("v1", "pods", field_selector=f"spec.nodeName={cfg.node_name}")
        self.services = self.factory.informer("v1", "services")
        self.configmaps = self.factory.informer("v1", "configmaps")
        self.secrets = self.factory.informer("v1", "secrets")
        self.volumes = VolumeManager(client, cfg.root_dir, cfg.node_name, cached=self._cached_source)
        self.recorder = EventRecorder(client, component="kubelet", host=cfg.node_name)
        self.probes = ProbeManager(self._exec_sync, on_change=self._trigger_soon,
                                   on_liveness_failure=self._liveness_failed, recorder=self.recorder)
        self.backoff = Backoff()
        self.image_backoff: dict[str, tuple[float, float]] = {}     # image -> (delay, failed at)
        self.known: dict[str, Obj] = {}                             # uid -> latest pod seen
        self.triggers: dict[str, asyncio.Event] = {}
        self.workers: dict[str, asyncio.Task] = {}
        self.start_times: dict[str, str] = {}
        self.waiting: dict[str, Waiting] = {}
        self.liveness_failed: dict[str, set[str]] = {}
        self.node_obj: Obj | None = None
        self.static: dict[str, Obj] = {}                # uid -> static pod (from --pod-manifest-path)
        self.mirrors: dict[str, Obj] = {}               # "ns/name" -> mirror pod as the API has it
        self._mirror_written: dict[str, str] = {}       # static uid -> mirror uid its status went to
        self._status_written: dict[str, Obj] = {}       # uid -> the status this kubelet last wrote (for echoes)
        self.runtime_name = "kubelab"
        self.host_dns = host_resolv(cfg.resolv_conf)
        self._pleg_seen: dict[str, tuple] = {}
        self._pleg_relisted = False                     # a relist has completed since this kubelet started
        self._static_changed = asyncio.Event()
        self._node_changed = asyncio.Event()
        self._tasks: list[asyncio.Task] = []
        self.loop_entered = 0.0                         # monotonic time the PLEG relist last ran
        self.stats = StatsProvider(self.runtime.rt, cfg.root_dir, images=self.runtime.img,
                                   pod_logs_dir=cfg.pod_logs_dir, cgroup_root=cfg.cgroup_root)
        self.evicting: dict[str, tuple[int, str, asyncio.Event]] = {}      # uid -> (grace, message, done)
        self.admitted: set[str] = set()
        self.pods_memory: int | None = None
        self.allocatable: dict[str, str] | None = None      # as last reported on the Node
        self.container_gc = ContainerGC(self.runtime, self._pod_state)
        self.image_gc = ImageGC(self.runtime, self.stats.image_fs, cfg.image_gc, keep=(cfg.pod_infra_container_image,))
        self.eviction = EvictionManager(cfg.eviction, summary=lambda: self.stats.summary(cfg.node_name),
                                        allocatable_memory=self._allocatable_memory, active_pods=self._active_pods,
                                        evict=self.evict_pod, pod_gone=lambda uid: uid not in self.evicting,
                                        on_conditions=self._node_status_soon, reclaim=self._reclaim_node_level,
                                        pods_cgroup=cfg.cgroup_root.rstrip("/") + "/kubepods")
        self.healthz = healthz_handler({"syncloop": self._syncloop_health})

    # -- node -------------------------------------------------------------------------------------

    async def register(self) -> None:
        body = nodestatus.node_object(self.cfg.node_name, labels=self.cfg.node_labels,
                                      taints=self.cfg.register_with_taints, pod_cidr=self.cfg.pod_cidr or None)
        try:
            self.node_obj = await self.client.create("v1", "nodes", body)
            log.info("registered node %s", self.cfg.node_name)
        except ApiError as e:
            if e.code != 409:
                raise
            self.node_obj = await self.client.get("v1", "nodes", None, self.cfg.node_name)
            want = {**(self.node_obj["metadata"].get("labels") or {}), **body["metadata"]["labels"]}
            patch: Obj = {}
            if want != self.node_obj["metadata"].get("labels"):
                patch["metadata"] = {"labels": want}
            if self.cfg.pod_cidr and not (self.node_obj.get("spec") or {}).get("podCIDR"):
                patch["spec"] = {"podCIDR": self.cfg.pod_cidr, "podCIDRs": [self.cfg.pod_cidr]}
            if patch:
                self.node_obj = await self.client.patch("v1", "nodes", None, self.cfg.node_name, patch)
        await self.update_node_status(force=True)

    async def update_node_status(self, force: bool = False) -> None:
        try:
            ready, why = await self.runtime.status()
            version = await self.runtime.version()
            images = await self.runtime.images()
        except grpc.aio.AioRpcError as e:
            ready, why, version, images = False, f"container runtime is down: {_rpc_message(e)}", "", []
        cap = nodestatus.capacity(self.cfg.root_dir, self.cfg.max_pods)
        for_pods = nodestatus.allocatable(cap, {**self.cfg.kube_reserved, **self.cfg.system_reserved})
        self.pods_memory = to_int("memory", for_pods["memory"])
        # allocatable also keeps the hard eviction thresholds back (upstream's hardEvictionReservation)
        alloc = nodestatus.allocatable(for_pods, hard_eviction_reservation(self.cfg.eviction.thresholds, cap))
        self.allocatable = alloc
        cur = await self.client.get("v1", "nodes", None, self.cfg.node_name)
        self.node_obj = cur
        st = nodestatus.node_status(cur.get("status") or {}, cap=cap, alloc=alloc, node_ip=self.cfg.node_ip,
                                    hostname=self.cfg.node_name, port=self.cfg.port,
                                    info=nodestatus.node_info(version), images=images, ready=ready,
                                    not_ready_message=why, pressure=self.eviction.conditions)
        if force or nodestatus.status_changed(cur.get("status") or {}, st):
            await self.client.patch("v1", "nodes", None, self.cfg.node_name, {"status": st}, subresource="status")

    def _node_status_soon(self) -> None:
        """A pressure condition changed: report it now rather than at the next period."""
        self._node_changed.set()

    async def _node_loop(self) -> None:
        last_report = time.monotonic()
        while True:
            try:
                async with asyncio.timeout(self.cfg.node_status_update_frequency):
                    await self._node_changed.wait()
            except TimeoutError:
                pass
            self._node_changed.clear()
            force = time.monotonic() - last_report > self.cfg.node_status_report_frequency
            try:
                await self.update_node_status(force=force)
                if force:
                    last_report = time.monotonic()
            except (ApiError, OSError) as e:
                log.warning("node status not updated: %s", e)

    async def _lease_loop(self) -> None:
        while True:
            try:
                await nodestatus.renew_lease(self.client, self.cfg.node_name, self.cfg.node_lease_duration_seconds,
                                             self.node_obj)
            except (ApiError, OSError) as e:
                log.warning("lease not renewed: %s", e)
            await asyncio.sleep(self.cfg.node_lease_duration_seconds / 4)

    # -- pod events ---------------------------------------------------------------------------------

    def _on_pod(self, *objs: Obj) -> None:
        pod = objs[-1]
        if static.is_mirror(pod):       # shows a static pod; the kubelet runs the manifest, not this
            self.mirrors[f"{pod['metadata']['namespace']}/{pod['metadata']['name']}"] = pod
            self._static_changed.set()
            self._trigger_soon((pod["metadata"].get("annotations") or {}).get(static.MIRROR, ""))
            return
        uid = pod["metadata"]["uid"]
        prev = self.known.get(uid)
        self.known[uid] = pod
        if prev is not None and not _differ_semantically(prev, pod) and (
                pod.get("status") == prev.get("status") or pod.get("status") == self._status_written.get(uid)):
            return          # the echo of this kubelet's own status write: nothing for the pod to do
        self._trigger(uid)

    def _on_pod_delete(self, pod: Obj) -> None:
        if isinstance(pod, DeletedFinalStateUnknown):
            pod = pod.obj
        if static.is_mirror(pod):
            self.mirrors.pop(f"{pod['metadata']['namespace']}/{pod['metadata']['name']}", None)
            self._static_changed.set()
            return
        uid = pod["metadata"]["uid"]
        self.known.pop(uid, None)
        self._trigger(uid)

    def _cached_source(self, resource: str, ns: str, name: str) -> Obj | None:
        """A configMap or secret as the informers last saw it (None if they do not hold it), so a
        pod's sync does not read each of its sources from the API again (upstream's watch-based
        configMap and secret managers)."""
        inf = self.configmaps if resource == "configmaps" else self.secrets if resource == "secrets" else None
        return inf.get(f"{ns}/{name}") if inf is not None else None

    def _on_source(self, kind: str):
        """A configMap or secret changed: the pods that use it resync their volumes and env."""
        def handler(*objs: Obj) -> None:
            o = objs[-1]
            o = o.obj if isinstance(o, DeletedFinalStateUnknown) else o
            ns, name = o["metadata"].get("namespace"), o["metadata"]["name"]
            for uid, pod in list(self.known.items()):
                if pod["metadata"].get("namespace") == ns and name in _sources(pod, kind):
                    self._trigger(uid)
        return handler

    async def _exec_sync(self, cid: str, cmd: list[str], timeout: float) -> tuple[int, bytes, bytes]:
        try:
            return await self.runtime.exec_sync(cid, cmd, timeout)
        except grpc.aio.AioRpcError as e:
            if e.code() == grpc.StatusCode.DEADLINE_EXCEEDED:
                raise asyncio.TimeoutError() from None
            raise

    def _trigger_soon(self, uid: str) -> None:
        if uid in self.known:
            self._trigger(uid)

    def _liveness_failed(self, uid: str, name: str, message: str) -> None:
        self.liveness_failed.setdefault(uid, set()).add(name)
        self._trigger_soon(uid)

    def _track_probes(self, pod: Obj, rt: PodRuntime) -> None:
        """Probe workers follow the pod's running containers."""
        uid = pod["metadata"]["uid"]
        sb = rt.sandboxes[0] if rt.sandboxes else None
        self.probes.update_pod(pod)
        names = [c["name"] for c in (pod.get("spec") or {}).get("containers") or []]
        for name in names:
            cur = rt.latest(name)
            if cur is not None and cur.state == "running" and sb is not None and cur.sandbox_id == sb.id:
                self.probes.container_started(pod, name, cur.id, cur.started_at, sb.ip)
            else:
                self.probes.container_stopped(uid, name)

    def _trigger(self, uid: str) -> None:
        ev = self.triggers.get(uid)
        if ev is None:
            ev = self.triggers[uid] = asyncio.Event()
            self.workers[uid] = asyncio.create_task(self._worker(uid), name=f"pod-{uid}")
        ev.set()

    async def _worker(self, uid: str) -> None:
        ev = self.triggers[uid]
        again: float | None = None
        failures = 0
        try:
            while True:
                try:
                    async with asyncio.timeout(again if again else self.cfg.sync_frequency):
                        await ev.wait()
                except TimeoutError:
                    pass
                ev.clear()
                pod = self.known.get(uid)
                try:
                    if pod is None:
                        await self._forget(uid)
                        return
                    again = await self.sync_pod(deep_copy(pod))
                    failures = 0
                except asyncio.CancelledError:
                    raise
                except Exception as e:          # retried with backoff; the pod's status tells the user
                    failures += 1
                    again = min(30.0, 0.5 * 2 ** failures)
                    log.warning("syncing pod %s failed (retrying in %.1fs): %s", uid, again, _rpc_message(e))
                if pod is not None and uid not in self.known and self.triggers.get(uid) is ev and not ev.is_set():
                    ev.set()
        finally:
            if self.triggers.get(uid) is ev and uid not in self.known:
                self.triggers.pop(uid, None)
                self.workers.pop(uid, None)

    async def _forget(self, uid: str) -> None:
        """The pod is gone from the API: nothing of it may keep running."""
        rt = await self.runtime.pod_runtime(uid)
        await self._kill_all(None, rt, 0)
        for sb in rt.sandboxes:
            try:
                await self.runtime.remove_sandbox(sb.id)
            except grpc.aio.AioRpcError as e:
                log.warning("removing sandbox %s of pod %s: %s", sb.id, uid, _rpc_message(e))
        self.backoff.forget_pod(uid)
        self.probes.remove_pod(uid)
        for d in (self.start_times, self.waiting, self.liveness_failed, self._mirror_written, self._status_written):
            d.pop(uid, None)
        self.admitted.discard(uid)
        self._eviction_done(uid)
        try:
            await self.volumes.teardown(uid)
        except VolumeError as e:
            log.warning("volumes of pod %s not torn down: %s", uid, e.message)

    # -- static pods ------------------------------------------------------------------------------

    async def _static_loop(self) -> None:
        """Read the manifests every --file-check-frequency (or when a mirror pod changed): new ones run, removed ones
        stop; each has its mirror pod in the API (re-created if deleted or stale)."""
        while True:
            found = static.read_manifests(self.cfg.pod_manifest_path, self.cfg.node_name)
            for uid in [u for u in self.static if u not in found]:
                gone = self.static.pop(uid)
                self.known.pop(uid, None)
                self._trigger(uid)
                await self._delete_mirror(gone, None)
            for uid, pod in found.items():
                if uid not in self.static:
                    self.static[uid] = pod
                    self.known[uid] = pod
                    self._trigger(uid)
                try:
                    await self._ensure_mirror(self.static[uid])
                except (ApiError, OSError) as e:
                    log.warning("mirror pod of %s not written: %s", pod["metadata"]["name"], e)
            self._static_changed.clear()
            try:
                async with asyncio.timeout(self.cfg.file_check_frequency):
                    await self._static_changed.wait()
            except TimeoutError:
                pass

    async def _ensure_mirror(self, pod: Obj) -> None:
        m = pod["metadata"]
        cur = self.mirrors.get(f"{m['namespace']}/{m['name']}")
        if cur is not None and ((cur["metadata"].get("annotations") or {}).get(static.MIRROR) != m["uid"]
                                or cur["metadata"].get("deletionTimestamp")):
            await self._delete_mirror(pod, cur)
            cur = None
        if cur is None:
            try:
                created = await self.client.create("v1", "pods", static.mirror_pod(pod, self.node_obj), m["namespace"])
                self.mirrors[f"{m['namespace']}/{m['name']}"] = created
                log.info("created the mirror pod %s/%s", m["namespace"], m["name"])
            except ApiError as e:
                if e.code != 409:
                    raise

    async def _delete_mirror(self, pod: Obj, cur: Obj | None) -> None:
        m = pod["metadata"]
        pre = {"uid": cur["metadata"]["uid"]} if cur is not None else None
        try:
            await self.client.delete("v1", "pods", m["namespace"], m["name"], grace_period_seconds=0,
                                     preconditions=pre)
        except ApiError as e:
            if not (is_not_found(e) or is_conflict(e)):
                raise
        self.mirrors.pop(f"{m['namespace']}/{m['name']}", None)

    # -- PLEG -------------------------------------------------------------------------------------

    async def _pleg_loop(self) -> None:
        """Relist the runtime every second; a pod whose containers or sandboxes changed is synced, a
        sandbox of a pod the API does not have is removed."""
        while True:
            await asyncio.sleep(self.cfg.pleg_relist_period)
            self.loop_entered = time.monotonic()
            try:
                sbs = await self.runtime.managed_sandboxes()
                cs = await self.runtime.managed_containers()
            except grpc.aio.AioRpcError as e:
                log.warning("PLEG relist failed: %s", _rpc_message(e))
                continue
            seen: dict[str, list] = {}
            for s in sbs:
                seen.setdefault(s.labels.get(POD_UID, ""), []).append(("s", s.id, s.state))
            for c in cs:
                seen.setdefault(c.labels.get(POD_UID, ""), []).append(("c", c.id, c.state))
            for uid, items in seen.items():
                fp = tuple(sorted(items))
                if self._pleg_seen.get(uid) != fp:
                    self._pleg_seen[uid] = fp
                    if uid in self.known or uid in self.triggers:
                        self._trigger(uid)
                if uid and uid not in self.known and uid not in self.triggers:
                    self._trigger(uid)        # an orphan: its worker forgets it
            for uid in [u for u in self._pleg_seen if u not in seen]:
                del self._pleg_seen[uid]
            self._pleg_relisted = True

    # -- sync -------------------------------------------------------------------------------------

    def _event(self, pod: Obj, etype: str, reason: str, message: str, field_path: str | None = None) -> None:
        self.recorder.event(pod, etype, reason, message, field_path=field_path)

    async def sync_pod(self, pod: Obj) -> float | None:
        """One pass over a pod; returns seconds after which to look again (backoff), or None."""
        uid = pod["metadata"]["uid"]
        if uid not in self.start_times and self._pleg_relisted and uid not in self._pleg_seen:
            # first sync of a pod the last relist did not see: nothing of it can be in the runtime
            # (this kubelet has made nothing for it yet, and an earlier one's would have been relisted)
            rt = PodRuntime()
        else:
            rt = await self.runtime.pod_runtime(uid)
        self.start_times.setdefault(uid, (pod.get("status") or {}).get("startTime") or now_rfc3339())
        if pod["metadata"].get("deletionTimestamp"):
            await self._terminate(pod, rt)
            self._eviction_done(uid)
            return None
        terminal = (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed")
        if uid in self.evicting and not terminal:
            grace, message, _ = self.evicting[uid]
            await self._kill_all(pod, rt, grace)
            await self._write_status(pod, await self.runtime.pod_runtime(uid), final=True, evicted=message)
            await self._teardown_volumes(pod)
            self._eviction_done(uid)
            return None
        if terminal:
            await self._kill_all(pod, rt, 0)
            await self._teardown_volumes(pod)     # a finished pod's volumes (emptyDirs) free their space
            self._eviction_done(uid)
            return None
        if uid not in self.admitted:
            if not rt.sandboxes and not rt.containers:      # new here (running ones are re-adopted)
                why = self.eviction.admit(pod)
                refused = ("Evicted", why) if why else self._predicate_admit(pod)
                if refused is not None:
                    await self._reject(pod, *refused)
                    return None
            self.admitted.add(uid)
        waiting = self.waiting.setdefault(uid, Waiting())
        waiting.reasons.clear()
        try:
            await self.volumes.setup(pod)       # also brings payloads (configMap, secret, token...) up to date
        except VolumeError as e:
            self._event(pod, "Warning", e.reason, e.message)
            await self._write_status(pod, rt)
            return 5.0
        acts = compute(pod, rt, self.backoff, liveness_failed=self.liveness_failed.pop(uid, set()))
        again: float | None = None
        spec = pod.get("spec") or {}
        sid = acts.sandbox_id
        attempt = rt.sandboxes[0].attempt if rt.sandboxes else 0
        if acts.kill_pod:
            if rt.sandboxes:
                self._event(pod, "Normal", "SandboxChanged", "Pod sandbox changed, it will be killed and re-created.")
            await self._kill_all(pod, rt, int(spec.get("terminationGracePeriodSeconds", 30)))
        if acts.create_sandbox:
            attempt = acts.attempt
            sb_cfg = self._sandbox_config(pod, attempt)
            try:
                sid = await self.runtime.run_sandbox(sb_cfg)
            except grpc.aio.AioRpcError as e:
                msg = f"Failed to create pod sandbox: {_rpc_message(e)}"
                self._event(pod, "Warning", "FailedCreatePodSandBox", msg)
                await self._write_status(pod, await self.runtime.pod_runtime(uid))
                raise RuntimeError(msg) from None
            if acts.kill_pod or rt.sandboxes or rt.containers:
                rt = await self.runtime.pod_runtime(uid)
            else:       # the pod's first sandbox: the runtime holds nothing else of it to list again
                rt = PodRuntime([await self.runtime.sandbox_state(sid, attempt)], [])
        if acts.done:
            await self._write_status(pod, rt)
            return None
        sb_cfg = self._sandbox_config(pod, attempt)
        for cid, why in acts.kill.items():
            name = next((c.name for c in rt.containers if c.id == cid), "")
            self._event(pod, "Normal", "Killing", why, self._field(pod, name))
            await self._stop(cid, self._grace(pod))
        for name, msg in acts.backoff.items():
            waiting.reasons[name] = ("CrashLoopBackOff", msg)
            self._event(pod, "Warning", "BackOff", f"Back-off restarting failed container {name} in pod "
                                                   f"{pod['metadata']['name']}_{pod['metadata']['namespace']}({uid})",
                        self._field(pod, name))
            key = f"{uid}/{name}"
            st = rt.latest(name)
            left = self.backoff.in_backoff(key, st.finished_at if st else 0)
            again = min(again or left + 0.1, left + 0.1)
        to_start = [acts.next_init] if acts.next_init is not None else list(acts.start)
        created: list[str] = []
        for c in to_start:
            delay = await self._start_container(pod, c, sid, sb_cfg, rt, waiting, created)
            if delay:
                again = min(again or delay, delay)
            if acts.next_init is not None:
                break
        if acts.kill or (acts.kill_pod and not acts.create_sandbox):
            rt = await self.runtime.pod_runtime(uid)
        else:       # what changed in the runtime is only the containers this sync created
            for cid in created:
                st = await self.runtime.container_state(cid, sid)
                if st is not None:
                    rt.containers.append(st)
        await self._write_status(pod, rt)
        return again

    def _sandbox_config(self, pod: Obj, attempt: int) -> Obj:
        return sandbox_config(pod, attempt=attempt, pod_logs_dir=self.cfg.pod_logs_dir, cgroup_root=self.cfg.cgroup_root,
                              cluster_dns=self.cfg.cluster_dns, cluster_domain=self.cfg.cluster_domain,
                              host_dns=self.host_dns)

    @staticmethod
    def _field(pod: Obj, name: str) -> str | None:
        spec = pod.get("spec") or {}
        if any(c["name"] == name for c in spec.get("initContainers") or []):
            return f"spec.initContainers{{{name}}}"
        return f"spec.containers{{{name}}}" if name else None

    @staticmethod
    def _grace(pod: Obj) -> int:
        g = pod["metadata"].get("deletionGracePeriodSeconds")
        if g is None:
            g = (pod.get("spec") or {}).get("terminationGracePeriodSeconds", 30)
        return max(0, int(g))

    async def _ensure_image(self, pod: Obj, c: Obj, waiting: Waiting) -> tuple[str | None, float | None]:
        image = c.get("image", "")
        policy = image_pull_policy(c)
        fp = self._field(pod, c["name"])
        have = await self.runtime.image_present(image)
        if have and policy != "Always":
            self._event(pod, "Normal", "Pulled", f'Container image "{image}" already present on machine', fp)
            return image, None
        if policy == "Never":
            msg = f'Container image "{image}" is not present with pull policy of Never'
            waiting.reasons[c["name"]] = ("ErrImageNeverPull", msg)
            self._event(pod, "Warning", "ErrImageNeverPull", msg, fp)
            return None, None
        delay, failed_at = self.image_backoff.get(image, (0.0, 0.0))
        if delay and time.time() < failed_at + delay:
            waiting.reasons[c["name"]] = ("ImagePullBackOff", f'Back-off pulling image "{image}"')
            self._event(pod, "Normal", "BackOff", f'Back-off pulling image "{image}"', fp)
            return None, failed_at + delay - time.time() + 0.1
        self._event(pod, "Normal", "Pulling", f'Pulling image "{image}"', fp)
        t0 = time.monotonic()
        try:
            await self.runtime.pull(image)
        except grpc.aio.AioRpcError as e:
            if have:          # Always, but the registry is unreachable: the local copy will do
                return image, None
            nd = min(IMAGE_BACKOFF_MAX, delay * 2) if delay else IMAGE_BACKOFF_INITIAL
            self.image_backoff[image] = (nd, time.time())
            msg = f'Failed to pull image "{image}": {_rpc_message(e)}'
            waiting.reasons[c["name"]] = ("ErrImagePull", msg)
            self._event(pod, "Warning", "Failed", msg, fp)
            self._event(pod, "Warning", "Failed", "Error: ErrImagePull", fp)
            return None, nd + 0.1
        self.image_backoff.pop(image, None)
        self._event(pod, "Normal", "Pulled", f'Successfully pulled image "{image}" in '
                                             f'{time.monotonic() - t0:.3f}s', fp)
        return image, None

    async def _start_container(self, pod: Obj, c: Obj, sid: str, sb_cfg: Obj, rt: PodRuntime,
                               waiting: Waiting, created: list[str]) -> float | None:
        """Pull (per policy), create and start one container, running its postStart hook; the id
        of a container it created is appended to `created`. Returns a retry delay, or None."""
        uid = pod["metadata"]["uid"]
        name = c["name"]
        fp = self._field(pod, name)
        image, delay = await self._ensure_image(pod, c, waiting)
        if image is None:
            return delay
        prev = rt.latest(name)
        attempt = prev.attempt + 1 if prev is not None else 0
        if prev is not None and prev.state == "exited":
            self.backoff.next(f"{uid}/{name}", prev.finished_at, prev.finished_at - prev.started_at)
        sb = rt.sandboxes[0] if rt.sandboxes else None
        ns = pod["metadata"]["namespace"]
        try:
            env = await container_env(self.client, pod, c, services=[
                s for s in self.services.list() if s["metadata"].get("namespace") in (ns, "default")],
                node_name=self.cfg.node_name, host_ip=self.cfg.node_ip, pod_ip=sb.ip if sb else "")
            for reason, msg in env.warnings:
                self._event(pod, "Warning", reason, msg, fp)
            mounts = self.volumes.mounts(pod, c, env=list(env))
            pod_ips = [self.cfg.node_ip] if (pod.get("spec") or {}).get("hostNetwork") else \
                [sb.ip] if sb is not None and sb.ip else []
            if pod_ips and not mounts_etc_hosts(c):
                hosts = self.volumes.pod_dir(uid) / "etc-hosts"
                write_hosts_file(hosts, pod, pod_ips, self.cfg.cluster_domain)
                mounts.append(Mount(container_path=ETC_HOSTS, host_path=str(hosts)))
        except (EnvError, VolumeError) as e:
            msg = e.message if isinstance(e, VolumeError) else str(e)
            waiting.reasons[name] = ("CreateContainerConfigError", msg)
            self._event(pod, "Warning", "Failed", f"Error: {msg}", fp)
            return 5.0
        cfg = container_config(pod, c, attempt=attempt, image_ref=image, env=env, mounts=mounts)
        try:
            cid = await self.runtime.create_container(sid, cfg, sb_cfg)
        except grpc.aio.AioRpcError as e:
            msg = _rpc_message(e)
            waiting.reasons[name] = ("CreateContainerError", msg)
            self._event(pod, "Warning", "Failed", f"Error: {msg}", fp)
            return 5.0
        created.append(cid)
        self._event(pod, "Normal", "Created", f"Created container {name}", fp)
        try:
            await self.runtime.start_container(cid)
        except grpc.aio.AioRpcError as e:
            msg = _rpc_message(e)
            waiting.reasons[name] = ("RunContainerError", msg)
            self._event(pod, "Warning", "Failed", f"Error: {msg}", fp)
            return 5.0
        self._event(pod, "Normal", "Started", f"Started container {name}", fp)
        hook = (c.get("lifecycle") or {}).get("postStart")
        if hook:
            why = await run_hook(hook, c, cid, sb.ip if sb else "", self._exec_sync, 30.0)
            if why:
                self._event(pod, "Warning", "FailedPostStartHook", why, fp)
                self._event(pod, "Normal", "Killing", f"FailedPostStartHook", fp)
                await self._stop(cid, self._grace(pod))
        return None

    async def _stop(self, cid: str, grace: int) -> None:
        try:
            await self.runtime.stop_container(cid, grace)
        except grpc.aio.AioRpcError as e:
            if e.code() != grpc.StatusCode.NOT_FOUND:
                raise

    async def _stop_with_hook(self, pod: Obj | None, c: Any, grace: int, ip: str) -> None:
        """preStop within the grace period, then StopContainer with what is left of it (at least 2 s,
        as upstream)."""
        spec = next((x for x in (pod.get("spec") or {}).get("containers") or [] if x["name"] == c.name), None) \
            if pod is not None else None
        hook = ((spec or {}).get("lifecycle") or {}).get("preStop")
        left = grace
        if hook and grace > 0:
            t0 = time.monotonic()
            why = await run_hook(hook, spec, c.id, ip, self._exec_sync, float(grace))
            if why:
                self._event(pod, "Warning", "FailedPreStopHook", why, self._field(pod, c.name))
            left = max(2, int(grace - (time.monotonic() - t0)))
        await self._stop(c.id, left)

    async def _kill_all(self, pod: Obj | None, rt: PodRuntime, grace: int) -> None:
        running = rt.running()
        for c in running:
            if pod is not None:
                self._event(pod, "Normal", "Killing", f"Stopping container {c.name}", self._field(pod, c.name))
        ip = rt.sandboxes[0].ip if rt.sandboxes else ""
        await asyncio.gather(*(self._stop_with_hook(pod, c, grace, ip) for c in running))
        for sb in rt.sandboxes:
            if sb.ready:
                try:
                    await self.runtime.stop_sandbox(sb.id)
                except grpc.aio.AioRpcError as e:
                    if e.code() != grpc.StatusCode.NOT_FOUND:
                        raise

    async def _terminate(self, pod: Obj, rt: PodRuntime) -> None:
        """Graceful deletion: stop everything within the grace period, then delete for good."""
        m = pod["metadata"]
        await self._kill_all(pod, rt, self._grace(pod))
        rt = await self.runtime.pod_runtime(m["uid"])
        try:
            await self._write_status(pod, rt, final=True)
        except ApiError as e:
            if not is_not_found(e):
                log.warning("final status of %s/%s not written: %s", m["namespace"], m["name"], e)
        try:
            await self.client.delete("v1", "pods", m["namespace"], m["name"], grace_period_seconds=0,
                                     preconditions={"uid": m["uid"]})
        except ApiError as e:
            if not (is_not_found(e) or is_conflict(e)):
                raise
        for sb in rt.sandboxes:
            try:
                await self.runtime.remove_sandbox(sb.id)
            except grpc.aio.AioRpcError as e:
                log.warning("removing sandbox %s: %s", sb.id, _rpc_message(e))
        await self._teardown_volumes(pod)

    async def _teardown_volumes(self, pod: Obj) -> None:
        m = pod["metadata"]
        try:
            await self.volumes.teardown(m["uid"])
        except VolumeError as e:
            log.warning("volumes of %s/%s not torn down: %s", m["namespace"], m["name"], e.message)

    async def _write_status(self, pod: Obj, rt: PodRuntime, final: bool = False, evicted: str | None = None) -> None:
        """Patch the pod's status if it changed; `evicted`: the pod was evicted with this message."""
        uid = pod["metadata"]["uid"]
        self._track_probes(pod, rt)
        names = [c["name"] for c in (pod.get("spec") or {}).get("containers") or []]
        ready = {n: self.probes.ready(uid, n) for n in names}
        started = {n: self.probes.started(uid, n) for n in names}
        now = now_rfc3339()
        st = pod_status(pod, rt, waiting=self.waiting.get(uid, Waiting()), ready=ready, started=started,
                        runtime=self.runtime_name, host_ips=[self.cfg.node_ip], start_time=self.start_times[uid],
                        now=now, final=final)
        if evicted is not None:
            st.update(phase="Failed", reason="Evicted", message=evicted)
            st["conditions"].append({"type": "DisruptionTarget", "status": "True", "reason": "TerminationByKubelet",
                                     "message": evicted, "lastTransitionTime": now})
        m = pod["metadata"]
        target_uid = uid
        if uid in self.static:              # a static pod's status goes to its mirror pod
            mirror = self.mirrors.get(f"{m['namespace']}/{m['name']}")
            if mirror is None:
                pod["status"] = st
                return
            target_uid = mirror["metadata"]["uid"]
            if st == (pod.get("status") or {}) and self._mirror_written.get(uid) == target_uid:
                return
            self._mirror_written[uid] = target_uid      # a re-created mirror gets the status again
        elif st == (pod.get("status") or {}):
            return
        try:
            new = await self.client.patch("v1", "pods", m["namespace"], m["name"],
                                          {"metadata": {"uid": target_uid}, "status": st}, "merge",
                                          subresource="status")
            pod["status"] = new.get("status") or st
            if target_uid == uid:
                self._status_written[uid] = pod["status"]
        except ApiError as e:
            if not (is_not_found(e) or is_conflict(e)):
                raise

    # -- garbage collection ----------------------------------------------------------------------------

    def _pod_state(self, uid: str) -> str:
        """For the container GC: "gone" (the kubelet has no such pod), "terminated" (it finished) or "active"."""
        pod = self.known.get(uid) or self.static.get(uid)
        if pod is None:
            return "gone"
        return "terminated" if (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed") else "active"

    def _node_ref(self) -> Obj:
        return {"apiVersion": "v1", "kind": "Node", "metadata": {"name": self.cfg.node_name, "uid": self.cfg.node_name}}

    def _gc_failed(self, reason: str) -> Callable[[str], None]:
        def report(message: str) -> None:
            log.warning("%s: %s", reason, message)
            self.recorder.event(self._node_ref(), "Warning", reason, message)
        return report

    async def _reclaim_node_level(self, signal: str) -> None:
        """Disk pressure: dead containers of finished and gone pods, then unused images, before any
        pod is evicted (upstream's reclaimNodeLevelResources for nodefs and imagefs signals)."""
        for step in (lambda: self.container_gc.collect(evict_terminated=True), self.image_gc.delete_unused):
            try:
                res = await step()
            except grpc.aio.AioRpcError as e:
                log.warning("reclaiming %s: %s", signal, _rpc_message(e))
                continue
            for msg in res.errors:
                log.warning("reclaiming %s: %s", signal, msg)

    # -- eviction and admission -----------------------------------------------------------------------

    def _allocatable_memory(self) -> int | None:
        """What the pods may use: capacity less the reservations (the kubepods cgroup's share)."""
        return self.pods_memory

    def _predicate_admit(self, pod: Obj) -> tuple[str, str] | None:
        if self.allocatable is None:            # not registered yet: nothing to check against
            return None
        node = {"metadata": (self.node_obj or {}).get("metadata") or {"name": self.cfg.node_name},
                "spec": (self.node_obj or {}).get("spec") or {}, "status": {"allocatable": self.allocatable}}
        return admission.admit(pod, node, self._admitted_pods(), static=pod["metadata"]["uid"] in self.static)

    def _admitted_pods(self) -> list[Obj]:
        pods = {**self.known, **self.static}
        return [pods[uid] for uid in self.admitted if uid in pods
                and (pods[uid].get("status") or {}).get("phase") not in ("Succeeded", "Failed")]

    def _active_pods(self) -> list[Obj]:
        return [p for uid, p in list(self.known.items())
                if uid in self.admitted and uid not in self.evicting and not p["metadata"].get("deletionTimestamp")
                and (p.get("status") or {}).get("phase") not in ("Succeeded", "Failed")] + \
            [p for p in self.static.values()]

    async def evict_pod(self, pod: Obj, grace: int, message: str, annotations: dict[str, str]) -> bool:
        """Kill the pod's containers within `grace` and mark it Failed/Evicted (through its worker);
        returns once that is done (or after the cleanup timeout)."""
        uid = pod["metadata"]["uid"]
        if uid not in self.known:
            return False
        m = pod["metadata"]
        log.info("evicting pod %s/%s (grace %ds): %s", m["namespace"], m["name"], grace, message)
        self.recorder.event(pod, "Warning", "Evicted", message, annotations=annotations)
        done = asyncio.Event()
        self.evicting[uid] = (grace, message, done)
        self._trigger(uid)
        try:
            async with asyncio.timeout(grace + 30):
                await done.wait()
        except TimeoutError:
            log.warning("pod %s/%s was not killed within %ds of its eviction", m["namespace"], m["name"], grace + 30)
        return True

    def _eviction_done(self, uid: str) -> None:
        ev = self.evicting.pop(uid, None)
        if ev is not None:
            ev[2].set()

    async def _reject(self, pod: Obj, reason: str, message: str) -> None:
        """Admission refused the pod: it fails without running (upstream's rejectPod)."""
        self._event(pod, "Warning", reason, message)
        m = pod["metadata"]
        try:
            await self.client.patch("v1", "pods", m["namespace"], m["name"],
                                    {"metadata": {"uid": m["uid"]},
                                     "status": {"phase": "Failed", "reason": reason,
                                                "message": f"Pod was rejected: {message}"}},
                                    "merge", subresource="status")
        except ApiError as e:
            if not (is_not_found(e) or is_conflict(e)):
                raise

    # -- server -----------------------------------------------------------------------------------

    def _log_path(self, pod: Obj, container: str, previous: bool) -> Path | None:
        """The CRI log file of a container's current (or previous) run."""
        m = pod["metadata"]
        st = next((c for c in ((pod.get("status") or {}).get("containerStatuses") or []) +
                   ((pod.get("status") or {}).get("initContainerStatuses") or []) if c.get("name") == container), None)
        attempt = int((st or {}).get("restartCount") or 0) - (1 if previous else 0)
        if attempt < 0:
            return None
        p = self.cfg.pod_logs_dir / f"{m['namespace']}_{m['name']}_{m['uid']}" / container / f"{attempt}.log"
        return p if p.exists() else None

    def _server(self) -> KubeletServer:
        cert, key = self.cfg.tls_cert_file, self.cfg.tls_private_key_file
        if cert is None or key is None:
            self_signed_context(str(self.cfg.root_dir / "pki"), "kubelet")      # writes the files once
            cert, key = self.cfg.root_dir / "pki" / "kubelet.crt", self.cfg.root_dir / "pki" / "kubelet.key"
        return KubeletServer(address=self.cfg.address, port=self.cfg.port, tls_cert=cert, tls_key=key,
                             client_ca=self.cfg.client_ca_file, runtime=self.runtime.rt,
                             pods=lambda: list(self.known.values()), log_path=self._log_path,
                             node_name=self.cfg.node_name, root_dir=self.cfg.root_dir, healthz=self.healthz,
                             stats_provider=self.stats)

    def _syncloop_health(self) -> str | None:
        """Upstream's syncloop check: the loop (here the PLEG relist) last ran within twice the
        sync frequency, at least 5 minutes."""
        limit = max(2 * self.cfg.sync_frequency, 300.0)
        ago = time.monotonic() - self.loop_entered
        if self.loop_entered and ago > limit:
            msg = f"sync Loop took longer than expected: last entered {ago:.0f}s ago, limit {limit:.0f}s"
            log.warning("healthz: %s", msg)
            return msg
        return None

    async def _serve_healthz(self) -> web.AppRunner | None:
        """The plain-HTTP /healthz on --healthz-bind-address:--healthz-port (upstream's 10248)."""
        if not self.cfg.healthz_port:
            return None
        app = web.Application()
        app.router.add_get("/healthz", self.healthz)
        try:
            return await serve(app, self.cfg.healthz_bind_address, self.cfg.healthz_port)
        except OSError as e:
            raise OSError(f"cannot serve healthz on {self.cfg.healthz_bind_address}:{self.cfg.healthz_port}: "
                          f"{e.strerror or e}") from None

    # -- running ----------------------------------------------------------------------------------

    async def run(self) -> None:
        try:
            self.runtime_name = await self.runtime.runtime_name()
        except grpc.aio.AioRpcError as e:
            log.warning("the container runtime does not answer yet: %s", _rpc_message(e))
        self.cfg.pod_logs_dir.mkdir(parents=True, exist_ok=True)
        self.cfg.root_dir.mkdir(parents=True, exist_ok=True)
        server = self._server()
        await server.start()
        try:
            healthz = await self._serve_healthz()
        except BaseException:
            await server.stop()
            raise
        await self.register()
        self.pods.add_event_handler(self._on_pod, self._on_pod, self._on_pod_delete)
        for inf, kind in ((self.configmaps, "configMap"), (self.secrets, "secret")):
            h = self._on_source(kind)
            inf.add_event_handler(None, h, h)
        self.factory.start()
        self._tasks = [asyncio.create_task(self._node_loop(), name="node-status"),
                       asyncio.create_task(self._lease_loop(), name="node-lease")]
        await self.pods.wait_for_sync()
        self._tasks.append(asyncio.create_task(self._pleg_loop(), name="pleg"))
        self._tasks.append(asyncio.create_task(self.eviction.run(), name="eviction-manager"))
        self._tasks.append(asyncio.create_task(gc.run_periodically(
            "container garbage collection", self.cfg.container_gc_period, self.container_gc.collect,
            self._gc_failed("ContainerGCFailed")), name="container-gc"))
        self._tasks.append(asyncio.create_task(gc.run_periodically(
            "image garbage collection", self.cfg.image_gc_period, self.image_gc.collect,
            self._gc_failed("ImageGCFailed")), name="image-gc"))
        if self.cfg.pod_manifest_path is not None:
            self._tasks.append(asyncio.create_task(self._static_loop(), name="static-pods"))
        log.info("kubelet for node %s running (runtime %s)", self.cfg.node_name, self.runtime_name)
        try:
            await asyncio.gather(*self._tasks)
        finally:
            for t in self._tasks + list(self.workers.values()):
                t.cancel()
            await asyncio.gather(*self._tasks, *self.workers.values(), return_exceptions=True)
            await server.stop()
            if healthz is not None:
                await healthz.cleanup()
            await self.probes.close()
            await self.factory.shutdown()
            await self.recorder.shutdown()
            await self.runtime.close()

