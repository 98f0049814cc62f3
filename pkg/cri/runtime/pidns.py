"""The holder of a pod's shared PID namespace: the part of pause that a bind mount cannot do.

A network, UTS or IPC namespace outlives its processes when pinned by a bind mount, but a PID
namespace whose init has exited accepts no new process. So a pod that shares its process
namespace (NamespaceMode POD for pid) gets a tiny init: PID 1 of a new PID namespace that reaps
orphans and exits on SIGTERM/SIGINT, as the pause container does for containerd. It runs in its
own session, detached from kubelab-cri, so a restart of the runtime leaves it (and the pod) alone.
Killing it kills every process of the namespace.
"""
from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

import psutil

from kubelab import proc

# Runs under the runtime's Python: unshare(CLONE_NEWPID), fork; the child is PID 1 of the new
# namespace, the parent prints the child's host pid and exits.
_HOLDER = r"""
import ctypes, os, signal, sys
CLONE_NEWPID = 0x20000000
libc = ctypes.CDLL(None, use_errno=True)
if libc.unshare(CLONE_NEWPID) != 0:
    e = ctypes.get_errno()
    sys.stderr.write("unshare(CLONE_NEWPID): %s\n" % os.strerror(e))
    sys.exit(1)
pid = os.fork()
if pid:
    sys.stdout.write("%d\n" % pid)
    sys.stdout.flush()
    os._exit(0)
os.setsid()
null = os.open(os.devnull, os.O_RDWR)
for fd in (0, 1, 2):
    os.dup2(null, fd)
os.closerange(3, 65536)
signal.signal(signal.SIGTERM, lambda *a: os._exit(0))
signal.signal(signal.SIGINT, lambda *a: os._exit(0))
signal.signal(signal.SIGHUP, signal.SIG_IGN)
while True:
    try:
        os.wait()
    except ChildProcessError:
        signal.pause()
    except InterruptedError:
        pass
"""


async def start(cgroup_procs: list[Path] = ()) -> int:
    """Start a holder and return its host pid; it is moved into the given cgroup.procs files."""
    res = await proc.run([sys.executable, "-I", "-c", _HOLDER], timeout=10)
    pid = int(res.stdout.split()[0])
    for f in cgroup_procs:
        try:
            f.write_text(str(pid))
        except OSError:
            pass
    return pid


def path(pid: int) -> str:
    return f"/proc/{pid}/ns/pid"


def alive(pid: int, started: float) -> bool:
    """Whether the holder still runs (and the pid was not reused: same start time)."""
    try:
        p = psutil.Process(pid)
        return abs(p.create_time() - started) < 1.0 and p.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def start_time(pid: int) -> float:
    try:
        return psutil.Process(pid).create_time()
    except psutil.Error:
        return 0.0


def stop(pid: int, started: float) -> None:
    """SIGKILL the holder, which takes every process of its namespace with it."""
    if pid and alive(pid, started):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
