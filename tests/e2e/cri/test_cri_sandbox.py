"""CRI conformance: pod sandboxes. Runs unchanged against kubelab-cri and containerd."""
from __future__ import annotations

import ipaddress

import grpc
import pytest

from kubelab.cri.api import api_pb2 as pb

pytestmark = pytest.mark.e2e

SUBNET = ipaddress.ip_network("10.250.0.0/24")


def _status(cri, sid: str) -> pb.PodSandboxStatus:
    return cri.rt.PodSandboxStatus(pb.PodSandboxStatusRequest(pod_sandbox_id=sid)).status


def test_sandbox_lifecycle(cri, pods):
    sid, config = pods.run_sandbox(labels={"app": "lifecycle"})
    st = _status(cri, sid)
    assert st.id == sid
    assert st.state == pb.SANDBOX_READY
    assert st.metadata == config.metadata
    assert st.labels["app"] == "lifecycle"
    assert st.annotations["kubelab.test/owner"] == "e2e"
    assert st.created_at > 1_600_000_000 * 10**9
    assert ipaddress.ip_address(st.network.ip) in SUBNET

    ids = [s.id for s in cri.rt.ListPodSandbox(pb.ListPodSandboxRequest()).items]
    assert sid in ids
    by_label = cri.rt.ListPodSandbox(pb.ListPodSandboxRequest(
        filter=pb.PodSandboxFilter(label_selector={"app": "lifecycle"}))).items
    assert [s.id for s in by_label] == [sid]
    by_id = cri.rt.ListPodSandbox(pb.ListPodSandboxRequest(filter=pb.PodSandboxFilter(id=sid))).items
    assert [s.id for s in by_id] == [sid]

    cri.rt.StopPodSandbox(pb.StopPodSandboxRequest(pod_sandbox_id=sid))
    assert _status(cri, sid).state == pb.SANDBOX_NOTREADY
    ready = cri.rt.ListPodSandbox(pb.ListPodSandboxRequest(filter=pb.PodSandboxFilter(
        state=pb.PodSandboxStateValue(state=pb.SANDBOX_READY)))).items
    assert sid not in [s.id for s in ready]
    cri.rt.StopPodSandbox(pb.StopPodSandboxRequest(pod_sandbox_id=sid))          # idempotent
    cri.rt.RemovePodSandbox(pb.RemovePodSandboxRequest(pod_sandbox_id=sid))
    assert sid not in [s.id for s in cri.rt.ListPodSandbox(pb.ListPodSandboxRequest()).items]
    with pytest.raises(grpc.RpcError) as e:
        _status(cri, sid)
    assert e.value.code() == grpc.StatusCode.NOT_FOUND
    cri.rt.RemovePodSandbox(pb.RemovePodSandboxRequest(pod_sandbox_id=sid))      # idempotent


def test_two_sandboxes_get_distinct_ips(cri, pods):
    a, _ = pods.run_sandbox()
    b, _ = pods.run_sandbox()
    ip_a, ip_b = _status(cri, a).network.ip, _status(cri, b).network.ip
    assert ip_a != ip_b and {ipaddress.ip_address(ip_a), ipaddress.ip_address(ip_b)} <= set(SUBNET)


def test_same_sandbox_name_and_attempt_is_refused(cri, pods):
    sid, config = pods.run_sandbox()
    with pytest.raises(grpc.RpcError) as e:
        cri.rt.RunPodSandbox(pb.RunPodSandboxRequest(config=config))
    assert "reserve" in e.value.details() and "name" in e.value.details()
    config.metadata.attempt = 1
    pods.run_sandbox(config)


def test_hostname_dns_and_sysctls_reach_the_containers(cri, pods):
    pods.cri.pull("busybox")
    dns = pb.DNSConfig(servers=["10.96.0.10"], searches=["cri-test.svc.cluster.local", "svc.cluster.local"],
                       options=["ndots:5"])
    sid, sconfig = pods.run_sandbox(hostname="web-0", dns=dns, sysctls={"net.ipv4.ip_unprivileged_port_start": "0"})
    cconfig = pods.container_config("probe", "busybox", ["sh", "-c",
                                    "hostname; cat /etc/resolv.conf; cat /proc/sys/net/ipv4/ip_unprivileged_port_start; "
                                    "df -k /dev/shm | tail -1; sleep 3600"])
    cid = pods.start(sid, sconfig, cconfig)
    out = cri.rt.ExecSync(pb.ExecSyncRequest(container_id=cid, cmd=["sh", "-c", "hostname; cat /etc/resolv.conf; "
                          "cat /proc/sys/net/ipv4/ip_unprivileged_port_start"], timeout=10))
    text = out.stdout.decode()
    lines = text.splitlines()
    assert lines[0] == "web-0"
    assert "nameserver 10.96.0.10" in text
    assert "search cri-test.svc.cluster.local svc.cluster.local" in text
    assert "options ndots:5" in text
    assert lines[-1] == "0"


def test_containers_of_a_pod_share_network_and_ipc(cri, pods):
    pods.cri.pull("busybox")
    sid, sconfig = pods.run_sandbox()
    a = pods.start(sid, sconfig, pods.container_config("a", "busybox", ["sh", "-c", "echo shared > /dev/shm/x; "
                                                                          "sleep 3600"]))
    b = pods.start(sid, sconfig, pods.container_config("b", "busybox", ["sleep", "3600"]))
    ip = _status(cri, sid).network.ip
    for cid in (a, b):
        out = cri.rt.ExecSync(pb.ExecSyncRequest(container_id=cid, cmd=["ip", "-4", "-o", "addr", "show", "eth0"],
                                                 timeout=10))
        assert f" {ip}/" in out.stdout.decode(), out
    cri.wait_state(a, pb.CONTAINER_RUNNING)
    out = cri.rt.ExecSync(pb.ExecSyncRequest(container_id=b, cmd=["cat", "/dev/shm/x"], timeout=10))
    assert out.stdout == b"shared\n"


def test_stop_sandbox_stops_its_containers(cri, pods):
    pods.cri.pull("busybox")
    sid, sconfig = pods.run_sandbox()
    cid = pods.start(sid, sconfig, pods.container_config("sleeper", "busybox", ["sleep", "3600"]))
    cri.rt.StopPodSandbox(pb.StopPodSandboxRequest(pod_sandbox_id=sid))
    st = cri.wait_state(cid, pb.CONTAINER_EXITED)
    assert st.exit_code == 137
    cri.rt.RemovePodSandbox(pb.RemovePodSandboxRequest(pod_sandbox_id=sid))
    with pytest.raises(grpc.RpcError) as e:
        cri.status(cid)
    assert e.value.code() == grpc.StatusCode.NOT_FOUND


@pytest.mark.parametrize("shared", [True, False], ids=["pid-POD", "pid-CONTAINER"])
def test_process_namespace_sharing(cri, pods, shared):
    pods.cri.pull("busybox")
    mode = pb.POD if shared else pb.CONTAINER
    sid, sconfig = pods.run_sandbox(pid=mode)
    a = pods.start(sid, sconfig, pods.container_config("a", "busybox", ["sleep", "3601"], pid=mode))
    b = pods.start(sid, sconfig, pods.container_config("b", "busybox", ["sleep", "3602"], pid=mode))
    cri.wait_state(a, pb.CONTAINER_RUNNING)
    ps = cri.rt.ExecSync(pb.ExecSyncRequest(container_id=b, cmd=["ps", "-o", "pid,args"], timeout=10)).stdout.decode()
    rows = [ln.split(None, 1) for ln in ps.splitlines()[1:]]
    by_args = {args.strip(): int(pid) for pid, args in rows}
    assert "sleep 3602" in by_args
    if shared:
        assert "sleep 3601" in by_args, ps
        assert by_args["sleep 3601"] != 1 and by_args["sleep 3602"] != 1, "PID 1 must be the pod's init"
    else:
        assert "sleep 3601" not in by_args, ps
        assert by_args["sleep 3602"] == 1
    cri.rt.StopPodSandbox(pb.StopPodSandboxRequest(pod_sandbox_id=sid))
    for cid in (a, b):
        assert cri.wait_state(cid, pb.CONTAINER_EXITED).exit_code == 137
