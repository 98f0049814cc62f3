"""Pod namespaces pinned by bind mounts, as CRI-O's pinns does: no infra process holds them.

A short-lived thread unshare()s new network, UTS and IPC namespaces (they are per task, so one
thread may leave its process's), sets the hostname and brings lo up inside them, and bind-mounts
/proc/thread-self/ns/<kind> onto each pin file; when the thread ends, the bind mounts keep the
namespaces alive. A container joins them by path (linux.namespaces[].path in its OCI spec).
Unpinning is a lazy unmount and an unlink, and is idempotent. No process is forked for any of it.

Small netns jobs (reading interface counters, connecting a port-forward socket) run the same way,
in a thread that setns()es into the namespace (in_netns, run_in_netns).
"""
from __future__ import annotations

import asyncio
import ctypes
import fcntl
import os
import socket
import struct
import threading
from pathlib import Path
from typing import Callable, Iterable, Mapping, TypeVar

from kubelab import mounts

KINDS = ("net", "uts", "ipc")
CLONE_NEWNET, CLONE_NEWUTS, CLONE_NEWIPC = 0x40000000, 0x04000000, 0x08000000
FLAGS = {"net": CLONE_NEWNET, "uts": CLONE_NEWUTS, "ipc": CLONE_NEWIPC}
_libc = ctypes.CDLL(None, use_errno=True)

T = TypeVar("T")


class NamespaceError(RuntimeError):
    """A namespace could not be pinned or entered; str() is one line."""


async def pin(paths: Mapping[str, Path], hostname: str | None = None) -> None:
    """Create new namespaces of the given kinds ("net", "uts", "ipc") and pin each at its path.

    With a "uts" entry and a hostname, the new UTS namespace gets that hostname; a new network
    namespace gets its lo up. Files and parent dirs are created; a parent on a shared mount is
    first made a private bind mount of itself (as `ip netns` does for /run/netns) so the pins do
    not propagate to other mount namespaces. On failure nothing stays pinned.
    """
    unknown = set(paths) - set(KINDS)
    if unknown:
        raise ValueError(f"cannot pin namespaces of kind {sorted(unknown)}: only {', '.join(KINDS)}")
    if not paths:
        return
    for kind, path in paths.items():
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        await ensure_unshared(path.parent)
        if is_pinned(path):
            raise NamespaceError(f"cannot pin the {kind} namespace at {path}: something is already mounted there")
        path.touch(exist_ok=True)
    try:
        await asyncio.to_thread(_in_new_thread, lambda: _pin_here(paths, hostname))
    except OSError as e:
        await unpin(paths)
        raise NamespaceError(f"cannot pin namespaces {', '.join(paths)}: {e.strerror or e}") from None


def _pin_here(paths: Mapping[str, Path], hostname: str | None) -> None:
    """In a thread of its own: unshare, set up, and bind-mount this thread's new namespaces."""
    flags = 0
    for kind in paths:
        flags |= FLAGS[kind]
    if _libc.unshare(flags) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"unshare: {os.strerror(err)}")
    if "uts" in paths and hostname:
        name = hostname.encode()
        if _libc.sethostname(name, len(name)) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"sethostname {hostname!r}: {os.strerror(err)}")
    if "net" in paths:
        _lo_up()
    for kind, path in paths.items():
        mounts.mount(f"/proc/thread-self/ns/{kind}", str(path), None, mounts.MS_BIND)


def _in_new_thread(fn: Callable[[], T]) -> T:
    """Run fn in a thread made for it and ended after it: a thread whose namespaces changed must
    never run anything else."""
    result: list = []

    def target() -> None:
        try:
            result.append((True, fn()))
        except BaseException as e:  # noqa: BLE001 - handed to the caller's thread
            result.append((False, e))

    t = threading.Thread(target=target, name="namespaces", daemon=True)
    t.start()
    t.join()
    ok, value = result[0]
    if not ok:
        raise value
    return value


async def unpin(paths: Iterable[Path] | Mapping[str, Path]) -> None:
    """Unmount (lazily) and remove each pinned namespace file; missing or unpinned files are fine."""
    items = paths.values() if isinstance(paths, Mapping) else paths
    for path in items:
        p = str(path)
        for _ in range(8):            # a file pinned twice holds two mounts
            try:
                if not mounts.umount(p):
                    break
            except OSError as e:
                raise NamespaceError(f"cannot unmount namespace {p}: {e.strerror}") from None
        try:
            os.unlink(p)
        except FileNotFoundError:
            pass
        except IsADirectoryError:
            raise NamespaceError(f"cannot unpin {p}: it is a directory") from None


def is_pinned(path: Path) -> bool:
    """True if a namespace (nsfs) is bind-mounted on path."""
    try:
        st = os.stat(path)
        parent = os.stat(os.path.dirname(os.path.abspath(path)))
    except OSError:
        return False
    return st.st_dev != parent.st_dev


def _mountinfo() -> list[tuple[str, str]]:
    """(mount point, optional fields) of every mount of this process, in mount order."""
    out = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            left = line.split(" - ", 1)[0].split()
            mp = left[4].encode().decode("unicode_escape")
            out.append((mp, " ".join(left[6:])))
    return out


def mount_of(path: Path) -> tuple[str, str]:
    """The mount point holding path and its propagation fields ("shared:N", "master:N" or "")."""
    real = os.path.realpath(path)
    best = ("/", "")
    for mp, opt in _mountinfo():
        if (real == mp or real.startswith(mp.rstrip("/") + "/")) and len(mp) >= len(best[0]):
            best = (mp, opt)
    return best


_private_dirs: set[str] = set()     # dirs found (or made) private already: mountinfo is not read again


async def ensure_unshared(directory: Path) -> None:
    """Make sure mounts made in directory do not propagate: if its mount is shared, make the
    directory a private bind mount of itself (once; later calls find it private)."""
    if str(directory) in _private_dirs:
        return
    mp, opt = mount_of(directory)
    if "shared:" not in opt:
        _private_dirs.add(str(directory))
        return
    real = os.path.realpath(directory)
    try:
        if mp != real:
            mounts.mount(real, real, None, mounts.MS_BIND)
        mounts.mount("none", real, None, mounts.MS_PRIVATE)
    except OSError as e:
        raise NamespaceError(f"cannot make {real} a private mount: {e.strerror}") from None
    _private_dirs.add(str(directory))


def in_netns(netns: Path, fn: Callable[[], T]) -> T:
    """Run fn in a fresh thread that has joined the network namespace at netns (a socket fn makes
    stays in that namespace). Blocks the caller until fn returns; see run_in_netns for asyncio."""
    def enter_and_run() -> T:
        try:
            fd = os.open(netns, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            raise NamespaceError(f"network namespace {netns} does not exist") from None
        except OSError as e:
            raise NamespaceError(f"cannot open network namespace {netns}: {e.strerror}") from None
        try:
            if _libc.setns(fd, CLONE_NEWNET) != 0:
                err = ctypes.get_errno()
                raise NamespaceError(f"cannot enter network namespace {netns}: {os.strerror(err)}")
        finally:
            os.close(fd)
        return fn()
    return _in_new_thread(enter_and_run)


async def run_in_netns(netns: Path, fn: Callable[[], T]) -> T:
    """in_netns without blocking the event loop."""
    return await asyncio.to_thread(in_netns, netns, fn)


SIOCGIFFLAGS, SIOCSIFFLAGS, IFF_UP = 0x8913, 0x8914, 0x1


def _lo_up() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        ifr = struct.pack("16sH14x", b"lo", 0)
        flags = struct.unpack("16sH14x", fcntl.ioctl(s.fileno(), SIOCGIFFLAGS, ifr))[1]
        if not flags & IFF_UP:
            fcntl.ioctl(s.fileno(), SIOCSIFFLAGS, struct.pack("16sH14x", b"lo", flags | IFF_UP))


async def loopback_up(netns: Path) -> None:
    """Bring the loopback interface of the network namespace pinned at netns up."""
    await run_in_netns(Path(netns), _lo_up)


def _net_dev() -> list[tuple[str, int, int, int, int]]:
    out = []
    with open("/proc/thread-self/net/dev") as f:
        for line in f.readlines()[2:]:
            name, _, rest = line.partition(":")
            v = [int(x) for x in rest.split()]
            out.append((name.strip(), v[0], v[2], v[8], v[10]))
    return out


def interface_stats(netns: Path) -> list[tuple[str, int, int, int, int]]:
    """(name, rx_bytes, rx_errors, tx_bytes, tx_errors) of each interface but lo in the netns."""
    return [s for s in in_netns(Path(netns), _net_dev) if s[0] != "lo"]
