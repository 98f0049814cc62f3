"""CRI conformance: runtime-level RPCs. Runs unchanged against kubelab-cri and containerd."""
from __future__ import annotations

import grpc
import pytest

from kubelab.cri.api import api_pb2 as pb

pytestmark = pytest.mark.e2e


def test_version(cri):
    v = cri.rt.Version(pb.VersionRequest(version="0.1.0"))
    assert v.runtime_api_version == "v1"
    assert v.version == "0.1.0"
    assert v.runtime_name == cri.name
    assert v.runtime_version


def test_status_reports_runtime_and_network_ready(cri):
    st = cri.rt.Status(pb.StatusRequest(verbose=False)).status
    conds = {c.type: c for c in st.conditions}
    assert conds["RuntimeReady"].status is True
    assert conds["NetworkReady"].status is True, conds["NetworkReady"].message


def test_runtime_config_cgroup_driver(cri):
    try:
        resp = cri.rt.RuntimeConfig(pb.RuntimeConfigRequest())
    except grpc.RpcError as e:
        # containerd 1.6 predates this RPC (added in CRI 1.28); the kubelet then assumes its own flag
        assert e.code() == grpc.StatusCode.UNIMPLEMENTED and cri.name == "containerd"
        return
    assert resp.linux.cgroup_driver == pb.CGROUPFS


def test_update_runtime_config_accepts_pod_cidr(cri):
    cri.rt.UpdateRuntimeConfig(pb.UpdateRuntimeConfigRequest(
        runtime_config=pb.RuntimeConfig(network_config=pb.NetworkConfig(pod_cidr="10.250.0.0/24"))))


def test_unknown_ids_are_not_found(cri):
    for call, req in ((cri.rt.ContainerStatus, pb.ContainerStatusRequest(container_id="f" * 64)),
                      (cri.rt.PodSandboxStatus, pb.PodSandboxStatusRequest(pod_sandbox_id="f" * 64)),
                      (cri.rt.StartContainer, pb.StartContainerRequest(container_id="f" * 64))):
        with pytest.raises(grpc.RpcError) as e:
            call(req)
        assert e.value.code() == grpc.StatusCode.NOT_FOUND, (call, e.value.details())
        assert "not found" in e.value.details()


def test_remove_of_unknown_ids_is_idempotent(cri):
    cri.rt.RemovePodSandbox(pb.RemovePodSandboxRequest(pod_sandbox_id="e" * 64))
    cri.rt.RemoveContainer(pb.RemoveContainerRequest(container_id="e" * 64))
