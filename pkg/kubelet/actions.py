"""What the kubelet must do to a pod now (pure; upstream's kuberuntime_manager computePodActions and
the container restart backoff): from the pod's spec and what the runtime holds for it, whether to
kill everything and make a new sandbox, which init container runs next, which app containers to
start (or keep waiting in CrashLoopBackOff) and which to kill, and why.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from .runtimespec import container_hash

Obj = dict[str, Any]

BACKOFF_INITIAL, BACKOFF_MAX, BACKOFF_RESET = 10.0, 300.0, 600.0


@dataclass
class SandboxState:
    id: str
    attempt: int
    ready: bool
    created_at: float
    ip: str = ""
    ips: list[str] = field(default_factory=list)


@dataclass
class ContainerState:
    id: str
    name: str
    attempt: int
    state: str                       # created | running | exited | unknown
    created_at: float = 0.0
    started_at: float = 0.0
    finished_at: float = 0.0
    exit_code: int = 0
    reason: str = ""
    message: str = ""
    image: str = ""
    image_ref: str = ""
    hash: str = ""
    sandbox_id: str = ""


@dataclass
class PodRuntime:
    sandboxes: list[SandboxState] = field(default_factory=list)       # newest first
    containers: list[ContainerState] = field(default_factory=list)    # every attempt, any sandbox

    def latest(self, name: str) -> ContainerState | None:
        mine = [c for c in self.containers if c.name == name]
        return max(mine, key=lambda c: (c.attempt, c.created_at)) if mine else None

    def previous(self, name: str) -> ContainerState | None:
        mine = sorted((c for c in self.containers if c.name == name), key=lambda c: (c.attempt, c.created_at))
        return mine[-2] if len(mine) > 1 else None

    def running(self) -> list[ContainerState]:
        return [c for c in self.containers if c.state == "running"]


class Backoff:
    """Per container restart backoff: 10 s doubling to 5 minutes, reset after 10 minutes of running
    (upstream's flowcontrol.Backoff as the kubelet configures it)."""

    def __init__(self, clock=time.time) -> None:
        self.clock = clock
        self._e: dict[str, tuple[float, float]] = {}       # key -> (delay, finished_at it applies to)

    def in_backoff(self, key: str, finished_at: float) -> float:
        """Seconds left before a container that finished at finished_at may start again (0: now)."""
        e = self._e.get(key)
        if e is None:
            return 0.0
        delay, since = e
        return max(0.0, since + delay - self.clock())

    def delay(self, key: str) -> float:
        e = self._e.get(key)
        return e[0] if e else 0.0

    def next(self, key: str, finished_at: float, ran_for: float) -> None:
        """Record a restart of a container that finished at finished_at after running ran_for seconds."""
        e = self._e.get(key)
        if e is None or ran_for >= BACKOFF_RESET:
            self._e[key] = (BACKOFF_INITIAL, finished_at)
        elif e[1] != finished_at:
            self._e[key] = (min(e[0] * 2, BACKOFF_MAX), finished_at)

    def forget_pod(self, uid: str) -> None:
        for k in [k for k in self._e if k.startswith(uid + "/")]:
            del self._e[k]


@dataclass
class Actions:
    kill_pod: bool = False
    create_sandbox: bool = False
    attempt: int = 0
    sandbox_id: str = ""
    next_init: Obj | None = None
    start: list[Obj] = field(default_factory=list)
    kill: dict[str, str] = field(default_factory=dict)           # container id -> why
    backoff: dict[str, str] = field(default_factory=dict)        # container name -> CrashLoopBackOff message
    done: bool = False                                            # nothing will run again (phase final)


def _backoff_message(backoff: Backoff, key: str, name: str, pod: Obj) -> str:
    m = pod["metadata"]
    return (f"back-off {int(backoff.delay(key))}s restarting failed container={name} "
            f"pod={m['name']}_{m['namespace']}({m['uid']})")


def _should_restart(policy: str, c: ContainerState) -> bool:
    if policy == "Always":
        return True
    if policy == "OnFailure":
        return c.exit_code != 0
    return False


def compute(pod: Obj, rt: PodRuntime, backoff: Backoff, *, liveness_failed: set[str] = frozenset(),
            now: float | None = None) -> Actions:
    now = time.time() if now is None else now
    spec = pod.get("spec") or {}
    uid = pod["metadata"]["uid"]
    policy = spec.get("restartPolicy") or "Always"
    inits = list(spec.get("initContainers") or [])
    apps = list(spec.get("containers") or [])
    a = Actions()
    sb = rt.sandboxes[0] if rt.sandboxes else None
    if sb is None or not sb.ready:
        if sb is not None and policy == "Never" and all(
                (c := rt.latest(x["name"])) is not None and c.state == "exited" for x in apps):
            a.done = True                  # ran to completion; the sandbox stays down
            return a
        a.kill_pod = bool(rt.running()) or sb is not None
        a.create_sandbox = True
        a.attempt = sb.attempt + 1 if sb is not None else 0
        if inits:
            a.next_init = inits[0]
        else:
            a.start = [c for c in apps]
        return a
    a.sandbox_id = sb.id
    live = [c for c in rt.containers if c.sandbox_id == sb.id]
    current = PodRuntime([sb], live)
    # init containers, in order
    for ic in inits:
        st = current.latest(ic["name"])
        if st is None:
            a.next_init = ic
            return a
        if st.state in ("running", "created", "unknown"):
            return a                      # wait for it
        if st.exit_code == 0:
            continue
        if policy == "Never":
            a.done = True
            return a
        key = f"{uid}/{ic['name']}"
        if backoff.in_backoff(key, st.finished_at) > 0:
            a.backoff[ic["name"]] = _backoff_message(backoff, key, ic["name"], pod)
            return a
        a.next_init = ic
        return a
    for c in apps:
        st = current.latest(c["name"])
        if st is None:
            prev = rt.latest(c["name"])            # an earlier sandbox's container counts for Never/OnFailure
            if prev is not None and prev.state == "exited" and not _should_restart(policy, prev):
                continue
            a.start.append(c)
            continue
        if st.state == "running":
            if st.hash and st.hash != container_hash(c):
                a.kill[st.id] = f"Container {c['name']} definition changed, will be restarted"
                a.start.append(c)
            elif c["name"] in liveness_failed:
                a.kill[st.id] = f"Container {c['name']} failed liveness probe, will be restarted"
                a.start.append(c)
            continue
        if st.state in ("created", "unknown"):
            continue
        if not _should_restart(policy, st):
            continue
        key = f"{uid}/{c['name']}"
        if backoff.in_backoff(key, st.finished_at) > 0:
            a.backoff[c["name"]] = _backoff_message(backoff, key, c["name"], pod)
            continue
        a.start.append(c)
    if policy != "Always" and not a.start and not a.backoff and all(
            (s := current.latest(c["name"])) is not None and s.state == "exited" for c in apps):
        a.done = True
    return a
