"""Memory-backed volume directories: tmpfs mounts and their size, as upstream's emptyDir plugin
(setupTmpfs, calculateEmptyDirMemorySize): the size is the node's allocatable memory, lowered to the
pod's memory limit when every container declares one, lowered again to the volume's sizeLimit;
secret, downwardAPI and projected volumes are such an emptyDir without a sizeLimit.
Mounts are made and removed with mount(2)/umount2(2) (kubelab.mounts): a pod's projected service
account token alone is one per pod. Teardown finds them in /proc/self/mountinfo, so it unmounts
exactly what lies under a pod; whether one volume dir is mounted yet is a stat (a tmpfs has a device
of its own), not a read of mountinfo, which grows with every pod and was read for every volume on
every resync."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping

from kubelab import mounts
from kubelab.api.quantity import QuantityError, parse
from kubelab.api.resources import resource_list

Obj = dict[str, Any]


def _unescape(s: str) -> str:
    return s.replace("\\040", " ").replace("\\011", "\t").replace("\\012", "\n").replace("\\134", "\\")


def mounts_under(prefix: Path) -> list[tuple[str, str]]:
    """(mount point, fs type) of every mount at or below prefix, deepest first."""
    pre = str(prefix).rstrip("/")
    out: list[tuple[str, str]] = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            parts = line.split()
            mp = _unescape(parts[4])
            fstype = parts[parts.index("-") + 1]
            if mp == pre or mp.startswith(pre + "/"):
                out.append((mp, fstype))
    return sorted(out, key=lambda m: m[0].count("/"), reverse=True)


def is_mount_point(path: Path) -> bool:
    """True if a file system of its own (a tmpfs, as this module mounts) is mounted at path."""
    return os.path.ismount(path)


def node_memory_total() -> int:
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024
    return 0


def pod_memory_limit(pod: Obj) -> int:
    """ResourceConfigForPod's memory limit: set only when every container declares one (the sum of
    the app containers' limits, or the largest init container's if that is more)."""
    spec = pod.get("spec") or {}
    total = 0
    for c in spec.get("containers") or []:
        lim = resource_list(((c.get("resources") or {}).get("limits")))
        if "memory" not in lim:
            return 0
        total += lim["memory"]
    for c in spec.get("initContainers") or []:
        lim = resource_list(((c.get("resources") or {}).get("limits")))
        if "memory" not in lim:
            return 0
        total = max(total, lim["memory"])
    return total


def memory_size(pod: Obj, size_limit: Any, allocatable_memory: int) -> int:
    """calculateEmptyDirMemorySize in bytes."""
    size = allocatable_memory
    pod_limit = pod_memory_limit(pod)
    if 0 < pod_limit <= size:
        size = pod_limit
    if size_limit not in (None, ""):
        try:
            vol = parse(str(size_limit)).int_value()
        except QuantityError:
            vol = 0
        if 0 < vol <= size:
            size = vol
    return size


async def mount_tmpfs(path: Path, size: int) -> None:
    """A tmpfs of size bytes (0: the kernel's default) at path, mode 0777; an existing mount is
    kept. OSError if the kernel refuses."""
    if is_mount_point(path):
        return
    mounts.mount("tmpfs", str(path), "tmpfs", 0, f"size={size}" if size > 0 else None)
    os.chmod(path, 0o777)


async def unmount_all(prefix: Path) -> None:
    """Unmount every mount at or below prefix, deepest first (not lazily: a busy one is an OSError)."""
    for mp, _ in mounts_under(prefix):
        mounts.umount(mp, detach=False)


def allocatable_memory(alloc: Mapping[str, Any] | None) -> int:
    if alloc and alloc.get("memory") is not None:
        try:
            return parse(str(alloc["memory"])).int_value()
        except QuantityError:
            pass
    return node_memory_total()
