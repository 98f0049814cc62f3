"""Pod and container cgroups, on cgroup v1 (one hierarchy per controller, as on this machine, with
the v2 "unified" hierarchy beside them in hybrid mode) and on cgroup v2.

A cgroup is named by the path runc is given as linux.cgroupsPath with the cgroupfs driver, e.g.
"/kubepods/besteffort/pod<uid>/<container id>": absolute, relative to the root of every hierarchy.
"""
from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

log = logging.getLogger("kubelab.cri.cgroups")

# the kernel's "no limit" on v1 is PAGE_COUNTER_MAX pages; anything this large means unlimited
_UNLIMITED = 1 << 62


@dataclass
class Stats:
    cpu_usage_ns: int = 0           # cumulative CPU time
    memory_usage: int = 0           # usage_in_bytes / memory.current
    memory_working_set: int = 0     # usage minus inactive file pages (what the kubelet evicts on)
    memory_rss: int = 0             # anonymous memory
    page_faults: int = 0
    major_page_faults: int = 0
    memory_limit: int = 0           # 0: unlimited
    pids: int = 0
    timestamp_ns: int = 0


@lru_cache(maxsize=1)
def _mounts() -> tuple[dict[str, Path], Path | None]:
    """(v1 controller -> mount point, v2 mount point or None). Named hierarchies appear as
    "name=systemd"."""
    v1: dict[str, Path] = {}
    v2: Path | None = None
    with open("/proc/self/mountinfo") as f:
        for line in f:
            left, _, right = line.partition(" - ")
            fields = left.split()
            fstype, _src, *opts = right.split()
            mp = Path(fields[4].encode().decode("unicode_escape"))
            if fstype == "cgroup2":
                if v2 is None:
                    v2 = mp
            elif fstype == "cgroup":
                for o in (opts[0] if opts else "").split(","):
                    if o in ("rw", "ro") or o.startswith(("relatime", "noatime", "nosuid", "nodev", "noexec")):
                        continue
                    if o.startswith("release_agent=") or o in ("clone_children", "noprefix", "xattr"):
                        continue
                    v1.setdefault(o, mp)
    return v1, v2


def version() -> int:
    """2 on a pure cgroup v2 host, else 1 (v1 or hybrid)."""
    v1, v2 = _mounts()
    return 2 if v2 is not None and not v1 else 1


def hierarchies() -> list[Path]:
    """Every hierarchy's mount point, each once (v1 controllers, named ones and unified)."""
    v1, v2 = _mounts()
    seen: list[Path] = []
    for mp in list(v1.values()) + ([v2] if v2 else []):
        if mp not in seen:
            seen.append(mp)
    return seen


def _under(mp: Path, path: str) -> Path:
    return mp / path.strip("/")


def controller_dir(controller: str, path: str) -> Path | None:
    """The directory of cgroup path for a v1 controller, or in the v2 hierarchy on v2."""
    v1, v2 = _mounts()
    if version() == 2:
        return _under(v2, path) if v2 else None
    mp = v1.get(controller)
    return _under(mp, path) if mp else None


def container_path(parent: str, id: str) -> str:
    """cgroupsPath of a container under its pod's cgroup parent: "/kubepods/pod<uid>" + id."""
    return "/" + "/".join(p for p in (parent.strip("/"), id) if p)


def procs_files(path: str) -> list[Path]:
    """The cgroup.procs file of path in every hierarchy (to move a process into the cgroup)."""
    return [_under(mp, path) / "cgroup.procs" for mp in hierarchies()]


def exists(path: str) -> bool:
    d = controller_dir("memory", path) or controller_dir("pids", path)
    return d is not None and d.is_dir()


def ensure(path: str) -> bool:
    """Create the cgroup in every hierarchy (parents included); True if any part was created."""
    created = False
    v1, _ = _mounts()
    cpuset = v1.get("cpuset")
    for mp in hierarchies():
        target = _under(mp, path)
        if target.is_dir():
            continue
        parts = Path(path.strip("/")).parts
        d = mp
        for part in parts:
            d = d / part
            if d.is_dir():
                continue
            try:
                d.mkdir()
            except FileExistsError:
                continue
            created = True
            if mp == cpuset:
                _init_cpuset(d)
    return created


def _init_cpuset(d: Path) -> None:
    """A new v1 cpuset cgroup starts with no cpus and mems: copy its parent's."""
    for name in ("cpuset.cpus", "cpuset.mems"):
        try:
            if not (d / name).read_text().strip():
                (d / name).write_text((d.parent / name).read_text())
        except OSError as e:
            log.warning("cannot initialise %s/%s: %s", d, name, e)


def remove(path: str, retries: int = 30) -> bool:
    """rmdir the cgroup (and any child cgroups) in every hierarchy. Missing ones are fine. A killed
    process can take a while to leave its cgroup on a busy machine: each directory is retried for
    up to about 2.5 s. Returns False, after logging which, if some could not be removed."""
    if not path.strip("/"):
        raise ValueError("refusing to remove the root cgroup")
    left = []
    for mp in hierarchies():
        top = _under(mp, path)
        if not top.is_dir():
            continue
        dirs = [Path(root) for root, _, _ in os.walk(top)]
        for d in sorted(dirs, key=lambda p: len(p.parts), reverse=True):
            for attempt in range(retries):
                try:
                    d.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    if attempt == retries - 1:
                        left.append(str(d))
                    else:
                        time.sleep(min(0.1, 0.01 * (attempt + 1)))
    if left:
        log.warning("cgroups not removed (processes still inside?): %s", " ".join(left))
    return not left


def pids(path: str) -> list[int]:
    """Pids in the cgroup and its children."""
    d = controller_dir("pids", path) or controller_dir("memory", path)
    out: list[int] = []
    if d is None or not d.is_dir():
        return out
    for root, _, files in os.walk(d):
        if "cgroup.procs" in files:
            out += [int(x) for x in _read(Path(root) / "cgroup.procs").split()]
    return out


def _read(p: Path) -> str:
    try:
        return p.read_text()
    except OSError:
        return ""


def _int(p: Path) -> int:
    s = _read(p).strip()
    if not s or s == "max":
        return 0
    try:
        return int(s)
    except ValueError:
        return 0


def _kv(p: Path) -> dict[str, int]:
    out = {}
    for line in _read(p).splitlines():
        k, _, v = line.partition(" ")
        try:
            out[k] = int(v)
        except ValueError:
            pass
    return out


def stats(path: str) -> Stats | None:
    """Usage of the cgroup, or None if it does not exist."""
    if version() == 2:
        return _stats_v2(path)
    return _stats_v1(path)


def _stats_v1(path: str) -> Stats | None:
    mem = controller_dir("memory", path)
    if mem is None or not mem.is_dir():
        return None
    st = Stats(timestamp_ns=time.time_ns())
    cpuacct = controller_dir("cpuacct", path)
    if cpuacct is not None:
        st.cpu_usage_ns = _int(cpuacct / "cpuacct.usage")
    ms = _kv(mem / "memory.stat")
    st.memory_usage = _int(mem / "memory.usage_in_bytes")
    inactive = ms.get("total_inactive_file", ms.get("inactive_file", 0))
    st.memory_working_set = max(0, st.memory_usage - inactive)
    st.memory_rss = ms.get("total_rss", ms.get("rss", 0))
    st.page_faults = ms.get("total_pgfault", ms.get("pgfault", 0))
    st.major_page_faults = ms.get("total_pgmajfault", ms.get("pgmajfault", 0))
    limit = _int(mem / "memory.limit_in_bytes")
    st.memory_limit = 0 if limit >= _UNLIMITED else limit
    p = controller_dir("pids", path)
    if p is not None:
        st.pids = _int(p / "pids.current")
    return st


def _stats_v2(path: str) -> Stats | None:
    d = controller_dir("", path)
    if d is None or not d.is_dir():
        return None
    st = Stats(timestamp_ns=time.time_ns())
    st.cpu_usage_ns = _kv(d / "cpu.stat").get("usage_usec", 0) * 1000
    ms = _kv(d / "memory.stat")
    st.memory_usage = _int(d / "memory.current")
    st.memory_working_set = max(0, st.memory_usage - ms.get("inactive_file", 0))
    st.memory_rss = ms.get("anon", 0)
    st.page_faults = ms.get("pgfault", 0)
    st.major_page_faults = ms.get("pgmajfault", 0)
    st.memory_limit = _int(d / "memory.max")
    st.pids = _int(d / "pids.current")
    return st


def swap_available() -> bool:
    """Whether a memory+swap limit can be set (v1 memory.memsw.*, v2 memory.swap.max)."""
    if version() == 2:
        _, v2 = _mounts()
        return v2 is not None and any(v2.glob("*/memory.swap.max"))
    mem = _mounts()[0].get("memory")
    return mem is not None and (mem / "memory.memsw.limit_in_bytes").exists()


def hugetlb_available() -> bool:
    if version() == 2:
        _, v2 = _mounts()
        return v2 is not None and "hugetlb" in _read(v2 / "cgroup.controllers").split()
    return "hugetlb" in _mounts()[0]
