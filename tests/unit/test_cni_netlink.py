"""The CNI plugin's rtnetlink codec (kubelab.cni.netlink) and its launcher script: bytes as the
kernel lays them out (linux/netlink.h, if_link.h, if_addr.h, rtnetlink.h), and round trips."""
from __future__ import annotations

import json
import os
import socket
import struct
import subprocess

import pytest

from kubelab.cni import launcher
from kubelab.cni import netlink as nl


def test_getlink_by_name_is_laid_out_as_the_kernel_reads_it() -> None:
    data = nl.encode("ifinfmsg", nl.RTM_GETLINK, nl.NLM_F_REQUEST, 7, {"index": 0}, [("IFLA_IFNAME", "lo")])
    # nlmsghdr (16) + ifinfomsg (16) + IFLA_IFNAME: nla header 4 + "lo\0" padded to 4
    assert len(data) == 40
    assert struct.unpack_from("=IHHII", data) == (40, nl.RTM_GETLINK, nl.NLM_F_REQUEST, 7, 0)
    assert struct.unpack_from("=BxHiII", data, 16) == (0, 0, 0, 0, 0)
    assert data[32:] == struct.pack("=HH", 7, 3) + b"lo\0\0"


def test_veth_with_its_peer_in_another_namespace_round_trips() -> None:
    peer = [("IFLA_IFNAME", "eth0"), ("IFLA_NET_NS_FD", 9), ("IFLA_MTU", 1450), ("IFLA_ADDRESS", "0a:58:0a:f4:01:02")]
    attrs = [("IFLA_IFNAME", "veth1234abcd"), ("IFLA_MTU", 1450), ("IFLA_MASTER", 5),
             ("IFLA_LINKINFO", {"attrs": [("IFLA_INFO_KIND", "veth"),
                                          ("IFLA_INFO_DATA", {"attrs": [("VETH_INFO_PEER", {"attrs": peer})]})]})]
    data = nl.encode("ifinfmsg", nl.RTM_NEWLINK, nl.NLM_F_REQUEST | nl.NLM_F_ACK | nl.NLM_F_CREATE, 1,
                     {"flags": nl.IFF_UP, "change": nl.IFF_UP}, attrs)
    assert struct.unpack_from("=I", data)[0] == len(data) and len(data) % 4 == 0
    m = nl.decode("ifinfmsg", data)
    assert (m["flags"], m["change"], m["index"]) == (nl.IFF_UP, nl.IFF_UP, 0)
    assert (m.get_attr("IFLA_IFNAME"), m.get_attr("IFLA_MTU"), m.get_attr("IFLA_MASTER")) == ("veth1234abcd", 1450, 5)
    info = m.get_attr("IFLA_LINKINFO")
    assert info["IFLA_INFO_KIND"] == "veth"
    assert info["IFLA_INFO_DATA"]["VETH_INFO_PEER"] == {"IFLA_IFNAME": "eth0", "IFLA_NET_NS_FD": 9, "IFLA_MTU": 1450,
                                                        "IFLA_ADDRESS": "0a:58:0a:f4:01:02"}


def test_bridge_data_and_the_nested_flag() -> None:
    data = nl.encode("ifinfmsg", nl.RTM_NEWLINK, 0, 1, {"index": 3}, [
        ("IFLA_LINKINFO", {"attrs": [("IFLA_INFO_KIND", "bridge"),
                                     ("IFLA_INFO_DATA", {"attrs": [("IFLA_BR_NF_CALL_IPTABLES", 1)]})]})])
    info = nl.decode("ifinfmsg", data).get_attr("IFLA_LINKINFO")
    assert info == {"IFLA_INFO_KIND": "bridge", "IFLA_INFO_DATA": {"IFLA_BR_NF_CALL_IPTABLES": 1}}
    hairpin = nl.encode("ifinfmsg", nl.RTM_SETLINK, 0, 2, {"family": nl.AF_BRIDGE, "index": 3},
                        [("IFLA_PROTINFO", {"attrs": [("IFLA_BRPORT_MODE", 1)]}, nl.NLA_F_NESTED)])
    # the bridge driver takes IFLA_PROTINFO as port attributes only with NLA_F_NESTED set
    assert struct.unpack_from("=HH", hairpin, 32) == (4 + 8, 12 | nl.NLA_F_NESTED)
    assert struct.unpack_from("=HHB", hairpin, 36) == (5, 4, 1)
    assert nl.decode("ifinfmsg", hairpin).get_attr("IFLA_PROTINFO") == {"IFLA_BRPORT_MODE": 1}


@pytest.mark.parametrize("family,addr,prefix", [(socket.AF_INET, "10.244.1.7", 24),
                                                (socket.AF_INET6, "fd00:10:244::7", 64)])
def test_addresses_round_trip(family: int, addr: str, prefix: int) -> None:
    data = nl.encode("ifaddrmsg", nl.RTM_NEWADDR, 0, 3, {"family": family, "prefixlen": prefix, "index": 4},
                     [("IFA_LOCAL", addr), ("IFA_ADDRESS", addr)])
    m = nl.decode("ifaddrmsg", data)
    assert (m["family"], m["prefixlen"], m["index"]) == (family, prefix, 4)
    assert m.get_attr("IFA_LOCAL") == m.get_attr("IFA_ADDRESS") == addr


def test_routes_round_trip_and_a_default_route_has_no_dst() -> None:
    data = nl.encode("rtmsg", nl.RTM_NEWROUTE, 0, 4,
                     {"family": socket.AF_INET, "dst_len": 24, "table": nl.RT_TABLE_MAIN, "proto": 0x6B,
                      "type": nl.RTN_UNICAST}, [("RTA_TABLE", 254), ("RTA_DST", "10.244.2.0"), ("RTA_GATEWAY", "192.168.56.12")])
    m = nl.decode("rtmsg", data)
    assert (m["dst_len"], m["table"], m["proto"], m["type"]) == (24, 254, 0x6B, nl.RTN_UNICAST)
    assert (m.get_attr("RTA_DST"), m.get_attr("RTA_GATEWAY"), m.get_attr("RTA_TABLE")) == ("10.244.2.0", "192.168.56.12", 254)
    default = nl.decode("rtmsg", nl.encode("rtmsg", nl.RTM_NEWROUTE, 0, 5, {"family": socket.AF_INET},
                                           [("RTA_OIF", 2), ("RTA_GATEWAY", "10.0.0.1")]))
    assert default.get_attr("RTA_DST") is None and default.get_attr("RTA_OIF") == 2


def test_unknown_attributes_are_skipped_when_decoding_and_refused_when_encoding() -> None:
    data = bytearray(nl.encode("ifinfmsg", nl.RTM_NEWLINK, 0, 1, {}, [("IFLA_IFNAME", "x")]))
    data += struct.pack("=HH", 8, 99) + b"\1\2\3\4"      # an attribute this codec does not know
    struct.pack_into("=I", data, 0, len(data))
    assert nl.decode("ifinfmsg", bytes(data)).attrs == {"IFLA_IFNAME": "x"}
    with pytest.raises(ValueError, match="IFLA_NOPE"):
        nl.encode("ifinfmsg", nl.RTM_NEWLINK, 0, 1, {}, [("IFLA_NOPE", 1)])


def test_the_launcher_runs_the_plugin_without_site(tmp_path) -> None:
    exe = launcher.install(tmp_path)
    text = exe.read_text()
    assert text.startswith("#!") and text.splitlines()[0].endswith(" -S") and os.access(exe, os.X_OK)
    env = {"PATH": os.environ.get("PATH", ""), "CNI_COMMAND": "VERSION"}
    out = subprocess.run([str(exe)], input=b'{"cniVersion": "1.0.0"}', env=env, capture_output=True, timeout=30)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["supportedVersions"][-1] == "1.0.0"
    # bad input: the CNI error JSON and exit 1, not a traceback
    bad = subprocess.run([str(exe)], input=b"{", capture_output=True, timeout=30,
                         env=dict(env, CNI_COMMAND="ADD", CNI_CONTAINERID="c1", CNI_NETNS="/nonexistent",
                                  CNI_IFNAME="eth0", CNI_PATH="/usr/lib/cni"))
    assert bad.returncode == 1 and json.loads(bad.stdout)["code"] == 6 and bad.stderr == b""
