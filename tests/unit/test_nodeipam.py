"""Pure logic of node IPAM and host-gw routing: the CIDR set, --controllers selection, which
routes and CNI config a node wants from the Node objects."""
from __future__ import annotations

import ipaddress
import json

import pytest

from kubelab.controller.manager import CONTROLLERS, SelectionError, select
from kubelab.controller.nodeipam.cidrset import CIDRRangeNoCIDRsRemaining, CIDRSet, CIDRSetError
from kubelab.kubelet.podnet import cni_conflist, desired_routes, write_if_changed


def test_allocates_in_order_and_round_robin():
    s = CIDRSet("10.244.0.0/16", 24)
    assert s.max == 256
    assert [str(s.allocate_next()) for _ in range(3)] == ["10.244.0.0/24", "10.244.1.0/24", "10.244.2.0/24"]
    s.release("10.244.1.0/24")
    # a released subnet is not handed out again at once
    assert str(s.allocate_next()) == "10.244.3.0/24"
    assert len(s) == 3


def test_occupy_skips_taken_subnets_and_covers_larger_ranges():
    s = CIDRSet("10.0.0.0/22", 24)
    s.occupy("10.0.0.0/23")             # a larger range takes two subnets
    assert len(s) == 2 and s.in_use("10.0.1.0/24")
    assert str(s.allocate_next()) == "10.0.2.0/24"
    s.occupy("10.0.3.128/25")           # a smaller one takes the subnet holding it
    with pytest.raises(CIDRRangeNoCIDRsRemaining, match="no remaining CIDRs"):
        s.allocate_next()
    s.occupy("10.0.0.0/24")             # idempotent
    assert len(s) == 4
    s.release("10.0.0.0/22")
    assert len(s) == 0


def test_exhaustion_and_reuse():
    s = CIDRSet("192.168.0.0/30", 31)
    a, b = s.allocate_next(), s.allocate_next()
    assert {str(a), str(b)} == {"192.168.0.0/31", "192.168.0.2/31"}
    with pytest.raises(CIDRRangeNoCIDRsRemaining):
        s.allocate_next()
    s.release(a)
    assert s.allocate_next() == a


def test_ipv6_and_bad_sizes():
    s = CIDRSet("fd00:10:244::/56", 64)
    assert str(s.allocate_next()) == "fd00:10:244::/64"
    assert str(s.allocate_next()) == "fd00:10:244:1::/64"
    with pytest.raises(CIDRSetError, match="larger than the cluster CIDR"):
        CIDRSet("10.244.0.0/16", 8)
    with pytest.raises(CIDRSetError, match="too big"):
        CIDRSet("10.0.0.0/8", 28)
    with pytest.raises(CIDRSetError, match="not within"):
        CIDRSet("10.244.0.0/16", 24).occupy("10.96.0.0/12")


def test_subnet_numbering_is_exact():
    s = CIDRSet("10.244.0.0/16", 24)
    for i in (0, 1, 17, 255):
        assert s.subnet(i) == ipaddress.ip_network(f"10.244.{i}.0/24")


def test_controllers_selection_as_upstream():
    every = [c.name for c in CONTROLLERS if c.enabled_by_default]
    for name in ("node-ipam-controller", "replicaset-controller", "deployment-controller",
                 "garbage-collector-controller", "namespace-controller", "endpointslice-controller",
                 "daemonset-controller", "statefulset-controller", "job-controller", "cronjob-controller",
                 "ttl-after-finished-controller", "node-lifecycle-controller", "taint-eviction-controller",
                 "pod-garbage-collector-controller",
                 "serviceaccount-controller", "root-ca-certificate-publisher-controller"):
        assert name in every
    assert [c.name for c in select(["*"])] == every
    assert [c.name for c in select(["*", "-nodeipam"])] == [n for n in every if n != "node-ipam-controller"]
    assert [c.name for c in select(["*", "-garbage-collector-controller", "-namespace"])] == \
        [n for n in every if n not in ("garbage-collector-controller", "namespace-controller")]
    assert {c.name for c in select(["serviceaccount", "endpointslice"])} == \
        {"serviceaccount-controller", "endpointslice-controller"}
    assert [c.name for c in select(["nodeipam"])] == ["node-ipam-controller"]
    assert [c.name for c in select(["job", "cronjob", "ttl-after-finished"])] == \
        [n for n in every if n in ("job-controller", "cronjob-controller", "ttl-after-finished-controller")]
    with pytest.raises(SelectionError, match='"bogus" is not in the list of known controllers'):
        select(["*", "-bogus"])


def _node(name, cidr=None, ip=None, deleting=False):
    n = {"metadata": {"name": name}, "spec": {}, "status": {}}
    if cidr:
        n["spec"] = {"podCIDR": cidr, "podCIDRs": [cidr]}
    if ip:
        n["status"]["addresses"] = [{"type": "Hostname", "address": name}, {"type": "InternalIP", "address": ip}]
    if deleting:
        n["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    return n


def test_desired_routes_are_other_nodes_with_cidr_and_address():
    nodes = [_node("a", "10.244.0.0/24", "192.168.56.11"), _node("b", "10.244.1.0/24", "192.168.56.12"),
             _node("c", None, "192.168.56.13"), _node("d", "10.244.3.0/24", None),
             _node("e", "10.244.4.0/24", "192.168.56.15", deleting=True),
             _node("f", "fd00::/64", "192.168.56.16")]
    assert desired_routes(nodes, "a") == {"10.244.1.0/24": "192.168.56.12"}
    assert desired_routes(nodes, None) == {"10.244.0.0/24": "192.168.56.11", "10.244.1.0/24": "192.168.56.12"}


def test_cni_conflist_from_pod_cidrs(tmp_path):
    conf = cni_conflist(["10.244.1.0/24"], plugin="kubelab-bridge", mtu=1450)
    br = conf["plugins"][0]
    assert br["type"] == "kubelab-bridge" and br["bridge"] == "cni0" and br["mtu"] == 1450
    assert br["ipam"]["ranges"] == [[{"subnet": "10.244.1.0/24"}]]
    assert conf["plugins"][1]["type"] == "portmap"
    p = tmp_path / "net.d" / "10-kubelab.conflist"
    assert write_if_changed(p, json.dumps(conf)) is True
    assert write_if_changed(p, json.dumps(conf)) is False
    assert json.loads(p.read_text()) == conf
    assert [x.name for x in p.parent.iterdir()] == ["10-kubelab.conflist"]
