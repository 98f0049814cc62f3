"""Hollow nodes (like kwok): one process that registers N fake nodes, renews their Leases, and
plays their kubelets for the pods bound to them, without containers. For scheduler and controller
tests and benchmarks at a scale no host could run.

A pod bound to a hollow node becomes Running and Ready after --pod-ready-delay (podIP from the
node's pod CIDR or a fake range, conditions and containerStatuses as a kubelet writes them). A pod
being deleted is removed at once (the kubelet's final delete with grace period 0). Annotations
make a pod finish instead: `hollow.kubelab.dev/exit-after` (a Go duration) and
`hollow.kubelab.dev/exit-code` (0: Succeeded, else Failed).
"""
from __future__ import annotations

import asyncio
import ipaddress
import logging
import random
from dataclasses import dataclass
from typing import Any

from kubelab.api.duration import parse_duration
from kubelab.api.timefmt import now_rfc3339
from kubelab.client.informer import SharedInformerFactory
from kubelab.client.rest import ApiError, Client, is_conflict, is_not_found
from kubelab.kubelet.node import LEASE_NS, conditions, renew_lease

log = logging.getLogger(__name__)

Obj = dict[str, Any]

LABEL = "kubelab.dev/hollow-node"
EXIT_AFTER = "hollow.kubelab.dev/exit-after"
EXIT_CODE = "hollow.kubelab.dev/exit-code"


def _now() -> str:
    return now_rfc3339()


@dataclass
class HollowConfig:
    count: int
    prefix: str = "hollow"
    cpu: str = "8"
    memory: str = "32Gi"
    pods: int = 110
    labels: dict[str, str] | None = None
    taints: list[Obj] | None = None
    pod_ready_delay: float = 1.0
    lease_duration: int = 40
    renew_interval: float = 10.0
    concurrency: int = 32


def node_object(cfg: HollowConfig, i: int) -> Obj:
    name = f"{cfg.prefix}-{i:05d}"
    ip = str(ipaddress.ip_address("100.64.0.0") + i + 1)
    labels = {"kubernetes.io/hostname": name, "kubernetes.io/os": "linux", "kubernetes.io/arch": "amd64",
              LABEL: "true", **(cfg.labels or {})}
    res = {"cpu": cfg.cpu, "memory": cfg.memory, "pods": str(cfg.pods), "ephemeral-storage": "100Gi"}
    return {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name, "labels": labels},
            "spec": {"taints": list(cfg.taints or [])},
            "status": {"capacity": res, "allocatable": res,
                       "addresses": [{"type": "InternalIP", "address": ip}, {"type": "Hostname", "address": name}],
                       "nodeInfo": {"kubeletVersion": "v1.31.0-kubelab-hollow", "containerRuntimeVersion": "hollow://1",
                                    "operatingSystem": "linux", "architecture": "amd64", "osImage": "hollow",
                                    "kernelVersion": "", "kubeProxyVersion": "", "machineID": "", "systemUUID": "",
                                    "bootID": ""},
                       "conditions": conditions(True, "", None, _now())}}


class HollowNodes:
    def __init__(self, client: Client, cfg: HollowConfig) -> None:
        self.client = client
        self.cfg = cfg
        self.names = [f"{cfg.prefix}-{i:05d}" for i in range(cfg.count)]
        self._index = {n: i for i, n in enumerate(self.names)}     # name -> node number
        self._ips: dict[str, int] = {}
        self._handled: set[tuple[str, str]] = set()    # (run|del, pod uid) under way
        self._tasks: set[asyncio.Task] = set()
        self.ready_pods = 0
        self.deleted_pods = 0

    # -- nodes and leases ---------------------------------------------------------------------------

    async def register(self) -> None:
        sem = asyncio.Semaphore(self.cfg.concurrency)

        async def one(i: int) -> None:
            async with sem:
                body = node_object(self.cfg, i)
                status = body.pop("status")
                try:
                    await self.client.create("v1", "nodes", body)
                except ApiError as e:
                    if e.code != 409:
                        raise
                await self.client.patch("v1", "nodes", None, body["metadata"]["name"], {"status": status},
                                        subresource="status")
        await asyncio.gather(*(one(i) for i in range(self.cfg.count)))
        log.info("registered hollow nodes count=%d prefix=%s", self.cfg.count, self.cfg.prefix)

    async def _renew(self, name: str) -> None:
        await renew_lease(self.client, name, self.cfg.lease_duration)

    async def renew_leases(self) -> None:
        """Renew every node's Lease each renew_interval, spread evenly over it."""
        try:
            await self.client.create("v1", "namespaces", {"apiVersion": "v1", "kind": "Namespace",
                                                          "metadata": {"name": LEASE_NS}})
        except ApiError as e:
            if e.code != 409:
                raise
        while True:
            gap = self.cfg.renew_interval / max(1, len(self.names))
            for name in self.names:
                try:
                    await self._renew(name)
                except (ApiError, OSError) as e:
                    log.warning("lease of %s not renewed: %s", name, e)
                await asyncio.sleep(gap)

    # -- pods -------------------------------------------------------------------------------------

    def _pod_ip(self, node: str) -> str:
        n = self._ips.get(node, 0) + 1
        self._ips[node] = n
        idx = self._index.get(node, 0)
        return str(ipaddress.ip_address("100.96.0.0") + idx * 256 + (n % 250) + 2)

    def _on_pod(self, *args: Obj) -> None:
        pod = args[-1]
        node = (pod.get("spec") or {}).get("nodeName")
        if node not in self._index:
            return
        uid = pod["metadata"].get("uid", "")
        if pod["metadata"].get("deletionTimestamp"):
            if ("del", uid) not in self._handled:
                self._handled.add(("del", uid))
                self._spawn(self._delete(pod))
            return
        phase = (pod.get("status") or {}).get("phase")
        if phase in ("Running", "Succeeded", "Failed") or ("run", uid) in self._handled:
            return
        self._handled.add(("run", uid))
        self._spawn(self._start(pod, node))

    def _forget(self, pod: Any) -> None:
        pod = getattr(pod, "obj", pod)
        uid = pod["metadata"].get("uid", "")
        self._handled.discard(("run", uid))
        self._handled.discard(("del", uid))

    def _spawn(self, coro: Any) -> None:
        t = asyncio.create_task(coro)
        self._tasks.add(t)
        t.add_done_callback(self._tasks.discard)

    async def _patch_status(self, pod: Obj, status: Obj) -> bool:
        m = pod["metadata"]
        try:
            await self.client.patch("v1", "pods", m["namespace"], m["name"], {"status": status}, "strategic",
                                    subresource="status")
            return True
        except ApiError as e:
            if not (is_not_found(e) or is_conflict(e)):
                log.warning("status of %s/%s not written: %s", m["namespace"], m["name"], e)
            return False

    async def _start(self, pod: Obj, node: str) -> None:
        await asyncio.sleep(self.cfg.pod_ready_delay * (0.9 + 0.2 * random.random()))
        now = _now()
        spec = pod.get("spec") or {}
        ip = self._pod_ip(node)
        host_ip = str(ipaddress.ip_address("100.64.0.0") + self._index[node] + 1)
        containers = [{"name": c["name"], "image": c.get("image", ""), "imageID": f"hollow://{c.get('image', '')}",
                       "containerID": f"hollow://{pod['metadata'].get('uid', '')}-{c['name']}", "ready": True,
                       "started": True, "restartCount": 0, "state": {"running": {"startedAt": now}}}
                      for c in spec.get("containers") or []]
        cond = [{"type": t, "status": "True", "lastProbeTime": None, "lastTransitionTime": now}
                for t in ("PodReadyToStartContainers", "Initialized", "ContainersReady", "Ready", "PodScheduled")]
        ok = await self._patch_status(pod, {"phase": "Running", "conditions": cond, "podIP": ip, "podIPs": [{"ip": ip}],
                                            "hostIP": host_ip, "hostIPs": [{"ip": host_ip}], "startTime": now,
                                            "containerStatuses": containers})
        if ok:
            self.ready_pods += 1
        ann = pod["metadata"].get("annotations") or {}
        if EXIT_AFTER in ann:
            try:
                await asyncio.sleep(parse_duration(ann[EXIT_AFTER]))
            except ValueError:
                return
            code = int(ann.get(EXIT_CODE, "0") or 0)
            end = _now()
            done = [{**c, "ready": False, "started": False,
                     "state": {"terminated": {"exitCode": code, "reason": "Completed" if code == 0 else "Error",
                                              "startedAt": now, "finishedAt": end}}} for c in containers]
            await self._patch_status(pod, {"phase": "Succeeded" if code == 0 else "Failed",
                                           "conditions": [{"type": "Ready", "status": "False", "reason": "PodCompleted",
                                                           "lastProbeTime": None, "lastTransitionTime": end},
                                                          {"type": "ContainersReady", "status": "False",
                                                           "reason": "PodCompleted", "lastProbeTime": None,
                                                           "lastTransitionTime": end}],
                                           "containerStatuses": done})

    async def _delete(self, pod: Obj) -> None:
        m = pod["metadata"]
        try:
            await self.client.delete("v1", "pods", m["namespace"], m["name"], grace_period_seconds=0,
                                     preconditions={"uid": m.get("uid", "")})
            self.deleted_pods += 1
        except ApiError as e:
            if not (is_not_found(e) or is_conflict(e)):
                log.warning("pod %s/%s not deleted: %s", m["namespace"], m["name"], e)

    # -- running ----------------------------------------------------------------------------------

    async def run(self, factory: SharedInformerFactory) -> None:
        """Register, then renew leases and run pods until cancelled."""
        await self.register()
        pods = factory.informer("v1", "pods", field_selector="spec.nodeName!=")
        pods.add_event_handler(self._on_pod, self._on_pod, self._forget)
        factory.start()
        try:
            await self.renew_leases()
        finally:
            for t in list(self._tasks):
                t.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)

    async def remove(self) -> None:
        """Delete the nodes and their Leases."""
        sem = asyncio.Semaphore(self.cfg.concurrency)

        async def one(name: str) -> None:
            async with sem:
                for api_version, resource, ns in (("v1", "nodes", None), ("coordination.k8s.io/v1", "leases", LEASE_NS)):
                    try:
                        await self.client.delete(api_version, resource, ns, name)
                    except ApiError as e:
                        if not is_not_found(e):
                            log.warning("%s %s not deleted: %s", resource, name, e)
        await asyncio.gather(*(one(n) for n in self.names))
