"""The kubelet's Node: registration, status and the Lease (upstream's kubelet_node_status.go and
nodelease): capacity from the machine (CPUs, memory, the root dir's disk, --max-pods), allocatable
less --kube-reserved/--system-reserved, upstream's labels plus --node-labels, --register-with-taints,
InternalIP and Hostname addresses, nodeInfo, the daemon endpoint, the images the runtime holds, and
the conditions (Ready from the runtime's RuntimeReady/NetworkReady; MemoryPressure, DiskPressure,
PIDPressure). Status is patched when it changes and at least every report period; the Lease in
kube-node-lease is renewed every 10 s. Hollow nodes share the condition and Lease helpers.
"""
from __future__ import annotations

import logging
import os
import platform
import shutil
from decimal import Decimal
from pathlib import Path
from typing import Any

import psutil

from kubelab.api.quantity import BINARY_SI, format_quantity
from kubelab.api.timefmt import micro_time, now_rfc3339
from kubelab.client.rest import ApiError, Client, is_not_found

log = logging.getLogger(__name__)

Obj = dict[str, Any]

LEASE_NS = "kube-node-lease"
KUBELET_VERSION = "v1.31.0-kubelab"
# condition type -> (reason, message) when False, (reason, message) when True
PRESSURE = {"MemoryPressure": (("KubeletHasSufficientMemory", "kubelet has sufficient memory available"),
                               ("KubeletHasInsufficientMemory", "kubelet has insufficient memory available")),
            "DiskPressure": (("KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
                             ("KubeletHasDiskPressure", "kubelet has disk pressure")),
            "PIDPressure": (("KubeletHasSufficientPID", "kubelet has sufficient PID available"),
                            ("KubeletHasInsufficientPID", "kubelet has insufficient PID available"))}


def conditions(ready: bool, not_ready_message: str, old: list[Obj] | None, now: str,
               pressure: set[str] = frozenset()) -> list[Obj]:
    """The four node conditions (`pressure`: the eviction manager's MemoryPressure, DiskPressure,
    PIDPressure that are True); transition times kept while a status does not change."""
    prev = {c.get("type"): c for c in old or []}
    out = []

    def cond(ctype: str, status: str, reason: str, message: str) -> Obj:
        p = prev.get(ctype)
        return {"type": ctype, "status": status, "reason": reason, "message": message, "lastHeartbeatTime": now,
                "lastTransitionTime": p["lastTransitionTime"] if p and p.get("status") == status else now}
    for t, texts in PRESSURE.items():
        on = t in pressure
        out.append(cond(t, "True" if on else "False", *texts[on]))
    out.append(cond("Ready", "True", "KubeletReady", "kubelet is posting ready status") if ready else
               cond("Ready", "False", "KubeletNotReady", not_ready_message))
    return out


async def renew_lease(client: Client, name: str, duration: int = 40, owner: Obj | None = None) -> None:
    """Create or renew the node's Lease in kube-node-lease (owned by the Node, as upstream)."""
    spec = {"holderIdentity": name, "leaseDurationSeconds": duration, "renewTime": micro_time()}
    try:
        await client.patch("coordination.k8s.io/v1", "leases", LEASE_NS, name, {"spec": spec})
    except ApiError as e:
        if not is_not_found(e):
            raise
        meta: Obj = {"name": name, "namespace": LEASE_NS}
        if owner is not None:
            meta["ownerReferences"] = [{"apiVersion": "v1", "kind": "Node", "name": owner["metadata"]["name"],
                                        "uid": owner["metadata"]["uid"]}]
        await client.create("coordination.k8s.io/v1", "leases", {"apiVersion": "coordination.k8s.io/v1",
                                                                 "kind": "Lease", "metadata": meta, "spec": spec},
                            LEASE_NS)


def _bytes(n: int) -> str:
    return format_quantity(Decimal(n), BINARY_SI)


def capacity(root_dir: Path, max_pods: int) -> dict[str, str]:
    disk = shutil.disk_usage(root_dir if root_dir.exists() else "/")
    return {"cpu": str(os.cpu_count() or 1), "memory": _bytes(psutil.virtual_memory().total),
            "ephemeral-storage": _bytes(disk.total), "pods": str(max_pods), "hugepages-2Mi": "0"}


def allocatable(cap: dict[str, str], reserved: dict[str, str]) -> dict[str, str]:
    """capacity minus --kube-reserved and --system-reserved (never below zero)."""
    from kubelab.api.quota import render, to_units
    out = dict(cap)
    for k, v in reserved.items():
        if k in out:
            left = max(0, to_units(k, out[k]) - to_units(k, v))
            out[k] = render(k, left) if k != "cpu" else (str(left // 1000) if left % 1000 == 0 else f"{left}m")
    return out


def node_info(runtime_version: str) -> Obj:
    def read(p: str) -> str:
        try:
            return Path(p).read_text().strip()
        except OSError:
            return ""
    os_image = ""
    for line in read("/etc/os-release").splitlines():
        if line.startswith("PRETTY_NAME="):
            os_image = line.split("=", 1)[1].strip('"')
    return {"machineID": read("/etc/machine-id"), "systemUUID": read("/sys/class/dmi/id/product_uuid"),
            "bootID": read("/proc/sys/kernel/random/boot_id"), "kernelVersion": platform.release(),
            "osImage": os_image, "containerRuntimeVersion": runtime_version, "kubeletVersion": KUBELET_VERSION,
            "kubeProxyVersion": "", "operatingSystem": "linux",
            "architecture": {"x86_64": "amd64", "aarch64": "arm64"}.get(platform.machine(), platform.machine())}


def node_object(name: str, *, labels: dict[str, str], taints: list[Obj], pod_cidr: str | None = None) -> Obj:
    arch = {"x86_64": "amd64", "aarch64": "arm64"}.get(platform.machine(), platform.machine())
    all_labels = {"kubernetes.io/hostname": name, "kubernetes.io/os": "linux", "kubernetes.io/arch": arch,
                  "beta.kubernetes.io/os": "linux", "beta.kubernetes.io/arch": arch, **labels}
    spec: Obj = {}
    if taints:
        spec["taints"] = taints
    if pod_cidr:
        spec["podCIDR"] = pod_cidr
        spec["podCIDRs"] = [pod_cidr]
    return {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name, "labels": all_labels}, "spec": spec}


def node_status(old: Obj, *, cap: dict[str, str], alloc: dict[str, str], node_ip: str, hostname: str, port: int,
                info: Obj, images: list[Obj], ready: bool, not_ready_message: str,
                pressure: set[str] = frozenset()) -> Obj:
    now = now_rfc3339()
    return {"capacity": cap, "allocatable": alloc,
            "addresses": [{"type": "InternalIP", "address": node_ip}, {"type": "Hostname", "address": hostname}],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": port}}, "nodeInfo": info, "images": images[:50],
            "conditions": conditions(ready, not_ready_message, (old or {}).get("conditions"), now, pressure)}


def status_changed(old: Obj, new: Obj) -> bool:
    """A change other than heartbeat times."""
    def strip(st: Obj) -> Obj:
        st = dict(st or {})
        st["conditions"] = [{k: v for k, v in c.items() if k != "lastHeartbeatTime"}
                            for c in st.get("conditions") or []]
        return st
    return strip(old) != strip(new)
