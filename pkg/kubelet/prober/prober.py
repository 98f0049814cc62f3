"""One probe of one container, as upstream's pkg/kubelet/prober/prober.go: pick the handler of
the probe spec (exec, httpGet, tcpSocket, grpc), run it with timeoutSeconds, retry it up to 3
times while it *errors* (cannot be run at all), and turn the outcome into a result and events:

* failure: Warning "Unhealthy" "<Kind> probe failed: <output>";
* warning (an HTTP redirect to another host): Warning "ProbeWarning" "<Kind> probe warning:
  <output>", and the result is success;
* error: Warning "Unhealthy" "<Kind> probe errored and resulted in unknown state: <error>", and
  the result is thrown away by the worker (ProbeError is raised).

Events are about the pod with fieldPath ``spec.containers{<name>}`` (``spec.initContainers{...}``
for restartable init containers), like upstream's container references.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from kubelab.client.events import EVENT_TYPE_WARNING, EventRecorder

from ..expansion import expand_static
from .execprobe import ExecSync, probe_exec
from .grpcprobe import probe_grpc
from .httpprobe import build_request, probe_http
from .ports import resolve_container_port
from .results import Outcome, ProbeError, ProbeRun, Result
from .tcpprobe import probe_tcp

log = logging.getLogger(__name__)

LIVENESS, READINESS, STARTUP = "liveness", "readiness", "startup"
PROBE_KINDS = (LIVENESS, READINESS, STARTUP)
MAX_PROBE_RETRIES = 3

REASON_UNHEALTHY = "Unhealthy"        # events.ContainerUnhealthy
REASON_PROBE_WARNING = "ProbeWarning"  # events.ContainerProbeWarning

# the API's defaults (pkg/api/core/pods.py sets them on stored pods; static pods may lack them)
DEFAULT_TIMEOUT_SECONDS = 1
DEFAULT_PERIOD_SECONDS = 10
DEFAULT_SUCCESS_THRESHOLD = 1
DEFAULT_FAILURE_THRESHOLD = 3
MINIMUM_GRACE_PERIOD_SECONDS = 2


def probe_key(kind: str) -> str:
    """The container field of a probe kind: "liveness" -> "livenessProbe"."""
    return f"{kind}Probe"


def kind_title(kind: str) -> str:
    """probeType.String(): "Liveness", "Readiness", "Startup"."""
    return kind.capitalize()


@dataclass(frozen=True)
class ProbeTiming:
    """The timing fields of a probe, defaulted as the API does (non-positive values too)."""

    initial_delay: int = 0
    timeout: float = DEFAULT_TIMEOUT_SECONDS
    period: float = DEFAULT_PERIOD_SECONDS
    success_threshold: int = DEFAULT_SUCCESS_THRESHOLD
    failure_threshold: int = DEFAULT_FAILURE_THRESHOLD

    @classmethod
    def of(cls, spec: dict) -> "ProbeTiming":
        def num(key: str, default: float) -> Any:
            v = spec.get(key)
            return v if isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0 else default
        return cls(initial_delay=int(num("initialDelaySeconds", 0)),
                    timeout=num("timeoutSeconds", DEFAULT_TIMEOUT_SECONDS),
                    period=num("periodSeconds", DEFAULT_PERIOD_SECONDS),
                    success_threshold=int(num("successThreshold", DEFAULT_SUCCESS_THRESHOLD)),
                    failure_threshold=int(num("failureThreshold", DEFAULT_FAILURE_THRESHOLD)))


def find_container(pod: dict, name: str) -> tuple[dict, str] | None:
    """(container, fieldPath) of the container ``name`` of the pod (app or init container)."""
    spec = pod.get("spec") or {}
    for key in ("containers", "initContainers", "ephemeralContainers"):
        for c in spec.get(key) or []:
            if isinstance(c, dict) and c.get("name") == name:
                return c, f"spec.{key}{{{name}}}"
    return None


def format_pod(pod: dict) -> str:
    """format.Pod: "<name>_<namespace>(<uid>)"."""
    meta = pod.get("metadata") or {}
    return f"{meta.get('name', '')}_{meta.get('namespace', '')}({meta.get('uid', '')})"


def probe_grace(pod: dict, container_name: str, kind: str | None) -> int:
    """The grace period to kill a container with after its ``kind`` probe failed, as upstream's
    setTerminationGracePeriod: the pod's deletionGracePeriodSeconds when it is being deleted, else
    the liveness/startup probe's own terminationGracePeriodSeconds when set, else the pod's
    terminationGracePeriodSeconds, else 2 (the minimum)."""
    meta = pod.get("metadata") or {}
    spec = pod.get("spec") or {}
    if meta.get("deletionGracePeriodSeconds") is not None:
        return int(meta["deletionGracePeriodSeconds"])
    if spec.get("terminationGracePeriodSeconds") is None:
        return MINIMUM_GRACE_PERIOD_SECONDS
    if kind in (LIVENESS, STARTUP):
        found = find_container(pod, container_name)
        probe = (found[0].get(probe_key(kind)) if found else None) or {}
        if isinstance(probe, dict) and probe.get("terminationGracePeriodSeconds") is not None:
            return int(probe["terminationGracePeriodSeconds"])
    return int(spec["terminationGracePeriodSeconds"])


class Prober:
    """Runs probes and records their events (upstream's ``prober``)."""

    def __init__(self, exec_sync: ExecSync, recorder: EventRecorder | None = None) -> None:
        self.exec_sync = exec_sync
        self.recorder = recorder

    def _event(self, pod: dict, field_path: str, reason: str, message: str) -> None:
        if self.recorder is not None:
            self.recorder.event(pod, EVENT_TYPE_WARNING, reason, message, field_path=field_path)

    async def probe(self, kind: str, pod: dict, container_name: str, container_id: str, pod_ip: str) -> Result:
        """Probe once (with retries while erroring); record events; ProbeError when it errored."""
        found = find_container(pod, container_name)
        if found is None:
            raise ProbeError(f"container {container_name} not found in pod {format_pod(pod)}")
        container, field_path = found
        spec = container.get(probe_key(kind))
        if not isinstance(spec, dict):
            return Result.SUCCESS
        title = kind_title(kind)
        run: ProbeRun | None = None
        error: ProbeError | None = None
        for _ in range(MAX_PROBE_RETRIES):
            try:
                run = await self.run_probe(spec, pod, container, container_id, pod_ip)
                error = None
                break
            except ProbeError as e:
                error = e
        if error is not None or run is None:
            log.info("probe errored probeType=%s pod=%s container=%s err=%s", title, format_pod(pod),
                     container_name, error)
            self._event(pod, field_path, REASON_UNHEALTHY,
                        f"{title} probe errored and resulted in {Outcome.UNKNOWN} state: {error}")
            raise error or ProbeError("no result")
        if run.outcome == Outcome.SUCCESS:
            log.debug("probe succeeded probeType=%s pod=%s container=%s", title, format_pod(pod), container_name)
            return Result.SUCCESS
        if run.outcome == Outcome.WARNING:
            self._event(pod, field_path, REASON_PROBE_WARNING, f"{title} probe warning: {run.output}")
            return Result.SUCCESS
        log.info("probe failed probeType=%s pod=%s container=%s result=%s output=%r", title, format_pod(pod),
                 container_name, run.outcome, run.output)
        self._event(pod, field_path, REASON_UNHEALTHY, f"{title} probe failed: {run.output}")
        return Result.FAILURE

    async def run_probe(self, spec: dict, pod: dict, container: dict, container_id: str, pod_ip: str) -> ProbeRun:
        """One run of the probe's handler (upstream's runProbe)."""
        timeout = float(ProbeTiming.of(spec).timeout)
        if not pod_ip and not (isinstance(spec.get("httpGet"), dict) and spec["httpGet"].get("host")) \
                and not (isinstance(spec.get("tcpSocket"), dict) and spec["tcpSocket"].get("host")) \
                and not isinstance(spec.get("exec"), dict):
            raise ProbeError(f"pod {format_pod(pod)} has no IP address to probe")
        if isinstance(spec.get("exec"), dict):
            command = expand_static(spec["exec"].get("command") or [], container.get("env"))
            return await probe_exec(self.exec_sync, container_id, command, timeout)
        if isinstance(spec.get("httpGet"), dict):
            return await probe_http(build_request(spec["httpGet"], container, pod_ip), timeout)
        if isinstance(spec.get("tcpSocket"), dict):
            tcp = spec["tcpSocket"]
            port = resolve_container_port(tcp.get("port"), container)
            return await probe_tcp(tcp.get("host") or pod_ip, port, timeout)
        if isinstance(spec.get("grpc"), dict):
            g = spec["grpc"]
            port = g.get("port")
            if not isinstance(port, int) or isinstance(port, bool):
                raise ProbeError(f"invalid port number: {port}")
            return await probe_grpc(pod_ip, str(g.get("service") or ""), port, timeout)
        raise ProbeError(f"missing probe handler for {format_pod(pod)}:{container.get('name', '')}")
