"""kube-proxy's iptables rule generation, change tracking and partial syncs (pure logic).

Expected texts follow upstream kube-proxy's (pkg/proxy/iptables/proxier_test.go) layout; the
chain-name hashes are checked against values computed here from upstream's algorithm and against
the values upstream's own tests use.
"""
from __future__ import annotations

import asyncio
import base64
import hashlib
import textwrap

import pytest

from kubelab.cmd.proxy import parse_duration
from kubelab.proxy import conntrack
from kubelab.proxy.iptables import rules as R
from kubelab.proxy.iptables.proxier import Proxier, ProxierConfig
from kubelab.proxy.iptables.runner import IPTables, IPTablesError, format_rule
from kubelab.proxy.servicechange import (SERVICE_NAME_LABEL, EndpointsChangeTracker, ServiceChangeTracker,
                                         ServicePortName, apply_endpoint_changes, apply_service_changes,
                                         endpoint_chain_name, port_proto_hash, service_ports)
from kubelab.proxy.syncrunner import SyncRunner

CFG = R.RuleConfig(cluster_cidr="10.0.0.0/8", node_ip="192.168.0.2")


def svc(name: str, ip: str, ports=None, ns: str = "ns1", status=None, **spec) -> dict:
    ports = ports if ports is not None else [{"name": "p80", "port": 80, "protocol": "TCP"}]
    out = {"metadata": {"namespace": ns, "name": name}, "spec": {"clusterIP": ip, "ports": ports, **spec}}
    if status:
        out["status"] = status
    return out


def ep(ip: str, node: str = "", ready=None, serving=None, terminating=None) -> dict:
    cond = {k: v for k, v in (("ready", ready), ("serving", serving), ("terminating", terminating)) if v is not None}
    out: dict = {"addresses": [ip], "conditions": cond}
    if node:
        out["nodeName"] = node
    return out


def slice_(name: str, service: str, endpoints: list, ports=None, ns: str = "ns1") -> dict:
    ports = ports if ports is not None else [{"name": "p80", "port": 80, "protocol": "TCP"}]
    return {"metadata": {"namespace": ns, "name": name, "labels": {SERVICE_NAME_LABEL: service}},
            "addressType": "IPv4", "ports": ports, "endpoints": endpoints}


def build(services: list[dict], slices: list[dict], cfg: R.RuleConfig = CFG, hostname: str = "node1",
          large: bool | None = None):
    """Rules for the given objects, through the same trackers the proxier uses."""
    st, et = ServiceChangeTracker(), EndpointsChangeTracker(hostname)
    for s in services:
        st.update(None, s)
    for s in slices:
        et.endpoint_slice_update(s)
    smap, emap = {}, {}
    apply_service_changes(smap, st.checkout())
    changes, _ = et.checkout()
    apply_endpoint_changes(emap, changes)
    if large is None:
        large = R.is_large_cluster(len(emap.get(k, ())) for k in smap)
    out = [R.service_rules(smap[k], emap.get(k, []), cfg, large) for k in sorted(smap, key=str)]
    filt, nat = R.top_level_chains(cfg, out)
    groups = [s.nat_chains for s in out if s.nat_chains]
    return R.restore_text(filt, R.render_nat(nat, groups))


def section(text: str, table: str) -> str:
    lines = text.splitlines()
    start = lines.index(f"*{table}")
    end = lines.index("COMMIT", start)
    return "\n".join(lines[start:end + 1])


def dedent(s: str) -> str:
    return textwrap.dedent(s).strip("\n")


# --- chain names -----------------------------------------------------------------------------


def test_chain_names_are_upstreams_hash():
    # upstream: base32(sha256(servicePortName.String() + lower(protocol)))[:16], derived here by hand
    by_hand = base64.b32encode(hashlib.sha256(b"ns1/svc1:p80tcp").digest()).decode()[:16]
    assert port_proto_hash("ns1/svc1:p80", "tcp") == by_hand
    # and the values upstream's proxier_test.go expects for the same inputs
    assert by_hand == "XPGD46QRK7WJZT7O"
    sep = base64.b32encode(hashlib.sha256(b"ns1/svc1:p80tcp10.180.0.1:80").digest()).decode()[:16]
    assert endpoint_chain_name("ns1/svc1:p80", "tcp", "10.180.0.1:80") == "KUBE-SEP-" + sep == \
        "KUBE-SEP-SXIVWICOYRO3J4NJ"
    ports = service_ports(svc("svc1", "172.30.0.41"))
    sp = ports[ServicePortName("ns1", "svc1", "p80", "TCP")]
    assert (sp.cluster_chain, sp.local_chain, sp.external_chain, sp.firewall_chain) == (
        "KUBE-SVC-XPGD46QRK7WJZT7O", "KUBE-SVL-XPGD46QRK7WJZT7O", "KUBE-EXT-XPGD46QRK7WJZT7O",
        "KUBE-FW-XPGD46QRK7WJZT7O")
    # an unnamed port: "ns/name" alone
    assert str(ServicePortName("ns", "web", "", "TCP")) == "ns/web"


def test_probabilities_have_ten_decimals():
    assert [R.probability(n) for n in (2, 3, 4, 7)] == ["0.5000000000", "0.3333333333", "0.2500000000",
                                                        "0.1428571429"]


# --- full rulesets ---------------------------------------------------------------------------


def test_cluster_ip_two_endpoints_full_text():
    text = build([svc("svc1", "172.30.0.41")],
                 [slice_("svc1-a", "svc1", [ep("10.180.0.2"), ep("10.180.0.1")])])
    assert section(text, "nat") == dedent("""
        *nat
        :KUBE-SERVICES - [0:0]
        :KUBE-NODEPORTS - [0:0]
        :KUBE-POSTROUTING - [0:0]
        :KUBE-MARK-MASQ - [0:0]
        :KUBE-SVC-XPGD46QRK7WJZT7O - [0:0]
        :KUBE-SEP-SXIVWICOYRO3J4NJ - [0:0]
        :KUBE-SEP-LXVODXWDISEETFEF - [0:0]
        -A KUBE-SERVICES -m comment --comment "ns1/svc1:p80 cluster IP" -m tcp -p tcp -d 172.30.0.41 --dport 80 -j KUBE-SVC-XPGD46QRK7WJZT7O
        -A KUBE-SERVICES -m comment --comment "kubernetes service nodeports; NOTE: this must be the last rule in this chain" -m addrtype --dst-type LOCAL -j KUBE-NODEPORTS
        -A KUBE-POSTROUTING -m mark ! --mark 0x4000/0x4000 -j RETURN
        -A KUBE-POSTROUTING -j MARK --xor-mark 0x4000
        -A KUBE-POSTROUTING -m comment --comment "kubernetes service traffic requiring SNAT" -j MASQUERADE --random-fully
        -A KUBE-MARK-MASQ -j MARK --or-mark 0x4000
        -A KUBE-SVC-XPGD46QRK7WJZT7O -m comment --comment "ns1/svc1:p80 cluster IP" -m tcp -p tcp -d 172.30.0.41 --dport 80 ! -s 10.0.0.0/8 -j KUBE-MARK-MASQ
        -A KUBE-SVC-XPGD46QRK7WJZT7O -m comment --comment "ns1/svc1:p80 -> 10.180.0.1:80" -m statistic --mode random --probability 0.5000000000 -j KUBE-SEP-SXIVWICOYRO3J4NJ
        -A KUBE-SVC-XPGD46QRK7WJZT7O -m comment --comment "ns1/svc1:p80 -> 10.180.0.2:80" -j KUBE-SEP-LXVODXWDISEETFEF
        -A KUBE-SEP-SXIVWICOYRO3J4NJ -m comment --comment ns1/svc1:p80 -s 10.180.0.1 -j KUBE-MARK-MASQ
        -A KUBE-SEP-SXIVWICOYRO3J4NJ -m comment --comment ns1/svc1:p80 -m tcp -p tcp -j DNAT --to-destination 10.180.0.1:80
        -A KUBE-SEP-LXVODXWDISEETFEF -m comment --comment ns1/svc1:p80 -s 10.180.0.2 -j KUBE-MARK-MASQ
        -A KUBE-SEP-LXVODXWDISEETFEF -m comment --comment ns1/svc1:p80 -m tcp -p tcp -j DNAT --to-destination 10.180.0.2:80
        COMMIT""")
    assert section(text, "filter") == dedent("""
        *filter
        :KUBE-SERVICES - [0:0]
        :KUBE-EXTERNAL-SERVICES - [0:0]
        :KUBE-FORWARD - [0:0]
        :KUBE-NODEPORTS - [0:0]
        :KUBE-PROXY-FIREWALL - [0:0]
        :KUBE-FIREWALL - [0:0]
        -A KUBE-FORWARD -m conntrack --ctstate INVALID -j DROP
        -A KUBE-FORWARD -m comment --comment "kubernetes forwarding rules" -m mark --mark 0x4000/0x4000 -j ACCEPT
        -A KUBE-FORWARD -m comment --comment "kubernetes forwarding conntrack rule" -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
        -A KUBE-FIREWALL -m comment --comment "block incoming localnet connections" -d 127.0.0.0/8 ! -s 127.0.0.0/8 -m conntrack ! --ctstate RELATED,ESTABLISHED,DNAT -j DROP
        COMMIT""")


def test_three_endpoints_split_one_third_each():
    text = build([svc("svc1", "172.30.0.41")],
                 [slice_("s", "svc1", [ep("10.180.0.1"), ep("10.180.0.2"), ep("10.180.0.3")])])
    jumps = [ln for ln in text.splitlines() if ln.startswith("-A KUBE-SVC-") and "-j KUBE-SEP-" in ln]
    assert [" ".join(ln.split("-m statistic")[1:]).split(" -j")[0].strip() for ln in jumps] == [
        "--mode random --probability 0.3333333333", "--mode random --probability 0.5000000000", ""]


def test_no_endpoints_rejects_in_filter_and_has_no_nat_chains():
    text = build([svc("svc1", "172.30.0.41", type="NodePort", externalIPs=["192.168.99.11"],
                      ports=[{"name": "p80", "port": 80, "protocol": "TCP", "nodePort": 3001}])], [])
    flt = section(text, "filter")
    assert '-A KUBE-SERVICES -m comment --comment "ns1/svc1:p80 has no endpoints" -m tcp -p tcp -d 172.30.0.41 ' \
           '--dport 80 -j REJECT' in flt
    assert '-A KUBE-EXTERNAL-SERVICES -m comment --comment "ns1/svc1:p80 has no endpoints" -m tcp -p tcp ' \
           '-d 192.168.99.11 --dport 80 -j REJECT' in flt
    assert '-A KUBE-EXTERNAL-SERVICES -m comment --comment "ns1/svc1:p80 has no endpoints" -m addrtype ' \
           '--dst-type LOCAL -m tcp -p tcp --dport 3001 -j REJECT' in flt
    nat = section(text, "nat")
    assert "KUBE-SVC-" not in nat and "KUBE-SEP-" not in nat and "KUBE-EXT-" not in nat
    assert "ns1/svc1" not in nat


def test_nodeport_external_ip_and_load_balancer():
    text = build([svc("svc2", "172.30.0.42", type="LoadBalancer", externalIPs=["192.168.99.22"],
                      ports=[{"name": "p80", "port": 80, "protocol": "TCP", "nodePort": 3001}],
                      status={"loadBalancer": {"ingress": [{"ip": "1.2.3.4"}, {"ip": "5.6.7.8", "ipMode": "Proxy"}]}})],
                 [slice_("s", "svc2", [ep("10.180.0.2")], ns="ns1")])
    nat = section(text, "nat")
    ext = "KUBE-EXT-" + port_proto_hash("ns1/svc2:p80", "tcp")
    svc_chain = "KUBE-SVC-" + port_proto_hash("ns1/svc2:p80", "tcp")
    assert f'-A KUBE-SERVICES -m comment --comment "ns1/svc2:p80 external IP" -m tcp -p tcp -d 192.168.99.22 ' \
           f'--dport 80 -j {ext}' in nat
    assert f'-A KUBE-SERVICES -m comment --comment "ns1/svc2:p80 loadbalancer IP" -m tcp -p tcp -d 1.2.3.4 ' \
           f'--dport 80 -j {ext}' in nat
    assert "5.6.7.8" not in nat   # an ingress in Proxy mode is the load balancer's business
    assert f"-A KUBE-NODEPORTS -m comment --comment ns1/svc2:p80 -m tcp -p tcp --dport 3001 -j {ext}" in nat
    assert nat.index(f":{ext} - [0:0]") < nat.index(f":{svc_chain} - [0:0]")
    ext_rules = [ln for ln in nat.splitlines() if ln.startswith(f"-A {ext} ")]
    assert ext_rules == [
        f'-A {ext} -m comment --comment "masquerade traffic for ns1/svc2:p80 external destinations" -j KUBE-MARK-MASQ',
        f"-A {ext} -j {svc_chain}"]
    # the last KUBE-SERVICES rule hands the rest to KUBE-NODEPORTS
    svc_rules = [ln for ln in nat.splitlines() if ln.startswith("-A KUBE-SERVICES ")]
    assert svc_rules[-1].endswith("-m addrtype --dst-type LOCAL -j KUBE-NODEPORTS")


def test_load_balancer_source_ranges_firewall_chain():
    text = build([svc("svc5", "172.30.0.45", type="LoadBalancer", loadBalancerSourceRanges=["192.168.0.0/24"],
                      ports=[{"name": "p80", "port": 80, "protocol": "TCP", "nodePort": 3002}],
                      status={"loadBalancer": {"ingress": [{"ip": "1.2.3.5"}]}})],
                 [slice_("s", "svc5", [ep("10.180.0.3")])])
    h = port_proto_hash("ns1/svc5:p80", "tcp")
    nat, flt = section(text, "nat"), section(text, "filter")
    assert f'-A KUBE-SERVICES -m comment --comment "ns1/svc5:p80 loadbalancer IP" -m tcp -p tcp -d 1.2.3.5 ' \
           f'--dport 80 -j KUBE-FW-{h}' in nat
    fw = [ln for ln in nat.splitlines() if ln.startswith(f"-A KUBE-FW-{h} ")]
    assert fw == [
        f'-A KUBE-FW-{h} -m comment --comment "ns1/svc5:p80 loadbalancer IP" -s 192.168.0.0/24 -j KUBE-EXT-{h}',
        # the node (192.168.0.2) is inside a source range: allow traffic from the VIP itself
        f'-A KUBE-FW-{h} -m comment --comment "ns1/svc5:p80 loadbalancer IP" -s 1.2.3.5 -j KUBE-EXT-{h}',
        f'-A KUBE-FW-{h} -m comment --comment "other traffic to ns1/svc5:p80 will be dropped by KUBE-PROXY-FIREWALL"']
    assert f'-A KUBE-PROXY-FIREWALL -m comment --comment "ns1/svc5:p80 traffic not accepted by KUBE-FW-{h}" ' \
           f'-m tcp -p tcp -d 1.2.3.5 --dport 80 -j DROP' in flt


def test_session_affinity_client_ip_with_timeout():
    text = build([svc("svc1", "172.30.0.41", sessionAffinity="ClientIP",
                      sessionAffinityConfig={"clientIP": {"timeoutSeconds": 300}})],
                 [slice_("s", "svc1", [ep("10.180.0.1"), ep("10.180.0.2")])])
    nat = section(text, "nat")
    s1, s2 = "KUBE-SEP-SXIVWICOYRO3J4NJ", "KUBE-SEP-LXVODXWDISEETFEF"
    chain = [ln for ln in nat.splitlines() if ln.startswith("-A KUBE-SVC-XPGD46QRK7WJZT7O ")]
    assert chain[1:] == [
        f'-A KUBE-SVC-XPGD46QRK7WJZT7O -m comment --comment "ns1/svc1:p80 -> 10.180.0.1:80" -m recent --name {s1} '
        f'--rcheck --seconds 300 --reap -j {s1}',
        f'-A KUBE-SVC-XPGD46QRK7WJZT7O -m comment --comment "ns1/svc1:p80 -> 10.180.0.2:80" -m recent --name {s2} '
        f'--rcheck --seconds 300 --reap -j {s2}',
        f'-A KUBE-SVC-XPGD46QRK7WJZT7O -m comment --comment "ns1/svc1:p80 -> 10.180.0.1:80" -m statistic --mode '
        f'random --probability 0.5000000000 -j {s1}',
        f'-A KUBE-SVC-XPGD46QRK7WJZT7O -m comment --comment "ns1/svc1:p80 -> 10.180.0.2:80" -j {s2}']
    assert f"-A {s1} -m comment --comment ns1/svc1:p80 -m recent --name {s1} --set -m tcp -p tcp -j DNAT " \
           f"--to-destination 10.180.0.1:80" in nat
    # the default timeout is 3 hours
    text = build([svc("svc1", "172.30.0.41", sessionAffinity="ClientIP")], [slice_("s", "svc1", [ep("10.180.0.1")])])
    assert "--rcheck --seconds 10800 --reap" in text


def test_external_traffic_policy_local():
    svc_obj = svc("svc3", "172.30.0.43", type="NodePort", externalTrafficPolicy="Local",
                  ports=[{"name": "p80", "port": 80, "protocol": "TCP", "nodePort": 3003}])
    h = port_proto_hash("ns1/svc3:p80", "tcp")
    text = build([svc_obj], [slice_("s", "svc3", [ep("10.180.0.1", node="node1"), ep("10.180.0.2", node="node2")])])
    nat = section(text, "nat")
    ext = [ln for ln in nat.splitlines() if ln.startswith(f"-A KUBE-EXT-{h} ")]
    assert ext == [
        f'-A KUBE-EXT-{h} -m comment --comment "pod traffic for ns1/svc3:p80 external destinations" '
        f"-s 10.0.0.0/8 -j KUBE-SVC-{h}",
        f'-A KUBE-EXT-{h} -m comment --comment "masquerade LOCAL traffic for ns1/svc3:p80 external destinations" '
        f"-m addrtype --src-type LOCAL -j KUBE-MARK-MASQ",
        f'-A KUBE-EXT-{h} -m comment --comment "route LOCAL traffic for ns1/svc3:p80 external destinations" '
        f"-m addrtype --src-type LOCAL -j KUBE-SVC-{h}",
        f"-A KUBE-EXT-{h} -j KUBE-SVL-{h}"]
    svl = [ln for ln in nat.splitlines() if ln.startswith(f"-A KUBE-SVL-{h} ")]
    assert len(svl) == 1 and "10.180.0.1:80" in svl[0]          # only the endpoint on this node
    svc_rules = [ln for ln in nat.splitlines() if ln.startswith(f"-A KUBE-SVC-{h} ")]
    assert len(svc_rules) == 3                                  # masq + both endpoints (cluster IP is Cluster)
    # no endpoint on this node: external traffic is dropped, cluster IP traffic still works
    text = build([svc_obj], [slice_("s", "svc3", [ep("10.180.0.2", node="node2")])])
    flt, nat = section(text, "filter"), section(text, "nat")
    assert '-A KUBE-EXTERNAL-SERVICES -m comment --comment "ns1/svc3:p80 has no local endpoints" -m addrtype ' \
           '--dst-type LOCAL -m tcp -p tcp --dport 3003 -j DROP' in flt
    assert f"-A KUBE-EXT-{h} -j KUBE-SVL-{h}" not in nat and f":KUBE-SVL-{h}" not in nat
    assert f'-d 172.30.0.43 --dport 80 -j KUBE-SVC-{h}' in nat


def test_internal_traffic_policy_local():
    svc_obj = svc("svc4", "172.30.0.44", internalTrafficPolicy="Local")
    h = port_proto_hash("ns1/svc4:p80", "tcp")
    text = build([svc_obj], [slice_("s", "svc4", [ep("10.180.0.1", node="node1"), ep("10.180.0.2", node="node2")])])
    nat = section(text, "nat")
    assert f'-A KUBE-SERVICES -m comment --comment "ns1/svc4:p80 cluster IP" -m tcp -p tcp -d 172.30.0.44 ' \
           f'--dport 80 -j KUBE-SVL-{h}' in nat
    assert f":KUBE-SVC-{h}" not in nat
    svl = [ln for ln in nat.splitlines() if ln.startswith(f"-A KUBE-SVL-{h} ")]
    assert svl[0].endswith("! -s 10.0.0.0/8 -j KUBE-MARK-MASQ") and len(svl) == 2
    # no local endpoint: DROP (not REJECT: the service has endpoints elsewhere)
    text = build([svc_obj], [slice_("s", "svc4", [ep("10.180.0.2", node="node2")])])
    assert '-A KUBE-SERVICES -m comment --comment "ns1/svc4:p80 has no local endpoints" -m tcp -p tcp ' \
           '-d 172.30.0.44 --dport 80 -j DROP' in section(text, "filter")


def test_terminating_endpoints_fallback():
    svc_obj = svc("svc1", "172.30.0.41")
    # a ready endpoint exists: the terminating one is not used
    text = build([svc_obj], [slice_("s", "svc1", [ep("10.180.0.1"),
                                                  ep("10.180.0.2", ready=False, serving=True, terminating=True)])])
    assert "10.180.0.2:80" not in text and "10.180.0.1:80" in text
    # only terminating endpoints: the serving ones are used, the non-serving one is not
    text = build([svc_obj], [slice_("s", "svc1", [ep("10.180.0.2", ready=False, serving=True, terminating=True),
                                                  ep("10.180.0.3", ready=False, serving=False, terminating=True)])])
    assert "--to-destination 10.180.0.2:80" in text and "10.180.0.3" not in text
    assert "REJECT" not in text
    # nothing usable: REJECT
    text = build([svc_obj], [slice_("s", "svc1", [ep("10.180.0.3", ready=False, serving=False, terminating=True)])])
    assert '"ns1/svc1:p80 has no endpoints"' in text and "-j REJECT" in text


def test_masquerade_all_and_udp_sctp():
    cfg = R.RuleConfig(masquerade_all=True)
    text = build([svc("dns", "172.30.0.10", ports=[{"name": "dns", "port": 53, "protocol": "UDP"},
                                                    {"name": "sctp", "port": 99, "protocol": "SCTP"}])],
                 [slice_("s", "dns", [ep("10.180.0.5")], ports=[{"name": "dns", "port": 5353, "protocol": "UDP"},
                                                                {"name": "sctp", "port": 99, "protocol": "SCTP"}])],
                 cfg=cfg)
    assert '-m comment --comment "ns1/dns:dns cluster IP" -m udp -p udp -d 172.30.0.10 --dport 53 -j KUBE-MARK-MASQ' \
        in text
    assert "-m udp -p udp -j DNAT --to-destination 10.180.0.5:5353" in text
    assert "-m sctp -p sctp -j DNAT --to-destination 10.180.0.5:99" in text


def test_large_cluster_drops_endpoint_comments():
    text = build([svc("svc1", "172.30.0.41")], [slice_("s", "svc1", [ep("10.180.0.1"), ep("10.180.0.2")])],
                 large=True)
    nat = section(text, "nat")
    assert "-A KUBE-SEP-SXIVWICOYRO3J4NJ -s 10.180.0.1 -j KUBE-MARK-MASQ" in nat
    assert "-A KUBE-SVC-XPGD46QRK7WJZT7O -m statistic --mode random --probability 0.5000000000 " \
           "-j KUBE-SEP-SXIVWICOYRO3J4NJ" in nat
    assert '"ns1/svc1:p80 cluster IP"' in nat          # service-level comments stay
    assert R.is_large_cluster([600, 401]) and not R.is_large_cluster([1000])


def test_nodeport_addresses_and_localhost():
    text = build([svc("svc1", "172.30.0.41")], [],
                 cfg=R.RuleConfig(nodeport_ips=("127.0.0.1", "192.168.0.2"), localhost_nodeports=False))
    lines = section(text, "nat").splitlines()
    assert [ln for ln in lines if "KUBE-NODEPORTS" in ln and ln.startswith("-A KUBE-SERVICES")] == [
        f"-A KUBE-SERVICES -m comment --comment {R.NODEPORTS_COMMENT} -d 192.168.0.2 -j KUBE-NODEPORTS"]
    assert ":KUBE-FIREWALL" not in text
    text = build([svc("svc1", "172.30.0.41")], [], cfg=R.RuleConfig(localhost_nodeports=False))
    assert "-m addrtype --dst-type LOCAL ! -d 127.0.0.0/8 -j KUBE-NODEPORTS" in text


def test_render_nat_sections_keep_every_state_consistent():
    top = {R.KUBE_SERVICES: ["-A KUBE-SERVICES -j KUBE-SVC-A"], R.KUBE_NODEPORTS: [],
           R.KUBE_POSTROUTING: ["-A KUBE-POSTROUTING -j RETURN"], R.KUBE_MARK_MASQ: ["-A KUBE-MARK-MASQ -j MARK"]}
    groups = [{f"KUBE-SVC-{i}": [f"-A KUBE-SVC-{i} -j KUBE-SEP-{i}"], f"KUBE-SEP-{i}": [f"-A KUBE-SEP-{i} -j DNAT"]}
              for i in range(5)]
    one = R.render_nat(top, groups, ["KUBE-SEP-OLD"], max_section_chains=None)
    assert one.count("COMMIT") == 1 and one[-2:] == ["-X KUBE-SEP-OLD", "COMMIT"]
    many = R.render_nat(top, groups, ["KUBE-SEP-OLD"], max_section_chains=4)
    text = "\n".join(many)
    sections = [s for s in text.split("COMMIT") if s.strip()]
    # KUBE-MARK-MASQ first, two service ports per section, KUBE-SERVICES + deletions last
    assert ":KUBE-MARK-MASQ" in sections[0] and ":KUBE-SERVICES" not in sections[0]
    assert [s.count(":KUBE-SVC-") for s in sections[1:-1]] == [2, 2, 1]
    assert ":KUBE-SERVICES" in sections[-1] and "-X KUBE-SEP-OLD" in sections[-1]
    for i in range(5):   # a service port's chains always commit together
        assert sum(f":KUBE-SVC-{i} " in s and f":KUBE-SEP-{i} " in s for s in sections) == 1


# --- change tracking -------------------------------------------------------------------------


def test_endpoint_slices_merge_dedupe_and_sort():
    et = EndpointsChangeTracker("node1")
    et.endpoint_slice_update(slice_("a", "svc1", [ep("10.0.0.10", node="node1"), ep("10.0.0.9")]))
    # the same IP in another slice (moving between slices), terminating there: the ready copy wins
    et.endpoint_slice_update(slice_("b", "svc1", [ep("10.0.0.10", ready=False, terminating=True), ep("10.0.0.8")]))
    changes, _ = et.checkout()
    emap = {}
    apply_endpoint_changes(emap, changes)
    eps = emap[ServicePortName("ns1", "svc1", "p80", "TCP")]
    assert [e.string for e in eps] == ["10.0.0.10:80", "10.0.0.8:80", "10.0.0.9:80"]   # sorted as strings
    assert eps[0].ready and eps[0].is_local and not eps[1].is_local
    # the same content again is no change; a slice without the service label is ignored
    assert not et.endpoint_slice_update(slice_("a", "svc1", [ep("10.0.0.10", node="node1"), ep("10.0.0.9")]))
    nolabel = slice_("c", "svc1", [ep("10.0.0.1")])
    del nolabel["metadata"]["labels"]
    assert not et.endpoint_slice_update(nolabel)
    # IPv6 slices are not ours
    v6 = slice_("d", "svc1", [ep("fd00::1")])
    v6["addressType"] = "IPv6"
    et.endpoint_slice_update(v6)
    changes, _ = et.checkout()
    apply_endpoint_changes(emap, changes)
    assert len(emap[ServicePortName("ns1", "svc1", "p80", "TCP")]) == 3


def test_service_tracker_skips_headless_and_no_op_updates():
    st = ServiceChangeTracker()
    assert not st.update(None, svc("h", "None"))
    assert not st.update(None, {"metadata": {"namespace": "ns1", "name": "x"},
                                "spec": {"type": "ExternalName", "externalName": "example.com"}})
    assert st.update(None, svc("a", "10.96.0.5"))
    assert not st.update(svc("a", "10.96.0.5"), None)     # add then delete before a sync: nothing to do
    smap = {}
    st.update(None, svc("u", "10.96.0.6", ports=[{"name": "dns", "port": 53, "protocol": "UDP"}]))
    apply_service_changes(smap, st.checkout())
    res = apply_service_changes(smap, (st.update(svc("u", "10.96.0.6"), None), st.checkout())[1])
    assert res.updated_services == {"ns1/u"} and [p.name.port for p in res.deleted_udp_ports] == ["dns"]
    assert smap == {}


def test_stale_udp_endpoints_and_conntrack_filters():
    spn = ServicePortName("ns1", "dns", "dns", "UDP")
    udp = [{"name": "dns", "port": 53, "protocol": "UDP"}]
    st, et = ServiceChangeTracker(), EndpointsChangeTracker("node1")
    st.update(None, svc("dns", "10.96.0.10", ports=[{**udp[0], "nodePort": 30053}], type="NodePort",
                        externalIPs=["192.168.99.1"]))
    smap, emap = {}, {}
    svc_res = apply_service_changes(smap, st.checkout())
    et.endpoint_slice_update(slice_("s", "dns", [ep("10.1.0.1"), ep("10.1.0.2")], ports=udp))
    changes, _ = et.checkout()
    res = apply_endpoint_changes(emap, changes)
    assert res.newly_active_udp_services == [spn] and res.deleted_udp_endpoints == []
    assert conntrack.stale_entry_filters(smap, svc_res, res) == [
        ["-D", "--orig-dst", "10.96.0.10", "-p", "udp", "--dport", "53"],
        ["-D", "--orig-dst", "192.168.99.1", "-p", "udp", "--dport", "53"],
        ["-D", "-p", "udp", "--dport", "30053"]]
    # 10.1.0.2 leaves; 10.1.0.1 stops serving (terminating): both lose their entries
    et.endpoint_slice_update(slice_("s", "dns", [ep("10.1.0.1", ready=False, serving=False, terminating=True)],
                                    ports=udp))
    changes, _ = et.checkout()
    res = apply_endpoint_changes(emap, changes)
    assert sorted(res.deleted_udp_endpoints) == [(spn, "10.1.0.1:53"), (spn, "10.1.0.2:53")]
    filters = conntrack.stale_entry_filters(smap, apply_service_changes(smap, {}), res)
    assert ["-D", "--orig-dst", "10.96.0.10", "--dst-nat", "10.1.0.2", "-p", "udp"] in filters
    assert ["-D", "-p", "udp", "--dport", "30053", "--dst-nat", "10.1.0.2"] in filters
    assert ["-D", "--orig-dst", "192.168.99.1", "--dst-nat", "10.1.0.2", "-p", "udp"] in filters


# --- the proxier's partial syncs (iptables replaced by a recorder) -----------------------------


class RecordingIPTables(IPTables):
    def __init__(self, fail: bool = False) -> None:
        super().__init__("nft")
        self.restored: list[str] = []
        self.jumps = 0
        self.fail = fail
        self.existing: set[str] = set()

    async def restore(self, text: str) -> None:
        if self.fail:
            raise IPTablesError("iptables-restore failed at line 3: boom")
        self.restored.append(text)

    async def missing_jumps(self, jumps) -> list:
        self.jumps += 1
        return [j for j in jumps if j.src == "PREROUTING"]

    async def chains(self, table: str) -> set[str]:
        return set(self.existing)


def make_proxier(ipt: IPTables, **kw) -> Proxier:
    p = Proxier(ipt, ProxierConfig(hostname="node1", rules=CFG, sync_period=3600, **kw))
    return p


async def test_partial_sync_writes_only_changed_chains():
    ipt = RecordingIPTables()
    ipt.existing = {"KUBE-SVC-LEFTOVERFROMBEFOR", "KUBE-SERVICES", "OTHER-CHAIN"}
    p = make_proxier(ipt)
    p.on_service_add(svc("svc1", "172.30.0.41"))
    p.on_service_add(svc("svc2", "172.30.0.42"))
    p.on_endpoint_slice_add(slice_("a", "svc1", [ep("10.180.0.1"), ep("10.180.0.2")]))
    p.on_endpoint_slice_add(slice_("b", "svc2", [ep("10.180.0.9")]))
    assert (await p.sync()).error == "not initialized" and not ipt.restored
    p.on_services_synced()
    p.on_endpoint_slices_synced()
    stats = await p.sync()
    assert stats.ok and stats.full and ipt.jumps == 1
    full = ipt.restored[-1]
    assert full.count(":KUBE-SEP-") == 3 and full.count(":KUBE-SVC-") == 3   # 2 services + a leftover
    assert ":KUBE-SVC-LEFTOVERFROMBEFOR - [0:0]" in full and "-X KUBE-SVC-LEFTOVERFROMBEFOR" in full
    assert "OTHER-CHAIN" not in full
    # missing jump rules go into the same restore, at the top of their built-in chains
    assert '-I PREROUTING 1 -m comment --comment "kubernetes service portals" -j KUBE-SERVICES' in full

    # nothing changed: nothing to write
    stats = await p.sync()
    assert stats.ok and not stats.full and len(ipt.restored) == 1

    # one endpoint of svc1 goes away: svc1's chain is rewritten, its SEP deleted, svc2 untouched
    p.on_endpoint_slice_update(None, slice_("a", "svc1", [ep("10.180.0.1")]))
    stats = await p.sync()
    assert stats.ok and not stats.full and stats.regenerated == 1 and ipt.jumps == 1
    assert ipt.restored[-1] == dedent("""
        *nat
        :KUBE-SVC-XPGD46QRK7WJZT7O - [0:0]
        :KUBE-SEP-LXVODXWDISEETFEF - [0:0]
        -A KUBE-SVC-XPGD46QRK7WJZT7O -m comment --comment "ns1/svc1:p80 cluster IP" -m tcp -p tcp -d 172.30.0.41 --dport 80 ! -s 10.0.0.0/8 -j KUBE-MARK-MASQ
        -A KUBE-SVC-XPGD46QRK7WJZT7O -m comment --comment "ns1/svc1:p80 -> 10.180.0.1:80" -j KUBE-SEP-SXIVWICOYRO3J4NJ
        -X KUBE-SEP-LXVODXWDISEETFEF
        COMMIT""") + "\n"

    # svc2 loses all its endpoints: KUBE-SERVICES changes, filter gets the REJECT, its chains go
    p.on_endpoint_slice_delete(slice_("b", "svc2", []))
    await p.sync()
    last = ipt.restored[-1]
    assert "*filter" in last and '"ns1/svc2:p80 has no endpoints"' in last
    assert ":KUBE-SERVICES - [0:0]" in last and "-X KUBE-SVC-" in last and "-X KUBE-SEP-" in last
    assert "KUBE-SVC-XPGD46QRK7WJZT7O" not in last.replace("-j KUBE-SVC-XPGD46QRK7WJZT7O", "")

    # a failed restore makes the next sync full again
    ipt.fail = True
    p.on_service_add(svc("svc3", "172.30.0.43"))
    stats = await p.sync()
    assert not stats.ok and "boom" in stats.error and p.need_full_sync
    ipt.fail = False
    p.on_service_add(svc("svc4", "172.30.0.44"))
    stats = await p.sync()
    assert stats.ok and stats.full and '"ns1/svc3:p80 has no endpoints"' in ipt.restored[-1]
    assert p.metrics.restore_failures._value.get() == 1


async def test_sync_period_forces_full_sync():
    ipt = RecordingIPTables()
    p = Proxier(ipt, ProxierConfig(hostname="node1", rules=CFG, sync_period=0.05))
    p.on_service_add(svc("svc1", "172.30.0.41"))
    p.on_endpoint_slice_add(slice_("a", "svc1", [ep("10.180.0.1")]))
    p.on_services_synced()
    p.on_endpoint_slices_synced()
    assert (await p.sync()).full
    assert not (await p.sync()).full
    await asyncio.sleep(0.06)
    stats = await p.sync()
    assert stats.full and ":KUBE-SVC-XPGD46QRK7WJZT7O" in ipt.restored[-1] and ipt.jumps == 2
    import gc
    assert gc.isenabled()      # paused while generating only


async def test_sync_runner_bounds_frequency():
    ran: list[float] = []
    loop = asyncio.get_running_loop()

    async def fn() -> None:
        ran.append(loop.time())

    r = SyncRunner(fn, min_interval=0.2, max_interval=100, burst=2)
    task = asyncio.create_task(r.loop())
    try:
        for _ in range(5):      # requests close together are merged
            r.request()
        await asyncio.sleep(0.05)
        assert len(ran) == 1
        r.request()
        await asyncio.sleep(0.05)
        assert len(ran) == 2    # the burst allows a second run at once
        r.request()
        await asyncio.sleep(0.05)
        assert len(ran) == 2    # then the rate limit holds it back...
        await asyncio.sleep(0.2)
        assert len(ran) == 3    # ...until a token is back
        assert ran[2] - ran[1] >= 0.1
    finally:
        task.cancel()


def test_helpers():
    assert parse_duration("1s") == 1.0 and parse_duration("500ms") == 0.5 and parse_duration("1m30s") == 90.0
    assert parse_duration("0") == 0.0
    with pytest.raises(Exception):
        parse_duration("ten seconds")
    assert format_rule("INPUT", ["-m", "comment", "--comment", "kubernetes service portals", "-j", "X"]) == \
        '-A INPUT -m comment --comment "kubernetes service portals" -j X'


async def test_missing_jump_rules_are_inserted_in_the_restore():
    from kubelab import proc

    class Listing(IPTables):
        def __init__(self) -> None:
            super().__init__("nft")
            self.calls: list[tuple] = []

        async def run(self, *args: str, check: bool = True) -> proc.Result:
            self.calls.append(args)
            if "-S" in args:
                chain = args[-1]
                text = {"PREROUTING": '-P PREROUTING ACCEPT\n-A PREROUTING -m comment --comment '
                                      '"kubernetes service portals" -j KUBE-SERVICES\n',
                        # someone's rule jumping to KUBE-SERVICES, not ours: iptables -C decides
                        "OUTPUT": "-P OUTPUT ACCEPT\n-A OUTPUT -d 10.0.0.1/32 -j KUBE-SERVICES\n"}.get(
                            chain, f"-P {chain} ACCEPT\n")
                return proc.Result(0, text.encode(), b"")
            return proc.Result(1, b"", b"iptables: Bad rule")   # -C: not there

    ipt = Listing()
    nat = [j for j in R.JUMP_RULES if j.table == "nat"]
    missing = await ipt.missing_jumps(nat)
    assert [(j.src, j.dst) for j in missing] == [("OUTPUT", R.KUBE_SERVICES), ("POSTROUTING", R.KUBE_POSTROUTING)]
    assert sum(1 for c in ipt.calls if "-S" in c) == 3            # each built-in chain listed once
    assert [c for c in ipt.calls if "-C" in c] == [("-t", "nat", "-C", "OUTPUT", "-m", "comment", "--comment",
                                                    "kubernetes service portals", "-j", "KUBE-SERVICES")]
    assert R.jump_inserts(missing, "nat") == [
        '-I OUTPUT 1 -m comment --comment "kubernetes service portals" -j KUBE-SERVICES',
        '-I POSTROUTING 1 -m comment --comment "kubernetes postrouting rules" -j KUBE-POSTROUTING']
    assert R.jump_inserts(missing, "filter") == []
