"""Fixtures of the integration tests that run controllers: `hollow_cluster` starts
kubelab-controller-manager (the controllers asked for, a private leader-election Lease),
kubelab-scheduler (a private profile) and `kubelab hollow-nodes` (a private node label) against the
session's control plane, and stops them; a traceback in any of their logs fails the test."""
from __future__ import annotations

import contextlib
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest

from kubelab.lab.controlplane import free_port, spawn, stop

BIN = Path(sys.executable).parent


@dataclass
class HollowCluster:
    scheduler_name: str            # put in pod specs, so only this test's scheduler binds them
    node_selector: dict            # keeps the pods on this test's hollow nodes
    prefix: str                    # node names are <prefix>-00000, ...
    logs: Path

    def pod_spec(self, **extra) -> dict:
        return {"schedulerName": self.scheduler_name, "nodeSelector": dict(self.node_selector),
                "terminationGracePeriodSeconds": 0, "containers": [{"name": "c", "image": "nginx"}], **extra}


@pytest.fixture
def hollow_cluster(control_plane, tmp_path):
    """hollow_cluster(controllers="replicaset,deployment", nodes=3, ready_delay="200ms", cm_args=(),
    hollow_args=()) -> a context manager yielding a HollowCluster."""
    @contextlib.contextmanager
    def start(controllers: str, nodes: int = 3, ready_delay: str = "200ms", cm_args: tuple = (),
              hollow_args: tuple = ()):
        uid = uuid.uuid4().hex[:5]
        profile = f"sched-{uid}"
        logs = tmp_path / f"cluster-{uid}"
        logs.mkdir()
        (logs / "sched.yaml").write_text(f"apiVersion: kubescheduler.config.k8s.io/v1\n"
                                         f"kind: KubeSchedulerConfiguration\nprofiles:\n- schedulerName: {profile}\n")
        kc = str(control_plane.kubeconfig)
        procs = [spawn([str(BIN / "kubelab-controller-manager"), "--kubeconfig", kc, "--controllers", controllers,
                        "--leader-elect-resource-name", f"kcm-{uid}", "--secure-port", "0", *cm_args],
                       logs / "cm.log"),
                 spawn([str(BIN / "kubelab-scheduler"), "--kubeconfig", kc, "--config", str(logs / "sched.yaml"),
                        "--leader-elect=false", "--secure-port", str(free_port()), "--bind-address", "127.0.0.1"],
                       logs / "sched.log"),
                 spawn([str(BIN / "kubelab"), "hollow-nodes", "--kubeconfig", kc, "--count", str(nodes),
                        "--prefix", f"h{uid}", "--pod-ready-delay", ready_delay, "--node-labels", f"test={uid}",
                        *hollow_args], logs / "hollow.log")]
        try:
            yield HollowCluster(profile, {"test": uid}, f"h{uid}", logs)
        finally:
            for p in procs:
                stop(p, 30)
        for log in ("cm.log", "sched.log", "hollow.log"):
            text = (logs / log).read_text()
            assert "Traceback" not in text, text[-3000:]
    return start
