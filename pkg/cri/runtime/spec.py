"""OCI runtime specs (1.0.2) for CRI containers, built as containerd's CRI plugin builds them on
Linux (pkg/cri/server/container_create_linux.go, pkg/cri/opts, oci/spec.go), from the image config
and the CRI ContainerConfig / PodSandboxConfig messages (kubelab.cri.api.api_pb2).

Pure logic but for three reads of the host: the rootfs's /etc/passwd and /etc/group (user names),
the host's device nodes (devices, privileged), and /proc/self/mountinfo (mount propagation checks).
Missing volume host paths are created as directories, as containerd does.

Defaults and choices, where the CRI leaves them to the runtime:
- capabilities: upstream's 14 (CHOWN DAC_OVERRIDE FSETID FOWNER MKNOD NET_RAW SETGID SETUID SETFCAP
  SETPCAP NET_BIND_SERVICE SYS_CHROOT KILL AUDIT_WRITE), in bounding/effective/permitted; no
  inheritable or ambient ones; "ALL" in add/drop as containerd (add ALL first, then drop ALL, then
  the named ones).
- masked and readonly paths: the CRI's lists, or upstream's default lists when the CRI sends none;
  none for privileged containers.
- no rlimits (the runtime's own are inherited); apparmor and SELinux options are ignored.
- seccomp: RuntimeDefault -> kubelab.cri.runtime.seccomp.default_profile; Unconfined or unset -> none;
  Localhost -> the JSON file named by localhost_ref; never for privileged containers.
- pid namespace: CONTAINER -> its own; POD -> the sandbox's (SandboxInfo.pid_ns; a private one if the
  sandbox holds none); NODE -> the host's; TARGET -> target_pid_ns.
- oomScoreAdj is never below the runtime's own (containerd's restrict_oom_score_adj): an
  unprivileged runtime cannot lower it.
"""
from __future__ import annotations

import copy
import os
import socket
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

from kubelab.cri.runtime import cgroups, seccomp
from kubelab.cri.runtime.namespaces import mount_of

OCI_VERSION = "1.0.2"
DEFAULT_PATH_ENV = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

DEFAULT_CAPS = ["CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD", "CAP_NET_RAW",
                "CAP_SETGID", "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP", "CAP_NET_BIND_SERVICE",
                "CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE"]

# capability number -> name
CAP_NAMES = ["CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER", "CAP_FSETID", "CAP_KILL",
             "CAP_SETGID", "CAP_SETUID", "CAP_SETPCAP", "CAP_LINUX_IMMUTABLE", "CAP_NET_BIND_SERVICE",
             "CAP_NET_BROADCAST", "CAP_NET_ADMIN", "CAP_NET_RAW", "CAP_IPC_LOCK", "CAP_IPC_OWNER",
             "CAP_SYS_MODULE", "CAP_SYS_RAWIO", "CAP_SYS_CHROOT", "CAP_SYS_PTRACE", "CAP_SYS_PACCT",
             "CAP_SYS_ADMIN", "CAP_SYS_BOOT", "CAP_SYS_NICE", "CAP_SYS_RESOURCE", "CAP_SYS_TIME",
             "CAP_SYS_TTY_CONFIG", "CAP_MKNOD", "CAP_LEASE", "CAP_AUDIT_WRITE", "CAP_AUDIT_CONTROL",
             "CAP_SETFCAP", "CAP_MAC_OVERRIDE", "CAP_MAC_ADMIN", "CAP_SYSLOG", "CAP_WAKE_ALARM",
             "CAP_BLOCK_SUSPEND", "CAP_AUDIT_READ", "CAP_PERFMON", "CAP_BPF", "CAP_CHECKPOINT_RESTORE"]

DEFAULT_MASKED_PATHS = ["/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
                        "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/sys/firmware",
                        "/sys/devices/virtual/powercap", "/proc/scsi"]
DEFAULT_READONLY_PATHS = ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"]

# CRI enums (runtime.v1)
NS_POD, NS_CONTAINER, NS_NODE, NS_TARGET = 0, 1, 2, 3
PROPAGATION_PRIVATE, PROPAGATION_HOST_TO_CONTAINER, PROPAGATION_BIDIRECTIONAL = 0, 1, 2
PROFILE_RUNTIME_DEFAULT, PROFILE_UNCONFINED, PROFILE_LOCALHOST = 0, 1, 2
SUPPLEMENTAL_GROUPS_STRICT = 1

ANNOTATION_CONTAINER_TYPE = "io.kubernetes.cri.container-type"
ANNOTATION_SANDBOX_ID = "io.kubernetes.cri.sandbox-id"
ANNOTATION_SANDBOX_NAMESPACE = "io.kubernetes.cri.sandbox-namespace"
ANNOTATION_SANDBOX_UID = "io.kubernetes.cri.sandbox-uid"
ANNOTATION_SANDBOX_NAME = "io.kubernetes.cri.sandbox-name"
ANNOTATION_SANDBOX_LOG_DIR = "io.kubernetes.cri.sandbox-log-directory"
ANNOTATION_CONTAINER_NAME = "io.kubernetes.cri.container-name"
ANNOTATION_IMAGE_NAME = "io.kubernetes.cri.image-name"


class SpecError(ValueError):
    """The container cannot be specified as asked; str() is one line naming the field."""


@dataclass
class SandboxInfo:
    """What a container's spec needs from its sandbox. Empty paths mean "the host's": no netns =
    host network, no ipc = host IPC (and the host's /dev/shm), no uts = host UTS."""
    id: str
    config: Any                     # api_pb2.PodSandboxConfig
    netns: str = ""
    uts: str = ""
    ipc: str = ""
    shm: str = ""                   # dir bind-mounted on /dev/shm
    hostname_file: str = ""
    hosts_file: str = ""
    resolv_file: str = ""
    pid_ns: str = ""                # the pod's shared pid namespace, if it has one


SandboxSpecInfo = SandboxInfo


# ---------------------------------------------------------------------------- small helpers

def _has(msg: Any, field: str) -> bool:
    try:
        return msg.HasField(field)
    except ValueError:
        return bool(getattr(msg, field, None))


def _image_cfg(image_config: Mapping[str, Any] | None) -> Mapping[str, Any]:
    """The "config" object of an OCI image config (accepts the whole config blob or the inner object)."""
    if not image_config:
        return {}
    inner = image_config.get("config")
    if isinstance(inner, Mapping):
        return inner
    if "rootfs" in image_config or "architecture" in image_config:
        return {}
    return image_config


def merge_env(base: list[str], new: Iterable[str]) -> list[str]:
    """containerd's replaceOrAppendEnvValues: KEY=V replaces KEY's entry or is appended; a bare
    KEY removes it."""
    out = list(base)
    for e in new:
        key, eq, _ = e.partition("=")
        idx = next((i for i, o in enumerate(out) if o.partition("=")[0] == key), None)
        if not eq:
            if idx is not None:
                out.pop(idx)
            continue
        if idx is None:
            out.append(e)
        else:
            out[idx] = e
    return out


def process_args(image_config: Mapping[str, Any] | None, command: Iterable[str], args: Iterable[str]) -> list[str]:
    """Kubernetes' rules: command replaces the image's Entrypoint (and then the image's Cmd is not
    used), args replaces the image's Cmd."""
    cfg = _image_cfg(image_config)
    command, args = list(command), list(args)
    if not command:
        if not args:
            args = list(cfg.get("Cmd") or [])
        entry = list(cfg.get("Entrypoint") or [])
        if not (len(entry) == 1 and entry[0] == ""):
            command = entry
    argv = command + args
    if not argv:
        raise SpecError("no command specified: the container config and the image give none")
    return argv


# ---------------------------------------------------------------------------- users

def _rootfs_path(rootfs: Path, path: str) -> Path:
    """path inside rootfs, with symlinks resolved inside rootfs (never escaping it)."""
    root = Path(rootfs)
    parts = [p for p in path.split("/") if p not in ("", ".")]
    cur: list[str] = []
    hops = 0
    while parts:
        part = parts.pop(0)
        if part == "..":
            if cur:
                cur.pop()
            continue
        candidate = root.joinpath(*cur, part)
        if candidate.is_symlink():
            hops += 1
            if hops > 40:
                raise SpecError(f"too many symlinks resolving {path} in the image")
            target = os.readlink(candidate)
            if target.startswith("/"):
                cur = []
            parts = [p for p in target.split("/") if p not in ("", ".")] + parts
            continue
        cur.append(part)
    return root.joinpath(*cur)


def _read_db(rootfs: Path, path: str) -> list[list[str]] | None:
    try:
        text = _rootfs_path(rootfs, path).read_text(errors="replace")
    except OSError:
        return None
    rows = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        rows.append(line.split(":"))
    return rows


@dataclass
class User:
    uid: int
    gid: int
    name: str = ""


def resolve_user(rootfs: Path, userstr: str) -> User:
    """An image/CRI user string ("", "uid", "name", "uid:gid", "name:group", ...) as uid and gid,
    looked up in the rootfs's /etc/passwd and /etc/group as containerd's oci.WithUser does."""
    if not userstr:
        userstr = "0"
    user_part, _, group_part = userstr.partition(":")
    passwd = _read_db(rootfs, "/etc/passwd") or []
    entries = [r for r in passwd if len(r) >= 4]

    def by_uid(uid: int) -> list[str] | None:
        return next((r for r in entries if r[2].isdigit() and int(r[2]) == uid), None)

    if user_part.isdigit():
        uid = int(user_part)
        row = by_uid(uid)
        gid = int(row[3]) if row and row[3].isdigit() else 0
        name = row[0] if row else ""
    else:
        row = next((r for r in entries if r[0] == user_part), None)
        if row is None or not row[2].isdigit():
            raise SpecError(f"unable to find user {user_part}: no matching entries in passwd file")
        uid, gid, name = int(row[2]), int(row[3]) if row[3].isdigit() else 0, row[0]
    if group_part:
        if group_part.isdigit():
            gid = int(group_part)
        else:
            groups = [r for r in (_read_db(rootfs, "/etc/group") or []) if len(r) >= 3]
            grow = next((r for r in groups if r[0] == group_part), None)
            if grow is None or not grow[2].isdigit():
                raise SpecError(f"unable to find group {group_part}: no matching entries in group file")
            gid = int(grow[2])
    return User(uid, gid, name)


def additional_gids(rootfs: Path, user: User) -> list[int]:
    """Gids of the /etc/group groups listing the user as a member (its primary group excluded)."""
    if not user.name:
        return []
    out = []
    for r in _read_db(rootfs, "/etc/group") or []:
        if len(r) < 4 or not r[2].isdigit() or r[0] == user.name:
            continue
        if user.name in [m.strip() for m in r[3].split(",")]:
            out.append(int(r[2]))
    return out


def user_string(sc: Any, image_user: str) -> str:
    """containerd's generateUserString: CRI run_as_username / run_as_user / run_as_group, else the
    image's User."""
    userstr = groupstr = ""
    if _has(sc, "run_as_user"):
        userstr = str(sc.run_as_user.value)
    if sc.run_as_username:
        userstr = sc.run_as_username
    if _has(sc, "run_as_group"):
        groupstr = str(sc.run_as_group.value)
    if not userstr:
        if groupstr:
            raise SpecError(f"user group {groupstr!r} is specified without user")
        return image_user or ""
    return f"{userstr}:{groupstr}" if groupstr else userstr


# ---------------------------------------------------------------------------- capabilities

def known_caps() -> list[str]:
    """Capabilities this kernel knows."""
    try:
        last = int(Path("/proc/sys/kernel/cap_last_cap").read_text())
    except (OSError, ValueError):
        last = len(CAP_NAMES) - 1
    return CAP_NAMES[: last + 1]


def current_caps() -> list[str]:
    """The runtime's bounding set: what a privileged container gets."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("CapBnd:"):
                mask = int(line.split()[1], 16)
                return [n for i, n in enumerate(CAP_NAMES) if mask >> i & 1]
    except OSError:
        pass
    return known_caps()


def _cap_name(c: str) -> str:
    c = c.strip().upper()
    return c if c.startswith("CAP_") else "CAP_" + c


def capabilities(add: Iterable[str], drop: Iterable[str], all_caps: list[str] | None = None) -> list[str]:
    add, drop = list(add), list(drop)
    caps = list(DEFAULT_CAPS)
    if any(c.upper() == "ALL" for c in add):
        caps = list(all_caps if all_caps is not None else known_caps())
    if any(c.upper() == "ALL" for c in drop):
        caps = []
    for c in add:
        if c.upper() != "ALL" and _cap_name(c) not in caps:
            caps.append(_cap_name(c))
    dropped = {_cap_name(c) for c in drop if c.upper() != "ALL"}
    return [c for c in caps if c not in dropped]


# ---------------------------------------------------------------------------- mounts and devices

def _default_mounts(privileged: bool) -> list[dict[str, Any]]:
    return [
        {"destination": "/proc", "type": "proc", "source": "proc", "options": ["nosuid", "noexec", "nodev"]},
        {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
         "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
        {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
         "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]},
        {"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
         "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]},
        {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue", "options": ["nosuid", "noexec", "nodev"]},
        {"destination": "/sys", "type": "sysfs", "source": "sysfs",
         "options": ["nosuid", "noexec", "nodev"] + ([] if privileged else ["ro"])},
        {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
         "options": ["nosuid", "noexec", "nodev", "relatime"] + ([] if privileged else ["ro"])},
    ]


@dataclass
class _Mount:
    container_path: str
    host_path: str
    readonly: bool = False
    propagation: int = PROPAGATION_PRIVATE
    recursive_read_only: bool = False


def _clean(p: str) -> str:
    return os.path.normpath(p) if p else p


def _bind_mounts(mounts: list[_Mount], mount_lookup: Callable[[Path], tuple[str, str]]
                 ) -> tuple[list[dict[str, Any]], str]:
    """OCI bind mounts for CRI mounts, and the rootfs propagation they need ("" = runc's default)."""
    out, rootfs_prop = [], ""
    for m in sorted(mounts, key=lambda m: len(_clean(m.container_path).split("/"))):
        if not m.container_path.startswith("/"):
            raise SpecError(f"mount container_path {m.container_path!r} must be absolute")
        if not m.host_path:
            raise SpecError(f"mount {m.container_path!r} has no host_path")
        src = m.host_path
        if not os.path.lexists(src):
            try:
                os.makedirs(src, 0o755, exist_ok=True)
            except OSError as e:
                raise SpecError(f"failed to mkdir {src!r} for mount {m.container_path!r}: {e.strerror}") from None
        src = os.path.realpath(src)
        opts = ["rbind"]
        if m.propagation == PROPAGATION_BIDIRECTIONAL:
            mp, prop = mount_lookup(Path(src))
            if "shared:" not in prop:
                raise SpecError(f"path {src!r} is mounted on {mp!r} but it is not a shared mount")
            opts.append("rshared")
            rootfs_prop = "rshared"
        elif m.propagation == PROPAGATION_HOST_TO_CONTAINER:
            mp, prop = mount_lookup(Path(src))
            if "shared:" not in prop and "master:" not in prop:
                raise SpecError(f"path {src!r} is mounted on {mp!r} but it is not a shared or slave mount")
            opts.append("rslave")
            if rootfs_prop != "rshared":
                rootfs_prop = "rslave"
        else:
            opts.append("rprivate")
        if m.recursive_read_only:
            if not m.readonly or m.propagation != PROPAGATION_PRIVATE:
                raise SpecError(f"mount {m.container_path!r}: recursive_read_only needs readonly and "
                                f"private propagation")
            opts.append("rro")
        opts.append("ro" if m.readonly else "rw")
        out.append({"destination": m.container_path, "type": "bind", "source": src, "options": opts})
    return out, rootfs_prop


def _device_entry(host_path: str, container_path: str) -> dict[str, Any]:
    real = os.path.realpath(host_path)
    try:
        st = os.stat(real)
    except OSError as e:
        raise SpecError(f"device {host_path!r}: {e.strerror}") from None
    if stat.S_ISCHR(st.st_mode):
        kind = "c"
    elif stat.S_ISBLK(st.st_mode):
        kind = "b"
    else:
        raise SpecError(f"device {host_path!r} is not a device node")
    return {"path": container_path, "type": kind, "major": os.major(st.st_rdev), "minor": os.minor(st.st_rdev),
            "fileMode": stat.S_IMODE(st.st_mode), "uid": st.st_uid, "gid": st.st_gid}


_SKIP_DEV_DIRS = {"pts", "shm", "fd", "mqueue", ".lxc", ".lxd-mounts", ".udev"}


def host_devices(dev: str = "/dev") -> list[dict[str, Any]]:
    """Every char and block device of the host (what a privileged container gets), as runc lists them."""
    out = []
    for root, dirs, files in os.walk(dev):
        if root == dev:
            dirs[:] = [d for d in dirs if d not in _SKIP_DEV_DIRS]
        for name in sorted(files):
            path = os.path.join(root, name)
            if path == "/dev/console":
                continue
            try:
                st = os.lstat(path)
            except OSError:
                continue
            if stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
                out.append({"path": path, "type": "c" if stat.S_ISCHR(st.st_mode) else "b",
                            "major": os.major(st.st_rdev), "minor": os.minor(st.st_rdev),
                            "fileMode": stat.S_IMODE(st.st_mode), "uid": st.st_uid, "gid": st.st_gid})
    return out


# ---------------------------------------------------------------------------- resources

def own_oom_score_adj() -> int:
    try:
        return int(Path("/proc/self/oom_score_adj").read_text())
    except (OSError, ValueError):
        return 0


def linux_resources(res: Any, oom_score_adj_floor: int | None = None, *, swap_available: bool | None = None,
                    hugetlb_available: bool | None = None, cgroup_v2: bool | None = None,
                    pids_limit: int | None = None) -> dict[str, Any]:
    """CRI LinuxContainerResources as OCI linux.resources (also what `runc update` takes).
    The oom score is not a cgroup resource: see oom_score_adj()."""
    out: dict[str, Any] = {}
    if res is None:
        return out
    cpu: dict[str, Any] = {}
    if res.cpu_shares:
        cpu["shares"] = res.cpu_shares
    if res.cpu_quota:
        cpu["quota"] = res.cpu_quota
    if res.cpu_period:
        cpu["period"] = res.cpu_period
    if res.cpuset_cpus:
        cpu["cpus"] = res.cpuset_cpus
    if res.cpuset_mems:
        cpu["mems"] = res.cpuset_mems
    if cpu:
        out["cpu"] = cpu
    mem: dict[str, Any] = {}
    if res.memory_limit_in_bytes:
        mem["limit"] = res.memory_limit_in_bytes
    swap = getattr(res, "memory_swap_limit_in_bytes", 0)
    if swap and (swap_available if swap_available is not None else cgroups.swap_available()):
        mem["swap"] = swap
    if mem:
        out["memory"] = mem
    if pids_limit:
        out["pids"] = {"limit": pids_limit}
    if res.hugepage_limits and (hugetlb_available if hugetlb_available is not None else cgroups.hugetlb_available()):
        out["hugepageLimits"] = [{"pageSize": h.page_size, "limit": h.limit} for h in res.hugepage_limits]
    if res.unified:
        if not (cgroup_v2 if cgroup_v2 is not None else cgroups.version() == 2):
            raise SpecError("resources.unified needs cgroup v2; this host runs cgroup v1")
        out["unified"] = dict(res.unified)
    return out


def oom_score_adj(value: int, floor: int | None = None) -> int:
    """The score to request: never below the runtime's own (which it could not lower)."""
    return max(value, own_oom_score_adj() if floor is None else floor)


# ---------------------------------------------------------------------------- seccomp

def _seccomp_profile(sc: Any) -> tuple[int, str] | None:
    """(profile type, localhost ref) from the security context, or None (no profile)."""
    if _has(sc, "seccomp"):
        return sc.seccomp.profile_type, sc.seccomp.localhost_ref
    path = getattr(sc, "seccomp_profile_path", "")
    if not path:
        return None
    if path in ("runtime/default", "docker/default"):
        return PROFILE_RUNTIME_DEFAULT, ""
    if path == "unconfined":
        return PROFILE_UNCONFINED, ""
    if path.startswith("localhost/"):
        return PROFILE_LOCALHOST, path[len("localhost/"):]
    raise SpecError(f"invalid seccomp profile {path!r}")


def seccomp_for(sc: Any, caps: list[str], privileged: bool) -> dict[str, Any] | None:
    if privileged:
        return None
    prof = _seccomp_profile(sc)
    if prof is None:
        return None
    kind, ref = prof
    if kind != PROFILE_LOCALHOST and ref:
        raise SpecError("seccomp config invalid: localhost_ref must only be set if profile_type is Localhost")
    if kind == PROFILE_UNCONFINED:
        return None
    if kind == PROFILE_RUNTIME_DEFAULT:
        return seccomp.default_profile(caps)
    if kind == PROFILE_LOCALHOST:
        ref = ref[len("localhost/"):] if ref.startswith("localhost/") else ref
        if not ref:
            raise SpecError("seccomp profile Localhost needs a localhost_ref")
        try:
            return seccomp.load_profile(ref)
        except seccomp.SeccompError as e:
            raise SpecError(str(e)) from None
    raise SpecError(f"unknown seccomp profile type {kind}")


# ---------------------------------------------------------------------------- the spec

def _cri_mounts(config: Any) -> list[_Mount]:
    return [_Mount(m.container_path, m.host_path, m.readonly, m.propagation,
                   bool(getattr(m, "recursive_read_only", False))) for m in config.mounts]


def _sandbox_mounts(sandbox: SandboxInfo, cri_paths: set[str], readonly_rootfs: bool) -> list[_Mount]:
    extra = []
    if "/etc/hostname" not in cri_paths and sandbox.hostname_file and os.path.exists(sandbox.hostname_file):
        extra.append(_Mount("/etc/hostname", sandbox.hostname_file, readonly_rootfs))
    if "/etc/hosts" not in cri_paths and sandbox.hosts_file:
        extra.append(_Mount("/etc/hosts", sandbox.hosts_file, readonly_rootfs))
    if "/etc/resolv.conf" not in cri_paths and sandbox.resolv_file:
        extra.append(_Mount("/etc/resolv.conf", sandbox.resolv_file, readonly_rootfs))
    if "/dev/shm" not in cri_paths:
        if sandbox.shm:
            extra.append(_Mount("/dev/shm", sandbox.shm, False))
        elif not sandbox.ipc:
            extra.append(_Mount("/dev/shm", "/dev/shm", False))     # host IPC: the host's /dev/shm
    return extra


def build_spec(image_config: Mapping[str, Any] | None, config: Any, sandbox: SandboxInfo, rootfs: Path | str,
               *, container_id: str = "", cgroups_path: str | None = None, image_name: str | None = None,
               oom_score_adj_floor: int | None = None, pids_limit: int | None = None, target_pid_ns: str = "",
               cgroup_v2: bool | None = None, swap_available: bool | None = None,
               hugetlb_available: bool | None = None, host_caps: list[str] | None = None,
               mount_lookup: Callable[[Path], tuple[str, str]] = mount_of,
               hostname: str | None = None) -> dict[str, Any]:
    """The OCI runtime spec (config.json) of a CRI container.

    image_config: the image's config JSON (whole blob or its "config" object); config: the CRI
    ContainerConfig; rootfs: the mounted root filesystem (also read for /etc/passwd and /etc/group);
    cgroups_path: linux.cgroupsPath (default: the sandbox's cgroup parent + container_id)."""
    rootfs = Path(rootfs)
    icfg = _image_cfg(image_config)
    sconfig = sandbox.config
    sc = config.linux.security_context
    privileged = bool(sc.privileged)
    if privileged and not sconfig.linux.security_context.privileged:
        raise SpecError("no privileged container allowed in sandbox")
    readonly_rootfs = bool(sc.readonly_rootfs)

    # process
    argv = process_args(icfg, config.command, config.args)
    host = hostname or sconfig.hostname or socket.gethostname()
    env = merge_env([DEFAULT_PATH_ENV], [f"HOSTNAME={host}"])
    env = merge_env(env, list(icfg.get("Env") or []) + [f"{kv.key}={kv.value}" for kv in config.envs])
    cwd = config.working_dir or icfg.get("WorkingDir") or "/"
    userstr = user_string(sc, str(icfg.get("User") or ""))
    user = resolve_user(rootfs, userstr)
    gids = set(int(g) for g in sc.supplemental_groups)
    gids.add(user.gid)
    if getattr(sc, "supplemental_groups_policy", 0) != SUPPLEMENTAL_GROUPS_STRICT:
        gids.update(additional_gids(rootfs, user))
    if privileged:
        caps = list(host_caps if host_caps is not None else current_caps())
    elif _has(sc, "capabilities"):
        caps = capabilities(sc.capabilities.add_capabilities, sc.capabilities.drop_capabilities)
    else:
        caps = list(DEFAULT_CAPS)
    process: dict[str, Any] = {
        "terminal": bool(config.tty),
        "user": {"uid": user.uid, "gid": user.gid, "additionalGids": sorted(gids)},
        "args": argv,
        "env": env,
        "cwd": cwd,
        "capabilities": {"bounding": caps, "effective": list(caps), "permitted": list(caps)},
        "noNewPrivileges": bool(sc.no_new_privs),
    }
    if _has(config.linux, "resources"):
        process["oomScoreAdj"] = oom_score_adj(config.linux.resources.oom_score_adj, oom_score_adj_floor)

    # mounts
    cri = _cri_mounts(config)
    cri_paths = {_clean(m.container_path) for m in cri}
    extra = [m for m in _sandbox_mounts(sandbox, cri_paths, readonly_rootfs) if _clean(m.container_path) not in cri_paths]
    binds, rootfs_propagation = _bind_mounts(cri + extra, mount_lookup)
    bound = {_clean(m["destination"]) for m in binds}
    mounts = [m for m in _default_mounts(privileged)
              if m["destination"] not in bound and not ("/dev" in bound and m["destination"].startswith("/dev/"))]
    mounts += binds

    # namespaces
    namespaces: list[dict[str, str]] = []
    pid_mode = sc.namespace_options.pid if _has(sc, "namespace_options") else NS_POD
    if pid_mode == NS_CONTAINER or (pid_mode == NS_POD and not sandbox.pid_ns):
        namespaces.append({"type": "pid"})
    elif pid_mode == NS_POD:
        namespaces.append({"type": "pid", "path": sandbox.pid_ns})
    elif pid_mode == NS_TARGET:
        if not target_pid_ns:
            raise SpecError("namespace_options.pid is TARGET but no target container pid namespace was given")
        namespaces.append({"type": "pid", "path": target_pid_ns})
    for kind, path in (("network", sandbox.netns), ("ipc", sandbox.ipc), ("uts", sandbox.uts)):
        if path:
            namespaces.append({"type": kind, "path": path})
    namespaces.append({"type": "mount"})
    v2 = cgroup_v2 if cgroup_v2 is not None else cgroups.version() == 2
    if v2 and not privileged:
        namespaces.append({"type": "cgroup"})

    # resources and devices
    resources = linux_resources(config.linux.resources if _has(config.linux, "resources") else None,
                                swap_available=swap_available, hugetlb_available=hugetlb_available,
                                cgroup_v2=v2, pids_limit=pids_limit)
    if pids_limit and "pids" not in resources:
        resources["pids"] = {"limit": pids_limit}
    devices: list[dict[str, Any]] = []
    if privileged:
        devices = host_devices()
        resources["devices"] = [{"allow": True, "access": "rwm"}]
    else:
        rules: list[dict[str, Any]] = [{"allow": False, "access": "rwm"}]
        for d in config.devices:
            entry = _device_entry(d.host_path, d.container_path)
            devices = [x for x in devices if x["path"] != entry["path"]] + [entry]
            rules.append({"allow": True, "type": entry["type"], "major": entry["major"], "minor": entry["minor"],
                          "access": d.permissions or "rwm"})
        resources["devices"] = rules

    md, smd = config.metadata, sconfig.metadata
    annotations = {
        ANNOTATION_CONTAINER_TYPE: "container",
        ANNOTATION_SANDBOX_ID: sandbox.id,
        ANNOTATION_SANDBOX_NAMESPACE: smd.namespace,
        ANNOTATION_SANDBOX_UID: smd.uid,
        ANNOTATION_SANDBOX_NAME: smd.name,
        ANNOTATION_CONTAINER_NAME: md.name,
        ANNOTATION_IMAGE_NAME: image_name if image_name is not None else config.image.image,
    }

    linux: dict[str, Any] = {
        "resources": resources,
        "cgroupsPath": cgroups_path if cgroups_path is not None else
        cgroups.container_path(sconfig.linux.cgroup_parent, container_id),
        "namespaces": namespaces,
    }
    if devices:
        linux["devices"] = devices
    sysctls = dict(sconfig.linux.sysctls)
    if sysctls:
        linux["sysctl"] = sysctls
    if not privileged:
        linux["maskedPaths"] = list(sc.masked_paths) or list(DEFAULT_MASKED_PATHS)
        linux["readonlyPaths"] = list(sc.readonly_paths) or list(DEFAULT_READONLY_PATHS)
    prof = seccomp_for(sc, caps, privileged)
    if prof is not None:
        linux["seccomp"] = prof
    if rootfs_propagation:
        linux["rootfsPropagation"] = rootfs_propagation

    return {
        "ociVersion": OCI_VERSION,
        "process": process,
        "root": {"path": str(rootfs), "readonly": readonly_rootfs},
        "mounts": mounts,
        "annotations": annotations,
        "linux": linux,
    }


def exec_process(spec: Mapping[str, Any], cmd: Iterable[str], tty: bool = False) -> dict[str, Any]:
    """The process of an exec in a container (ExecSync, Exec): the container's own process (user,
    env, cwd, capabilities, no_new_privs, ...) running cmd instead."""
    cmd = list(cmd)
    if not cmd:
        raise SpecError("cmd must not be empty")
    process = copy.deepcopy(dict(spec.get("process") or {}))
    process["args"] = cmd
    process["terminal"] = bool(tty)
    process.pop("consoleSize", None)
    process.setdefault("cwd", "/")
    process.setdefault("user", {"uid": 0, "gid": 0})
    return process


def stop_signal(image_config: Mapping[str, Any] | None, config: Any) -> str:
    """The signal StopContainer sends first: the CRI's stop_signal, else the image's StopSignal,
    else SIGTERM; as a name ("SIGTERM")."""
    import signal as _signal

    value = getattr(config, "stop_signal", 0)
    if value:
        try:
            name = type(config).DESCRIPTOR.fields_by_name["stop_signal"].enum_type.values_by_number[value].name
            if name.startswith("SIG"):
                return name
        except (AttributeError, KeyError):
            pass
    s = str(_image_cfg(image_config).get("StopSignal") or "").strip().upper()
    if s:
        try:
            if s.isdigit():
                return _signal.Signals(int(s)).name
            name = s if s.startswith("SIG") else "SIG" + s
            _signal.Signals[name]
            return name
        except (KeyError, ValueError):
            raise SpecError(f"invalid StopSignal {s!r} in the image config") from None
    return "SIGTERM"
