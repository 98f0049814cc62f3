"""Memory threshold notifications (--kernel-memcg-notification; upstream's memory_threshold_notifier.go
and threshold_notifier_linux.go): instead of waiting for the next 10 s round, the eviction manager
looks at once when the kernel says a memory cgroup's usage crossed the level at which a memory
threshold would be met.

cgroup v1 only, as upstream: an eventfd registered through the cgroup's cgroup.event_control on its
memory.usage_in_bytes fires when usage crosses the value. memory.available watches the root memory
cgroup, allocatableMemory.available the pods' cgroup (<cgroup root>/kubepods). The value is set
where the working set reaches capacity minus the threshold: usage counts inactive file pages the
working set leaves out, so they are added back, and it is recomputed from every Summary (the
eviction manager's own observation of the signal gives the capacity).
"""
from __future__ import annotations

import asyncio
import logging
import os
from pathlib import Path
from typing import Any, Callable, Mapping

from kubelab.cri.runtime import cgroups

from .thresholds import ALLOCATABLE_MEMORY_AVAILABLE, MEMORY_AVAILABLE, Observation, Threshold

log = logging.getLogger(__name__)

USAGE_FILE = "memory.usage_in_bytes"


class NotifierError(Exception):
    pass


def memcg_threshold(threshold: Threshold, usage: int, working_set: int, capacity: int) -> int:
    """The memory.usage_in_bytes at which the working set reaches capacity minus the threshold."""
    return capacity - threshold.value.amount(capacity) + max(0, usage - working_set)


class CgroupNotifier:
    """One eventfd on a cgroup's memory usage: on_cross runs (in the event loop) each time usage
    crosses `value`, either way, as the kernel reports it."""

    def __init__(self, mem_dir: Path, value: int, on_cross: Callable[[], None]) -> None:
        self.mem_dir, self.value = mem_dir, value
        self._on_cross = on_cross
        try:
            self._efd = os.eventfd(0, os.EFD_CLOEXEC | os.EFD_NONBLOCK)
        except OSError as e:
            raise NotifierError(f"eventfd: {e.strerror}") from None
        try:
            self._usage = os.open(mem_dir / USAGE_FILE, os.O_RDONLY | os.O_CLOEXEC)
        except OSError as e:
            os.close(self._efd)
            raise NotifierError(f"open {mem_dir / USAGE_FILE}: {e.strerror}") from None
        try:
            with open(mem_dir / "cgroup.event_control", "w") as f:
                f.write(f"{self._efd} {self._usage} {value}")
        except OSError as e:
            self._close_fds()
            raise NotifierError(f"write {mem_dir / 'cgroup.event_control'}: {e.strerror}") from None
        self._loop = asyncio.get_running_loop()
        self._loop.add_reader(self._efd, self._ready)

    def _ready(self) -> None:
        try:
            os.eventfd_read(self._efd)
        except BlockingIOError:
            return
        self._on_cross()

    def _close_fds(self) -> None:
        os.close(self._usage)
        os.close(self._efd)         # closing the eventfd ends the kernel's registration

    def close(self) -> None:
        self._loop.remove_reader(self._efd)
        self._close_fds()


class MemoryThresholdNotifier:
    """Keeps a CgroupNotifier at the usage that meets one memory threshold."""

    def __init__(self, threshold: Threshold, pods_cgroup: str, on_cross: Callable[[str], None]) -> None:
        if threshold.signal not in (MEMORY_AVAILABLE, ALLOCATABLE_MEMORY_AVAILABLE):
            raise NotifierError(f"no memory threshold notifier for {threshold.signal}")
        if cgroups.version() == 2:
            raise NotifierError("memory threshold notifications need cgroup v1's cgroup.event_control")
        allocatable = threshold.signal == ALLOCATABLE_MEMORY_AVAILABLE
        d = cgroups.controller_dir("memory", pods_cgroup if allocatable else "/")
        if d is None:
            raise NotifierError("memory cgroup mount point not found")
        self.threshold, self.mem_dir = threshold, d
        self._on_cross = on_cross
        self.notifier: CgroupNotifier | None = None

    def description(self) -> str:
        """As upstream names it in its log line."""
        hard = "hard" if self.threshold.hard else "soft"
        allocatable = "allocatable " if self.threshold.signal == ALLOCATABLE_MEMORY_AVAILABLE else ""
        return f"{hard} {allocatable}memory eviction threshold"

    def update(self, mem: Mapping[str, Any], observed: Observation | None) -> None:
        """Move the notification to where the threshold lies now: `mem` is the memory stats the signal
        is read from (thresholds.memory_stats), `observed` the signal's observation with its capacity.
        NotifierError if they lack what that needs, or the kernel refuses."""
        if observed is None or not observed.capacity or "usageBytes" not in mem or "workingSetBytes" not in mem:
            raise NotifierError(f"summary was incomplete for {self.threshold.signal}: {dict(mem)}")
        value = memcg_threshold(self.threshold, mem["usageBytes"], mem["workingSetBytes"], observed.capacity)
        if value <= 0 or (self.notifier is not None and self.notifier.value == value):
            return
        first = self.notifier is None
        self.stop()
        (log.info if first else log.debug)("eviction manager: setting notification threshold %s: %s at %d",
                                            self.threshold.signal, self.mem_dir / USAGE_FILE, value)
        self.notifier = CgroupNotifier(self.mem_dir, value, lambda: self._on_cross(self.description()))

    def stop(self) -> None:
        if self.notifier is not None:
            self.notifier.close()
            self.notifier = None
