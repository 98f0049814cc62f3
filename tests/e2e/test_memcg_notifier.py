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
HOG = "import sys, time; b = b'x' * (64 << 20); sys.stdout.write('ok'); sys.stdout.flush(); time.sleep(60)"


def test_usage_crossing_the_level_wakes_the_notifier() -> None:
    d = cgroups.controller_dir("memory", f"/kubelab-test-memcg-{os.getpid()}")
    assert d is not None
    d.mkdir()
    try:
        asyncio.run(_scenario(d))
    finally:
        d.rmdir()
    assert not d.exists()


async def _scenario(d: Path) -> None:
    crossed = asyncio.Event()
    usage = int((d / "memory.usage_in_bytes").read_text())
    notifier = CgroupNotifier(d, usage + 32 * Mi, crossed.set)
    try:
        await asyncio.sleep(0.5)
        assert not crossed.is_set(), "fired before usage reached the level"
        procs = d / "cgroup.procs"
        hog = await asyncio.create_subprocess_exec(
            sys.executable, "-c", HOG, stdout=subprocess.PIPE,
            preexec_fn=lambda: procs.write_text(str(os.getpid())))
        try:
            assert await asyncio.wait_for(hog.stdout.read(2), 30) == b"ok"
            assert int((d / "memory.usage_in_bytes").read_text()) > usage + 32 * Mi
            await asyncio.wait_for(crossed.wait(), 5)
        finally:
            hog.kill()
            await hog.wait()
    finally:
        notifier.close()
    fds = {os.readlink(f"/proc/self/fd/{fd}") for fd in os.listdir("/proc/self/fd")
           if os.path.exists(f"/proc/self/fd/{fd}")}
    assert not any(str(d) in f or "eventfd" in f for f in fds), fds


def test_a_missing_cgroup_is_a_clear_error() -> None:
    from kubelab.kubelet.eviction.notifier import NotifierError

    async def go() -> None:
        with pytest.raises(NotifierError, match=r"open .*memory\.usage_in_bytes: No such file or directory"):
            CgroupNotifier(Path("/sys/fs/cgroup/memory/kubelab-no-such-cgroup"), 1 << 30, lambda: None)
    asyncio.run(go())
