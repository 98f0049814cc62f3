"""The eviction manager's memory threshold notifier (--kernel-memcg-notification) against the
kernel: an eventfd registered on a real memory cgroup fires when a process in it pushes usage past
the level, not before, and nothing of it stays behind."""
from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import pytest

from kubelab.cri.runtime import cgroups
from kubelab.kubelet.eviction.notifier import CgroupNotifier

pytestmark = [pytest.mark.e2e,
              pytest.mark.skipif(os.geteuid() != 0, reason="needs root to make a memory cgroup"),
              pytest.mark.skipif(cgroups.version() == 2,
                                 reason="memory threshold notifications are cgroup v1's cgroup.event_control; "
                                        "the kubelet logs that and keeps polling every 10 s on cgroup v2")]

Mi = 1 << 20
# it moves itself into the cgroup (no preexec_fn: this process may run gRPC's threads), then fills 64Mi
HOG = ("import os, sys, time; open(sys.argv[1], 'w').write(str(os.getpid())); b = b'x' * (64 << 20); "
       "sys.stdout.write('ok'); sys.stdout.flush(); time.sleep(60)")


def test_usage_crossing_the_level_wakes_the_notifier() -> None:
    d = cgroups.controller_dir("memory", f"/kubelab-test-memcg-{os.getpid()}")
    assert d is not None
    d.mkdir()
    try:
        asyncio.run(_scenario(d))
    finally:
        d.rmdir()
    assert not d.exists()


def _open_fds() -> dict[int, str]:
    out = {}
    for fd in os.listdir("/proc/self/fd"):
        try:
            out[int(fd)] = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            pass
    return out


async def _scenario(d: Path) -> None:
    before = _open_fds()
    crossed = asyncio.Event()
    usage = int((d / "memory.usage_in_bytes").read_text())
    notifier = CgroupNotifier(d, usage + 32 * Mi, crossed.set)
    try:
        await asyncio.sleep(0.5)
        assert not crossed.is_set(), "fired before usage reached the level"
        hog = await asyncio.create_subprocess_exec(sys.executable, "-c", HOG, str(d / "cgroup.procs"),
                                                   stdout=subprocess.PIPE)
        try:
            assert await asyncio.wait_for(hog.stdout.read(2), 30) == b"ok"
            assert int((d / "memory.usage_in_bytes").read_text()) > usage + 32 * Mi
            await asyncio.wait_for(crossed.wait(), 5)
        finally:
            hog.kill()
            await hog.wait()
    finally:
        notifier.close()
    # the notifier's eventfd and its open memory.usage_in_bytes are closed (other eventfds, e.g.
    # gRPC's from earlier tests in this process, are not the notifier's business)
    left = {fd: target for fd, target in _open_fds().items()
            if (str(d) in target or "eventfd" in target) and before.get(fd) != target}
    assert not left, left


def test_a_missing_cgroup_is_a_clear_error() -> None:
    from kubelab.kubelet.eviction.notifier import NotifierError

    async def go() -> None:
        with pytest.raises(NotifierError, match=r"open .*memory\.usage_in_bytes: No such file or directory"):
            CgroupNotifier(Path("/sys/fs/cgroup/memory/kubelab-no-such-cgroup"), 1 << 30, lambda: None)
    asyncio.run(go())
