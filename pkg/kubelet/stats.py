"""Node and pod resource usage: the kubelet's /stats/summary (stats/v1alpha1 Summary) and
/metrics/resource (the resource metrics metrics-server and `kubectl top` read).

Pods and containers come from the runtime (CRI ListPodSandboxStats, with the containers'
stats inside, and ListContainers for start times), as upstream's CRI stats provider; the node from
psutil (CPU time, memory, root filesystem, network, process count). CRI runtimes may leave
usage_nano_cores empty (kubelab-cri does): as upstream's cpuUsageCache, the rate is computed here
from two cumulative readings of the same container, pod or node.

`resource_metrics` renders a Summary as upstream's collectors/resource_metrics.go does: metric
names node_cpu_usage_seconds_total, node_memory_working_set_bytes, container_cpu_usage_seconds_total,
container_memory_working_set_bytes, container_start_time_seconds, pod_cpu_usage_seconds_total,
pod_memory_working_set_bytes, scrape_error; samples carry their reading's timestamp in ms.
"""
from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path
from typing import Any

import psutil

from kubelab.api.timefmt import parse_time, rfc3339
from kubelab.cri.api import api_pb2 as pb
from kubelab.cri.runtime import cgroups

POD_NAME, POD_NAMESPACE, POD_UID = "io.kubernetes.pod.name", "io.kubernetes.pod.namespace", "io.kubernetes.pod.uid"
CONTAINER_NAME = "io.kubernetes.container.name"


class CpuRates:
    """usageNanoCores from successive cumulative CPU readings, per key (upstream's cpuUsageCache)."""

    def __init__(self) -> None:
        self._last: dict[str, tuple[int, int]] = {}

    def rate(self, key: str, ts_ns: int, usage_ns: int) -> int | None:
        prev = self._last.get(key)
        self._last[key] = (ts_ns, usage_ns)
        if prev is None or ts_ns <= prev[0] or usage_ns < prev[1]:
            return None
        return int((usage_ns - prev[1]) * 1_000_000_000 / (ts_ns - prev[0]))

    def keep_only(self, keys: set[str]) -> None:
        for k in list(self._last):
            if k not in keys:
                del self._last[k]


def _t(ts_ns: int) -> str:
    return rfc3339(ts_ns / 1e9)


def _cpu(rates: CpuRates, key: str, u: pb.CpuUsage) -> dict | None:
    if not u.timestamp:
        return None
    out: dict[str, Any] = {"time": _t(u.timestamp), "usageCoreNanoSeconds": u.usage_core_nano_seconds.value}
    if u.HasField("usage_nano_cores"):
        out["usageNanoCores"] = u.usage_nano_cores.value
        rates.rate(key, u.timestamp, u.usage_core_nano_seconds.value)
    else:
        r = rates.rate(key, u.timestamp, u.usage_core_nano_seconds.value)
        if r is not None:
            out["usageNanoCores"] = r
    return out


def _memory(u: pb.MemoryUsage) -> dict | None:
    if not u.timestamp:
        return None
    out: dict[str, Any] = {"time": _t(u.timestamp), "workingSetBytes": u.working_set_bytes.value}
    for field, name in (("available_bytes", "availableBytes"), ("usage_bytes", "usageBytes"),
                        ("rss_bytes", "rssBytes"), ("page_faults", "pageFaults"),
                        ("major_page_faults", "majorPageFaults")):
        if u.HasField(field):
            out[name] = getattr(u, field).value
    return out


def _iface(i: pb.NetworkInterfaceUsage) -> dict:
    return {"name": i.name, "rxBytes": i.rx_bytes.value, "rxErrors": i.rx_errors.value,
            "txBytes": i.tx_bytes.value, "txErrors": i.tx_errors.value}


class StatsProvider:
    """Builds Summaries from a CRI RuntimeServiceStub (grpc.aio) and the host."""

    def __init__(self, runtime: Any, root_dir: Path | None = None, timeout: float = 10.0, *,
                 images: Any = None, pod_logs_dir: Path | None = None, cgroup_root: str | None = None) -> None:
        self.runtime = runtime
        self.images = images                    # ImageServiceStub: the runtime's image filesystem
        self.root_dir = root_dir
        self.pod_logs_dir = pod_logs_dir
        self.cgroup_root = cgroup_root          # the kubepods cgroup is <cgroup_root>/kubepods
        self.timeout = timeout
        self.rates = CpuRates()

    async def summary(self, node_name: str) -> dict:
        pods = await self._pods()
        node = self._node(node_name)
        if self.images is not None:
            fs = await self.image_fs()
            if fs is not None:
                node["runtime"] = {"imageFs": fs}
        if self.cgroup_root is not None:
            st = cgroups.stats(self.cgroup_root.rstrip("/") + "/kubepods")
            if st is not None:
                node["systemContainers"] = [{"name": "pods", "startTime": node["startTime"], "memory": {
                    "time": _t(st.timestamp_ns), "usageBytes": st.memory_usage, "workingSetBytes": st.memory_working_set,
                    "rssBytes": st.memory_rss}}]
        self.rates.keep_only({"node"} | {p["podRef"]["uid"] for p in pods}
                             | {f'{p["podRef"]["uid"]}/{c["name"]}' for p in pods for c in p["containers"]})
        return {"node": node, "pods": pods}

    async def _pods(self) -> list[dict]:
        sandboxes = (await self.runtime.ListPodSandboxStats(pb.ListPodSandboxStatsRequest(),
                                                            timeout=self.timeout)).stats
        listed = (await self.runtime.ListContainers(pb.ListContainersRequest(), timeout=self.timeout)).containers
        created = {c.id: c.created_at for c in listed}
        ready = {s.id: s for s in (await self.runtime.ListPodSandbox(pb.ListPodSandboxRequest(),
                                                                     timeout=self.timeout)).items}
        out = []
        for st in sandboxes:
            a = st.attributes
            sb = ready.get(a.id)
            if sb is None or sb.state != pb.SANDBOX_READY:
                continue
            md = a.metadata
            uid = md.uid or a.labels.get(POD_UID, "")
            pod: dict[str, Any] = {"podRef": {"name": md.name or a.labels.get(POD_NAME, ""),
                                              "namespace": md.namespace or a.labels.get(POD_NAMESPACE, ""),
                                              "uid": uid},
                                   "startTime": _t(sb.created_at), "containers": []}
            lx = st.linux
            for cs in lx.containers:
                name = cs.attributes.metadata.name or cs.attributes.labels.get(CONTAINER_NAME, "")
                c: dict[str, Any] = {"name": name}
                if cs.attributes.id in created:
                    c["startTime"] = _t(created[cs.attributes.id])
                cpu = _cpu(self.rates, f"{uid}/{name}", cs.cpu)
                mem = _memory(cs.memory)
                if cpu:
                    c["cpu"] = cpu
                if mem:
                    c["memory"] = mem
                if cs.writable_layer.timestamp:
                    c["rootfs"] = {"time": _t(cs.writable_layer.timestamp),
                                   "usedBytes": cs.writable_layer.used_bytes.value,
                                   "inodesUsed": cs.writable_layer.inodes_used.value}
                pod["containers"].append(c)
            cpu = _cpu(self.rates, uid, lx.cpu)
            mem = _memory(lx.memory)
            if cpu:
                pod["cpu"] = cpu
            if mem:
                pod["memory"] = mem
            if lx.network.timestamp:
                d = lx.network.default_interface
                ifaces = ([d] if d.name else []) + list(lx.network.interfaces)
                pod["network"] = {"time": _t(lx.network.timestamp), **(_iface(d) if d.name else {}),
                                  "interfaces": [_iface(i) for i in ifaces]}
            if lx.process.timestamp:
                pod["process_stats"] = {"process_count": lx.process.process_count.value}
            out.append(pod)
        await asyncio.to_thread(lambda: [self._ephemeral_storage(p) for p in out])    # disk walks, off the loop
        return out

    def _ephemeral_storage(self, pod: dict) -> None:
        """Containers' logs, and the pod's "ephemeral-storage" (upstream: root filesystems + logs +
        local volumes on the node's disk; tmpfs-backed volumes are memory, not disk)."""
        ref = pod["podRef"]
        used = inodes = 0
        if self.pod_logs_dir is not None:
            d = self.pod_logs_dir / f"{ref['namespace']}_{ref['name']}_{ref['uid']}"
            for c in pod["containers"]:
                b, n = disk_usage(d / c["name"])
                c["logs"] = {"time": _t(time.time_ns()), "usedBytes": b, "inodesUsed": n}
        for c in pod["containers"]:
            used += (c.get("rootfs") or {}).get("usedBytes", 0) + (c.get("logs") or {}).get("usedBytes", 0)
            inodes += (c.get("rootfs") or {}).get("inodesUsed", 0) + (c.get("logs") or {}).get("inodesUsed", 0)
        if self.root_dir is not None:
            vols = []
            top = self.root_dir / "pods" / ref["uid"] / "volumes"
            try:
                disk = top.lstat().st_dev
            except OSError:
                disk = None
            for d in sorted(top.glob("*/*")):
                b, n = disk_usage(d)
                vols.append({"time": _t(time.time_ns()), "name": d.name, "usedBytes": b, "inodesUsed": n})
                try:
                    on_disk = d.lstat().st_dev == disk           # not a tmpfs (memory-backed) volume
                except OSError:
                    on_disk = False
                if on_disk:
                    used += b
                    inodes += n
            if vols:
                pod["volume"] = vols
        pod["ephemeral-storage"] = {"time": _t(time.time_ns()), "usedBytes": used, "inodesUsed": inodes}

    async def image_fs(self) -> dict | None:
        try:
            r = await self.images.ImageFsInfo(pb.ImageFsInfoRequest(), timeout=self.timeout)
        except Exception:           # the runtime may not answer yet; the node's fs stands in
            return None
        if not r.image_filesystems:
            return None
        u = r.image_filesystems[0]
        out: dict[str, Any] = {"time": _t(u.timestamp or time.time_ns()), "usedBytes": u.used_bytes.value,
                               "inodesUsed": u.inodes_used.value}
        try:
            sv = os.statvfs(u.fs_id.mountpoint or "/")
        except OSError:
            return out
        out.update(availableBytes=sv.f_bavail * sv.f_frsize, capacityBytes=sv.f_blocks * sv.f_frsize,
                   inodesFree=sv.f_favail, inodes=sv.f_files)
        return out

    def _node(self, node_name: str) -> dict:
        now = time.time_ns()
        t = _t(now)
        ct = psutil.cpu_times()
        busy_s = sum(getattr(ct, f, 0.0) for f in ct._fields if f not in ("idle", "iowait", "guest", "guest_nice"))
        usage_ns = int(busy_s * 1e9)
        cpu: dict[str, Any] = {"time": t, "usageCoreNanoSeconds": usage_ns}
        r = self.rates.rate("node", now, usage_ns)
        if r is not None:
            cpu["usageNanoCores"] = r
        vm = psutil.virtual_memory()
        memory = {"time": t, "availableBytes": vm.available, "usageBytes": vm.total - vm.free,
                  "workingSetBytes": vm.total - vm.available}
        node: dict[str, Any] = {"nodeName": node_name, "startTime": rfc3339(psutil.boot_time()), "cpu": cpu,
                                "memory": memory}
        root = self.root_dir if self.root_dir is not None and self.root_dir.exists() else Path("/")
        try:
            du = psutil.disk_usage(str(root))
            sv = os.statvfs(root)
            node["fs"] = {"time": t, "availableBytes": du.free, "capacityBytes": du.total, "usedBytes": du.used,
                          "inodesFree": sv.f_ffree, "inodes": sv.f_files, "inodesUsed": sv.f_files - sv.f_ffree}
        except OSError:
            pass
        try:
            nics = psutil.net_io_counters(pernic=True)
        except OSError:
            nics = {}
        ifaces = [{"name": n, "rxBytes": c.bytes_recv, "rxErrors": c.errin, "txBytes": c.bytes_sent,
                   "txErrors": c.errout} for n, c in sorted(nics.items()) if n != "lo"]
        if ifaces:
            node["network"] = {"time": t, **ifaces[0], "interfaces": ifaces}
        node["rlimit"] = {"time": t, "maxpid": _pid_max(), "curproc": len(psutil.pids())}
        return node


def disk_usage(top: Path) -> tuple[int, int]:
    """(bytes, inodes) allocated under `top`, staying on its filesystem (mounted tmpfs volumes are
    skipped, as upstream's du -x)."""
    try:
        dev = top.lstat().st_dev
    except OSError:
        return 0, 0
    used, inodes = 0, 0
    stack = [str(top)]
    while stack:
        d = stack.pop()
        try:
            with os.scandir(d) as it:
                for e in it:
                    try:
                        st = e.stat(follow_symlinks=False)
                    except OSError:
                        continue
                    if st.st_dev != dev:
                        continue
                    used += st.st_blocks * 512
                    inodes += 1
                    if e.is_dir(follow_symlinks=False):
                        stack.append(e.path)
        except OSError:
            continue
    return used, inodes


def _pid_max() -> int:
    try:
        return int(Path("/proc/sys/kernel/pid_max").read_text())
    except (OSError, ValueError):
        return 0


# --------------------------------------------------------------------------------- /metrics/resource

_HELP = {
    "container_cpu_usage_seconds_total": ("counter", "[STABLE] Cumulative cpu time consumed by the container in "
                                                     "core-seconds"),
    "container_memory_working_set_bytes": ("gauge", "[STABLE] Current working set of the container in bytes"),
    "container_start_time_seconds": ("gauge", "[STABLE] Start time of the container since unix epoch in seconds"),
    "node_cpu_usage_seconds_total": ("counter", "[STABLE] Cumulative cpu time consumed by the node in core-seconds"),
    "node_memory_working_set_bytes": ("gauge", "[STABLE] Current working set of the node in bytes"),
    "pod_cpu_usage_seconds_total": ("counter", "[STABLE] Cumulative cpu time consumed by the pod in core-seconds"),
    "pod_memory_working_set_bytes": ("gauge", "[STABLE] Current working set of the pod in bytes"),
    "scrape_error": ("gauge", "[ALPHA] 1 if there was an error while getting container metrics, 0 otherwise"),
}


def _esc(v: str) -> str:
    return v.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _ms(t: str | None) -> str:
    s = parse_time(t)
    return "" if s is None else f" {int(s * 1000)}"


def _num(v: float) -> str:
    return repr(float(v)) if isinstance(v, float) else str(v)


def resource_metrics(summary: dict | None) -> str:
    """The Prometheus text of /metrics/resource for a Summary (None: the scrape failed)."""
    samples: dict[str, list[str]] = {k: [] for k in _HELP}

    def add(name: str, labels: dict[str, str], value: float, ts: str | None = None) -> None:
        lab = ",".join(f'{k}="{_esc(v)}"' for k, v in sorted(labels.items()))
        samples[name].append(f"{name}{{{lab}}} {_num(value)}{_ms(ts)}" if lab else f"{name} {_num(value)}{_ms(ts)}")

    if summary is None:
        add("scrape_error", {}, 1)
    else:
        add("scrape_error", {}, 0)
        node = summary.get("node") or {}
        if "cpu" in node:
            add("node_cpu_usage_seconds_total", {}, node["cpu"]["usageCoreNanoSeconds"] / 1e9, node["cpu"]["time"])
        if "memory" in node:
            add("node_memory_working_set_bytes", {}, node["memory"]["workingSetBytes"], node["memory"]["time"])
        for p in summary.get("pods") or []:
            ref = p["podRef"]
            pl = {"pod": ref["name"], "namespace": ref["namespace"]}
            for c in p.get("containers") or []:
                cl = {**pl, "container": c["name"]}
                if "cpu" in c:
                    add("container_cpu_usage_seconds_total", cl, c["cpu"]["usageCoreNanoSeconds"] / 1e9,
                        c["cpu"]["time"])
                if "memory" in c:
                    add("container_memory_working_set_bytes", cl, c["memory"]["workingSetBytes"], c["memory"]["time"])
                if "startTime" in c:
                    add("container_start_time_seconds", cl, float(parse_time(c["startTime"]) or 0))
            if "cpu" in p:
                add("pod_cpu_usage_seconds_total", pl, p["cpu"]["usageCoreNanoSeconds"] / 1e9, p["cpu"]["time"])
            if "memory" in p:
                add("pod_memory_working_set_bytes", pl, p["memory"]["workingSetBytes"], p["memory"]["time"])
    lines = []
    for name in sorted(samples):
        kind, text = _HELP[name]
        lines += [f"# HELP {name} {text}", f"# TYPE {name} {kind}"] + samples[name]
    return "\n".join(lines) + "\n"
