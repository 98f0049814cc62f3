"""The kubelet's prober: liveness, readiness and startup probes (exec, httpGet, tcpSocket, grpc),
as upstream's pkg/kubelet/prober and pkg/probe.

    manager = ProbeManager(exec_sync, on_change=..., on_liveness_failure=..., recorder=recorder)
    manager.container_started(pod, "web", container_id, started_at, pod_ip)
    manager.ready(pod_uid, "web"), manager.started(pod_uid, "web")
    probe_grace(pod, "web", "liveness")   # grace period for the kill after a failed probe
    await manager.close()

Modules: manager (ProbeManager, results), worker (periodic probing, thresholds), prober (one
probe: handler choice, retries, events), execprobe, httpprobe, tcpprobe, grpcprobe (the
handlers), ports (port names, Go's dial errors), results (outcomes and results), healthpb (the
generated gRPC health protocol).
"""
from __future__ import annotations

from .execprobe import ExecSync
from .manager import ProbeManager
from .prober import LIVENESS, READINESS, STARTUP, probe_grace
from .results import Outcome, ProbeError, ProbeRun, Result

__all__ = ["ExecSync", "ProbeManager", "probe_grace", "LIVENESS", "READINESS", "STARTUP",
           "Outcome", "ProbeError", "ProbeRun", "Result"]
