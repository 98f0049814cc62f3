"""Memory-backed volume directories: tmpfs mounts and their size, as upstream's emptyDir plugin
(setupTmpfs, calculateEmptyDirMemorySize): the size is the node's allocatable memory, lowered to the
pod's memory limit when every container declares one, lowered again to the volume's sizeLimit;
secret, downwardAPI and projected volumes are such an emptyDir without a sizeLimit.
Mounts are found in /proc/self/mountinfo, so teardown unmounts exactly what lies under a pod."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping

from kubelab.api.quantity import QuantityError, parse
from kubelab.api.resources import resource_list
from kubelab.proc import run

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
    return any(mp == str(path).rstrip("/") for mp, _ in mounts_under(path))


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
    """mount -t tmpfs -o size=<size> tmpfs <path> (once; an existing mount is kept)."""
    if is_mount_point(path):
        return
    opts = ["-o", f"size={size}"] if size > 0 else []
    await run(["mount", "-t", "tmpfs", *opts, "tmpfs", str(path)], timeout=30)
    os.chmod(path, 0o777)


async def unmount_all(prefix: Path) -> None:
    """Unmount every mount at or below prefix, deepest first."""
    for mp, _ in mounts_under(prefix):
        await run(["umount", mp], timeout=30)


def allocatable_memory(alloc: Mapping[str, Any] | None) -> int:
    if alloc and alloc.get("memory") is not None:
        try:
            return parse(str(alloc["memory"])).int_value()
        except QuantityError:
            pass
    return node_memory_total()
