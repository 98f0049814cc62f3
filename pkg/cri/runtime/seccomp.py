"""Seccomp profiles for OCI specs: the runtime's default profile and Localhost profile files.

The default (RuntimeDefault) profile is a deny-list: every syscall is allowed except those that
Docker's and containerd's default allow-list profiles leave out for a container without extra
capabilities; each denied call fails with EPERM (clone3 with ENOSYS, so libcs fall back to clone,
whose namespace flags are then checked). A deny-list was chosen over copying the ~350-entry
allow-list: it blocks the same dangerous calls (kernel modules, kexec, mount, namespaces, keyring,
bpf, perf, ptrace-style memory access, clock setting, reboot, swap, ...), it cannot break a
workload with a syscall newer than the list, and it is short enough to review. Syscalls that a
capability makes legitimate (mount with CAP_SYS_ADMIN, ptrace with CAP_SYS_PTRACE, ...) are
allowed when the container has that capability, as in Docker's profile.
"""
from __future__ import annotations

import json
import platform
from pathlib import Path
from typing import Any, Iterable

EPERM, ENOSYS = 1, 38

# syscall -> capabilities any of which makes it allowed ("" = never allowed by default)
_DENIED: dict[str, tuple[str, ...]] = {
    "acct": ("CAP_SYS_PACCT",),
    "add_key": (),
    "bpf": ("CAP_SYS_ADMIN", "CAP_BPF"),
    "clock_adjtime": ("CAP_SYS_TIME",),
    "clock_settime": ("CAP_SYS_TIME",),
    "create_module": ("CAP_SYS_MODULE",),
    "delete_module": ("CAP_SYS_MODULE",),
    "finit_module": ("CAP_SYS_MODULE",),
    "fsconfig": ("CAP_SYS_ADMIN",),
    "fsmount": ("CAP_SYS_ADMIN",),
    "fsopen": ("CAP_SYS_ADMIN",),
    "fspick": ("CAP_SYS_ADMIN",),
    "get_kernel_syms": ("CAP_SYS_MODULE",),
    "get_mempolicy": ("CAP_SYS_NICE",),
    "init_module": ("CAP_SYS_MODULE",),
    "ioperm": ("CAP_SYS_RAWIO",),
    "iopl": ("CAP_SYS_RAWIO",),
    "kcmp": ("CAP_SYS_PTRACE",),
    "kexec_file_load": ("CAP_SYS_BOOT",),
    "kexec_load": ("CAP_SYS_BOOT",),
    "keyctl": (),
    "lookup_dcookie": ("CAP_SYS_ADMIN",),
    "mbind": ("CAP_SYS_NICE",),
    "mount": ("CAP_SYS_ADMIN",),
    "mount_setattr": ("CAP_SYS_ADMIN",),
    "move_mount": ("CAP_SYS_ADMIN",),
    "move_pages": ("CAP_SYS_NICE",),
    "name_to_handle_at": ("CAP_DAC_READ_SEARCH",),
    "nfsservctl": (),
    "open_by_handle_at": ("CAP_DAC_READ_SEARCH",),
    "open_tree": ("CAP_SYS_ADMIN",),
    "perf_event_open": ("CAP_SYS_ADMIN", "CAP_PERFMON"),
    "pivot_root": ("CAP_SYS_ADMIN",),
    "process_vm_readv": ("CAP_SYS_PTRACE",),
    "process_vm_writev": ("CAP_SYS_PTRACE",),
    "ptrace": ("CAP_SYS_PTRACE",),
    "query_module": ("CAP_SYS_MODULE",),
    "quotactl": ("CAP_SYS_ADMIN",),
    "quotactl_fd": ("CAP_SYS_ADMIN",),
    "reboot": ("CAP_SYS_BOOT",),
    "request_key": (),
    "set_mempolicy": ("CAP_SYS_NICE",),
    "setdomainname": ("CAP_SYS_ADMIN",),
    "sethostname": ("CAP_SYS_ADMIN",),
    "setns": ("CAP_SYS_ADMIN",),
    "settimeofday": ("CAP_SYS_TIME",),
    "stime": ("CAP_SYS_TIME",),
    "swapoff": ("CAP_SYS_ADMIN",),
    "swapon": ("CAP_SYS_ADMIN",),
    "syslog": ("CAP_SYSLOG",),
    "_sysctl": (),
    "sysfs": (),
    "umount": ("CAP_SYS_ADMIN",),
    "umount2": ("CAP_SYS_ADMIN",),
    "unshare": ("CAP_SYS_ADMIN",),
    "uselib": (),
    "userfaultfd": ("CAP_SYS_PTRACE",),
    "ustat": (),
    "vm86": (),
    "vm86old": (),
}

# clone flags that create namespaces: denied to clone() without CAP_SYS_ADMIN
_CLONE_NS_FLAGS = {
    "CLONE_NEWNS": 0x00020000, "CLONE_NEWCGROUP": 0x02000000, "CLONE_NEWUTS": 0x04000000,
    "CLONE_NEWIPC": 0x08000000, "CLONE_NEWUSER": 0x10000000, "CLONE_NEWPID": 0x20000000,
    "CLONE_NEWNET": 0x40000000, "CLONE_NEWTIME": 0x00000080,
}

_ARCHES = {
    "x86_64": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
    "aarch64": ["SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"],
    "arm64": ["SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"],
    "armv7l": ["SCMP_ARCH_ARM"],
    "ppc64le": ["SCMP_ARCH_PPC64LE"],
    "s390x": ["SCMP_ARCH_S390X", "SCMP_ARCH_S390"],
    "riscv64": ["SCMP_ARCH_RISCV64"],
}


class SeccompError(ValueError):
    """A profile could not be loaded or is invalid; str() is one line."""


def architectures(machine: str | None = None) -> list[str]:
    return list(_ARCHES.get(machine or platform.machine(), []))


def default_profile(capabilities: Iterable[str] = (), machine: str | None = None) -> dict[str, Any]:
    """The RuntimeDefault profile (OCI linux.seccomp) for a process with these capabilities."""
    caps = set(capabilities)
    denied = sorted(name for name, allow_caps in _DENIED.items() if not caps.intersection(allow_caps))
    syscalls: list[dict[str, Any]] = [{"names": denied, "action": "SCMP_ACT_ERRNO", "errnoRet": EPERM}]
    if "CAP_SYS_ADMIN" not in caps:
        syscalls.append({"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": ENOSYS})
        # clone's flags are its first argument on every architecture but s390 (second)
        index = 1 if (machine or platform.machine()).startswith("s390") else 0
        for flag in _CLONE_NS_FLAGS.values():
            syscalls.append({"names": ["clone"], "action": "SCMP_ACT_ERRNO", "errnoRet": EPERM,
                             "args": [{"index": index, "value": flag, "valueTwo": flag, "op": "SCMP_CMP_MASKED_EQ"}]})
    return {"defaultAction": "SCMP_ACT_ALLOW", "architectures": architectures(machine), "syscalls": syscalls}


_ARCH_NAMES = {"amd64": "SCMP_ARCH_X86_64", "arm64": "SCMP_ARCH_AARCH64"}


def load_profile(path: str | Path) -> dict[str, Any]:
    """A Localhost profile: an OCI linux.seccomp JSON file, or Docker's format (archMap, names)."""
    try:
        obj = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise SeccompError(f"seccomp profile {str(path)!r} does not exist") from None
    except OSError as e:
        raise SeccompError(f"cannot read seccomp profile {str(path)!r}: {e.strerror}") from None
    except ValueError as e:
        raise SeccompError(f"seccomp profile {str(path)!r} is not valid JSON: {e}") from None
    if not isinstance(obj, dict) or not isinstance(obj.get("defaultAction"), str):
        raise SeccompError(f"seccomp profile {str(path)!r} has no defaultAction")
    out: dict[str, Any] = {"defaultAction": obj["defaultAction"]}
    for key in ("defaultErrnoRet", "listenerPath", "listenerMetadata", "flags"):
        if key in obj:
            out[key] = obj[key]
    arches = list(obj.get("architectures") or [])
    machine = platform.machine()
    for entry in obj.get("archMap") or []:
        if entry.get("architecture") in architectures(machine)[:1]:
            arches = [entry["architecture"]] + list(entry.get("subArchitectures") or [])
    if arches:
        out["architectures"] = arches
    syscalls = []
    for sc in obj.get("syscalls") or []:
        names = sc.get("names") or ([sc["name"]] if sc.get("name") else [])
        if not names or not sc.get("action"):
            raise SeccompError(f"seccomp profile {str(path)!r}: a syscall rule needs names and an action")
        rule: dict[str, Any] = {"names": names, "action": sc["action"]}
        for key in ("errnoRet", "args"):
            if sc.get(key) is not None:
                rule[key] = sc[key]
        syscalls.append(rule)
    if syscalls:
        out["syscalls"] = syscalls
    return out
