"""IPVS mode's pure parts: the desired state from Services and endpoints (virtual servers, real
servers, kube-ipvs0 addresses, ipset entries), the iptables rules, the ipset restore text, the plan
of IPVS operations against what the kernel holds, and the generic netlink messages those
operations send (encoded, decoded and checked attribute by attribute: this kernel has no IP_VS)."""
from __future__ import annotations

import socket

import pytest

from kubelab.proxy.ipvs import ipsets as S
from kubelab.proxy.ipvs import state as ST
from kubelab.proxy.ipvs.kernel import KernelDest, Op, message, plan
from kubelab.proxy.servicechange import Endpoint, service_ports

NODE_IPS = ["192.168.56.11"]


def svc(name, ports, *, cluster_ip="10.96.0.10", ns="default", status=None, **spec):
    return service_ports({"metadata": {"name": name, "namespace": ns},
                          "spec": {"clusterIP": cluster_ip, "ports": ports, **spec}, "status": status or {}})


def ep(ip, port=8080, local=False, ready=True, serving=True, terminating=False):
    return Endpoint(ip, port, local, ready, serving, terminating)


def build(svcs: dict, eps: dict, cfg=ST.IPVSConfig(cluster_cidr="10.244.0.0/16", node_ip="192.168.56.11"),
          local=frozenset({"192.168.56.11"})):
    return ST.build(svcs, eps, cfg, NODE_IPS, set(local))


def test_cluster_ip_virtual_server_real_servers_and_sets():
    m = svc("web", [{"name": "http", "port": 80, "targetPort": 8080}])
    (spn,) = m
    st = build(m, {spn: [ep("10.244.0.5", local=True), ep("10.244.1.5"), ep("10.244.1.6", ready=False, serving=False)]})
    vs = st.services[("TCP", "10.96.0.10", 80)]
    assert (vs.scheduler, vs.flags, vs.timeout) == ("rr", 0, 0)
    assert set(st.dests[vs.key]) == {("10.244.0.5", 8080), ("10.244.1.5", 8080)}       # not-ready left out
    assert all(rs.weight == 1 for rs in st.dests[vs.key].values())
    assert st.bind_addrs == {"10.96.0.10"}
    assert st.sets.entries[S.CLUSTER_IP] == {"10.96.0.10,tcp:80"}
    assert st.sets.entries[S.LOOP_BACK] == {"10.244.0.5,tcp:8080,10.244.0.5"}          # local endpoints only
    assert st.sets.entries[S.IPVS_IPS] == {"10.96.0.10"}


def test_node_port_on_every_node_ip_with_local_policy():
    m = svc("np", [{"name": "http", "port": 80, "nodePort": 30080}], type="NodePort",
            externalTrafficPolicy="Local")
    (spn,) = m
    st = build(m, {spn: [ep("10.244.0.5", local=True), ep("10.244.1.5")]})
    nodevs = st.services[("TCP", "192.168.56.11", 30080)]
    assert set(st.dests[nodevs.key]) == {("10.244.0.5", 8080)}          # Local: the node's own endpoints
    assert set(st.dests[("TCP", "10.96.0.10", 80)]) == {("10.244.0.5", 8080), ("10.244.1.5", 8080)}
    assert st.sets.entries[S.NODE_PORT_TCP] == {"30080"} and st.sets.entries[S.NODE_PORT_LOCAL_TCP] == {"30080"}
    assert "192.168.56.11" not in st.bind_addrs                          # node IPs are never bound to kube-ipvs0
    # no local endpoint: all of them (upstream #97081: local pods can still reach it)
    st = build(m, {spn: [ep("10.244.1.5")]})
    assert set(st.dests[("TCP", "192.168.56.11", 30080)]) == {("10.244.1.5", 8080)}


def test_udp_and_sctp_node_ports():
    m = svc("dns", [{"name": "dns", "port": 53, "protocol": "UDP", "nodePort": 30053}], type="NodePort")
    m.update(svc("sc", [{"name": "s", "port": 9, "protocol": "SCTP", "nodePort": 30009}], cluster_ip="10.96.0.11",
                 type="NodePort"))
    st = build(m, {})
    assert st.sets.entries[S.NODE_PORT_UDP] == {"30053"}
    assert st.sets.entries[S.NODE_PORT_SCTP] == {"192.168.56.11,sctp:30009"}
    assert ("UDP", "10.96.0.10", 53) in st.services and ("SCTP", "192.168.56.11", 30009) in st.services


def test_session_affinity_and_mh_flags():
    m = svc("s", [{"name": "a", "port": 80}], sessionAffinity="ClientIP",
            sessionAffinityConfig={"clientIP": {"timeoutSeconds": 600}})
    vs = build(m, {}).services[("TCP", "10.96.0.10", 80)]
    assert vs.flags == ST.FLAG_PERSISTENT and vs.timeout == 600
    vs = ST.build(m, {}, ST.IPVSConfig(scheduler="mh"), NODE_IPS).services[("TCP", "10.96.0.10", 80)]
    assert vs.flags == ST.FLAG_PERSISTENT | ST.FLAG_SOURCE_HASH and vs.scheduler == "mh"


def test_external_and_load_balancer_ips():
    m = svc("lb", [{"name": "http", "port": 80, "nodePort": 30081}], type="LoadBalancer",
            externalIPs=["203.0.113.5", "192.168.56.11"], loadBalancerSourceRanges=["198.51.100.0/24"],
            status={"loadBalancer": {"ingress": [{"ip": "203.0.113.9"}]}})
    (spn,) = m
    st = build(m, {spn: [ep("10.244.1.5")]})
    assert st.sets.entries[S.EXTERNAL_IP] == {"203.0.113.5,tcp:80", "192.168.56.11,tcp:80"}
    assert st.sets.entries[S.LOAD_BALANCER] == {"203.0.113.9,tcp:80"}
    assert st.sets.entries[S.LOAD_BALANCER_FW] == {"203.0.113.9,tcp:80"}
    assert st.sets.entries[S.LOAD_BALANCER_SOURCE_CIDR] == {"203.0.113.9,tcp:80,198.51.100.0/24"}
    assert st.lb_no_node_access == [("203.0.113.9", "tcp", 80)]         # the node is outside the ranges
    assert {"203.0.113.5", "203.0.113.9", "10.96.0.10"} <= st.bind_addrs
    assert "192.168.56.11" not in st.bind_addrs                          # already a node address
    for key in (("TCP", "203.0.113.5", 80), ("TCP", "203.0.113.9", 80), ("TCP", "192.168.56.11", 30081)):
        assert set(st.dests[key]) == {("10.244.1.5", 8080)}


def test_terminating_endpoints_are_used_only_when_nothing_is_ready():
    m = svc("t", [{"name": "a", "port": 80}])
    (spn,) = m
    st = build(m, {spn: [ep("10.244.1.5", ready=False, serving=True, terminating=True)]})
    assert set(st.dests[("TCP", "10.96.0.10", 80)]) == {("10.244.1.5", 8080)}
    st = build(m, {spn: [ep("10.244.1.5", ready=False, serving=True, terminating=True), ep("10.244.1.6")]})
    assert set(st.dests[("TCP", "10.96.0.10", 80)]) == {("10.244.1.6", 8080)}


def test_rules_follow_upstream_layout():
    m = svc("np", [{"name": "http", "port": 80, "nodePort": 30080}], type="NodePort", externalTrafficPolicy="Local")
    (spn,) = m
    text = ST.rules_text(build(m, {spn: [ep("10.244.0.5", local=True)]}), ST.IPVSConfig(cluster_cidr="10.244.0.0/16"))
    lines = text.splitlines()
    assert lines[0] == "*filter" and lines.count("COMMIT") == 2
    assert "-A KUBE-SERVICES -s 127.0.0.0/8 -j RETURN" in lines
    assert ('-A KUBE-SERVICES -m comment --comment "Kubernetes service cluster ip + port for masquerade purpose" '
            "-m set --match-set KUBE-CLUSTER-IP dst,dst ! -s 10.244.0.0/16 -j KUBE-MARK-MASQ") in lines
    local = lines.index('-A KUBE-NODE-PORT -p tcp -m comment --comment "Kubernetes nodeport TCP port with '
                        'externalTrafficPolicy=local" -m set --match-set KUBE-NODE-PORT-LOCAL-TCP dst -j RETURN')
    masq = lines.index('-A KUBE-NODE-PORT -p tcp -m comment --comment "Kubernetes nodeport TCP port for masquerade '
                       'purpose" -m set --match-set KUBE-NODE-PORT-TCP dst -j KUBE-MARK-MASQ')
    assert local < masq
    assert ('-A KUBE-POSTROUTING -m comment --comment "Kubernetes endpoints dst ip:port, source ip for solving '
            'hairpin purpose" -m set --match-set KUBE-LOOP-BACK dst,dst,src -j MASQUERADE') in lines
    # accepting IPVS traffic comes after the node port jump, at the end of KUBE-SERVICES
    svc_lines = [ln for ln in lines if ln.startswith("-A KUBE-SERVICES")]
    assert svc_lines[-1] == "-A KUBE-SERVICES -m set --match-set KUBE-CLUSTER-IP dst,dst -j ACCEPT"
    assert "-A KUBE-IPVS-FILTER -m conntrack --ctstate NEW -m set --match-set KUBE-IPVS-IPS dst -j REJECT" in lines
    assert "-A KUBE-MARK-MASQ -j MARK --or-mark 0x4000" in lines
    # masquerade-all and no cluster CIDR change the cluster IP rule as upstream
    st = build(m, {})
    assert "KUBE-CLUSTER-IP dst,dst -j KUBE-MARK-MASQ" in ST.rules_text(st, ST.IPVSConfig(masquerade_all=True))
    assert "KUBE-CLUSTER-IP src,dst -j KUBE-MARK-MASQ" in ST.rules_text(st, ST.IPVSConfig())


def test_ipset_restore_text_is_a_diff():
    want = S.SetEntries()
    want.add(S.CLUSTER_IP, "10.96.0.10,tcp:80")
    want.add(S.NODE_PORT_TCP, "30080")
    existing = S.parse_save("create KUBE-CLUSTER-IP hash:ip,port family inet hashsize 1024 maxelem 65536 comment\n"
                            "add KUBE-CLUSTER-IP 10.96.0.10,tcp:80\nadd KUBE-CLUSTER-IP 10.96.0.99,tcp:80\n")
    lines = S.restore_text(want, existing).splitlines()
    assert lines[:len(S.SETS)] == [s.create_line() for s in S.SETS]
    assert "create KUBE-NODE-PORT-TCP bitmap:port range 0-65535 comment -exist" in lines
    assert lines[len(S.SETS):] == ["del KUBE-CLUSTER-IP 10.96.0.99,tcp:80", "add KUBE-NODE-PORT-TCP 30080 -exist"]


def _state(dests):
    st = ST.DesiredState()
    vs = ST.VirtualServer("10.96.0.10", 80, "TCP")
    st.services[vs.key] = vs
    st.dests[vs.key] = {(ip, 8080): ST.RealServer(ip, 8080) for ip in dests}
    return st, vs


def test_plan_adds_updates_drains_and_deletes():
    st, vs = _state(["10.244.0.5", "10.244.0.6"])
    assert [o.kind for o in plan(st, {}, {})] == ["add_service", "add_dest", "add_dest"]
    have = {vs.key: {("10.244.0.5", 8080): KernelDest(ST.RealServer("10.244.0.5", 8080, 0), 0),     # weight drift
                     ("10.244.0.7", 8080): KernelDest(ST.RealServer("10.244.0.7", 8080, 1), 3),     # busy, unwanted
                     ("10.244.0.8", 8080): KernelDest(ST.RealServer("10.244.0.8", 8080, 1), 0)}}    # idle, unwanted
    old = ST.VirtualServer("10.96.0.10", 80, "TCP", "lc")
    stale = ST.VirtualServer("10.96.0.99", 80, "TCP")
    excluded = ST.VirtualServer("172.16.0.1", 80, "TCP")
    ops = plan(st, {vs.key: old, stale.key: stale, excluded.key: excluded}, have, exclude=["172.16.0.0/12"])
    got = {(o.kind, o.service.address, o.dest.address if o.dest else None, o.dest.weight if o.dest else None)
           for o in ops}
    assert got == {("set_service", "10.96.0.10", None, None),      # scheduler lc -> rr
                   ("set_dest", "10.96.0.10", "10.244.0.5", 1),      # weight back to 1
                   ("add_dest", "10.96.0.10", "10.244.0.6", 1),
                   ("set_dest", "10.96.0.10", "10.244.0.7", 0),      # drained, not deleted
                   ("del_dest", "10.96.0.10", "10.244.0.8", 1),
                   ("del_service", "10.96.0.99", None, None)}        # 172.16.0.1 is excluded
    # drained to weight 0 and still busy: left alone until its connections are gone
    have[vs.key][("10.244.0.7", 8080)] = KernelDest(ST.RealServer("10.244.0.7", 8080, 0), 2)
    assert not [o for o in plan(st, {vs.key: vs}, have) if o.dest and o.dest.address == "10.244.0.7"]
    have[vs.key][("10.244.0.7", 8080)] = KernelDest(ST.RealServer("10.244.0.7", 8080, 0), 0)
    assert [o.kind for o in plan(st, {vs.key: vs}, have) if o.dest and o.dest.address == "10.244.0.7"] == ["del_dest"]


def test_plan_deletes_busy_udp_real_servers_at_once():
    st = ST.DesiredState()
    vs = ST.VirtualServer("10.96.0.10", 53, "UDP")
    st.services[vs.key], st.dests[vs.key] = vs, {}
    have = {vs.key: {("10.244.0.7", 53): KernelDest(ST.RealServer("10.244.0.7", 53, 1), 5)}}
    assert [o.kind for o in plan(st, {vs.key: vs}, have)] == ["del_dest"]


def _decode(op: Op):
    from pyroute2.netlink.generic.ipvs import ipvsmsg
    m = message(op)
    m["header"]["type"] = 0x20            # a generic netlink family id, as the socket would set it
    m.encode()
    raw = bytes(m.data)
    d = ipvsmsg(raw)
    d.decode()
    return d


def test_add_service_message_attributes():
    vs = ST.VirtualServer("10.96.0.10", 80, "TCP", "sh", ST.FLAG_PERSISTENT, 10800)
    d = _decode(Op("add_service", vs))
    assert d["cmd"] == 1 and d["version"] == 1
    s = d.get_attr("IPVS_CMD_ATTR_SERVICE")
    assert s.get_attr("IPVS_SVC_ATTR_AF") == socket.AF_INET
    assert s.get_attr("IPVS_SVC_ATTR_PROTOCOL") == socket.IPPROTO_TCP
    assert s.get_attr("IPVS_SVC_ATTR_ADDR") == "10.96.0.10"
    assert s.get_attr("IPVS_SVC_ATTR_PORT") == 80
    assert s.get_attr("IPVS_SVC_ATTR_SCHED_NAME") == "sh"
    assert s.get_attr("IPVS_SVC_ATTR_TIMEOUT") == 10800
    assert s.get_attr("IPVS_SVC_ATTR_FLAGS")["flags"] == ST.FLAG_PERSISTENT
    assert s.get_attr("IPVS_SVC_ATTR_NETMASK") == "255.255.255.255"


@pytest.mark.parametrize("kind,cmd,weight", [("add_dest", 5, 1), ("set_dest", 6, 0), ("del_dest", 7, 1)])
def test_dest_messages_carry_the_service_key_and_the_real_server(kind, cmd, weight):
    vs = ST.VirtualServer("10.96.0.10", 53, "UDP", "rr")
    d = _decode(Op(kind, vs, ST.RealServer("10.244.1.5", 5353, weight)))
    assert d["cmd"] == cmd
    s = d.get_attr("IPVS_CMD_ATTR_SERVICE")
    assert s.get_attr("IPVS_SVC_ATTR_PROTOCOL") == socket.IPPROTO_UDP and s.get_attr("IPVS_SVC_ATTR_PORT") == 53
    assert s.get_attr("IPVS_SVC_ATTR_SCHED_NAME") is None          # the key only
    r = d.get_attr("IPVS_CMD_ATTR_DEST")
    assert r.get_attr("IPVS_DEST_ATTR_ADDR") == "10.244.1.5" and r.get_attr("IPVS_DEST_ATTR_PORT") == 5353
    assert r.get_attr("IPVS_DEST_ATTR_WEIGHT") == weight
    assert r.get_attr("IPVS_DEST_ATTR_FWD_METHOD") == 0             # masquerading (NAT), as upstream


@pytest.mark.parametrize("sched", ["rr", "lc", "dh", "sh", "sed", "nq"])
def test_every_scheduler_reaches_the_message(sched):
    d = _decode(Op("add_service", ST.VirtualServer("10.96.0.10", 80, "TCP", sched)))
    assert d.get_attr("IPVS_CMD_ATTR_SERVICE").get_attr("IPVS_SVC_ATTR_SCHED_NAME") == sched


@pytest.mark.parametrize("args,msg", [
    (["--proxy-mode", "userspace"], "--proxy-mode: invalid value 'userspace': must be iptables, ipvs or blank"),
    (["--proxy-mode", "ipvs", "--ipvs-scheduler", "fastest"], "--ipvs-scheduler: invalid value 'fastest'"),
    (["--ipvs-exclude-cidrs", "10.0.0.0/33"], "--ipvs-exclude-cidrs: invalid CIDR '10.0.0.0/33'"),
])
def test_bad_ipvs_flags_are_one_line_errors(args, msg):
    import subprocess
    import sys
    from pathlib import Path
    r = subprocess.run([str(Path(sys.executable).parent / "kubelab-proxy"), *args], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 2
    assert msg in r.stderr.strip().splitlines()[-1] and "Traceback" not in r.stderr
