"""kubelab-bridge's pure logic: the CNI environment and config checks (libcni skel's messages and the
spec's error codes), result conversion between 1.0 and 0.4/0.3/0.2, the bridge config, ipMasq
chain names, and host-local IPAM (config, round-robin allocation, release, the on-disk layout and
its lock) against a temporary data dir.

The real plugin, against the kernel and the reference plugin, is tests/e2e/test_cni_bridge.py.
"""
from __future__ import annotations

import io
import json
import multiprocessing
import os

import pytest

from kubelab.cni import ipam, masq, spec
from kubelab.cni.bridge import BridgeConf, ensure_bridge_netfilter, parse_conf
from kubelab.cni.main import run
from kubelab.cni.spec import CNIError

ENV = {"CNI_COMMAND": "ADD", "CNI_CONTAINERID": "c1", "CNI_NETNS": "/run/netns/x", "CNI_IFNAME": "eth0",
       "CNI_PATH": "/usr/lib/cni"}
CONF = {"cniVersion": "1.0.0", "name": "net1", "type": "kubelab-bridge",
        "ipam": {"type": "host-local", "ranges": [[{"subnet": "10.1.0.0/24"}]]}}


def plugin(env: dict[str, str], stdin: bytes = b"") -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    rc = run(env, io.BytesIO(stdin), out, err)
    return rc, out.getvalue(), err.getvalue()


def error_of(env: dict[str, str], conf: object) -> dict[str, object]:
    rc, out, _ = plugin(env, conf if isinstance(conf, bytes) else json.dumps(conf).encode())
    assert rc == 1
    return json.loads(out)


# -- environment, config, versions (all decided before any kernel work) ---------------------

def test_version_output() -> None:
    rc, out, _ = plugin({"CNI_COMMAND": "VERSION"})
    assert rc == 0
    assert out.endswith("\n") and "\n" not in out[:-1]
    assert json.loads(out) == {"cniVersion": "1.0.0",
                               "supportedVersions": ["0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0"]}


def test_no_command_prints_about_and_succeeds() -> None:
    rc, out, err = plugin({})
    assert rc == 0 and out == ""
    assert "kubelab-bridge" in err and "CNI protocol versions supported: 0.1.0, 0.2.0" in err


@pytest.mark.parametrize("env,missing", [
    ({"CNI_COMMAND": "ADD"}, "CNI_CONTAINERID,CNI_NETNS,CNI_IFNAME,CNI_PATH"),
    ({"CNI_COMMAND": "DEL", "CNI_PATH": "/p"}, "CNI_CONTAINERID,CNI_IFNAME"),
    ({"CNI_COMMAND": "CHECK", "CNI_CONTAINERID": "a", "CNI_IFNAME": "e", "CNI_PATH": "/p"}, "CNI_NETNS"),
])
def test_missing_env_is_code_4_naming_the_variables(env: dict[str, str], missing: str) -> None:
    err = error_of(env, CONF)
    assert err == {"code": 4, "msg": f"required env variables [{missing}] missing"}


def test_del_does_not_need_netns() -> None:
    env = {k: v for k, v in ENV.items() if k != "CNI_NETNS"}
    args = spec.args_from_env(dict(env, CNI_COMMAND="DEL"), b"")
    assert args.netns == "" and args.command == "DEL"


@pytest.mark.parametrize("env,conf,expected", [
    (dict(ENV, CNI_COMMAND="FOO"), CONF, {"code": 4, "msg": "unknown CNI_COMMAND: FOO"}),
    (dict(ENV, CNI_CONTAINERID="a%b"), CONF,
     {"code": 4, "msg": "invalid characters in containerID", "details": "a%b"}),
    (dict(ENV, CNI_CONTAINERID="-ab"), CONF,
     {"code": 4, "msg": "invalid characters in containerID", "details": "-ab"}),
    (dict(ENV, CNI_IFNAME="eth0123456789012"), CONF,
     {"code": 4, "msg": "interface name is too long",
      "details": "interface name should be less than 16 characters"}),
    (dict(ENV, CNI_IFNAME="eth:0"), CONF,
     {"code": 4, "msg": "interface name contains / or : or whitespace characters"}),
    (ENV, b"garbage", None),
    (ENV, {"cniVersion": "1.0.0", "type": "x"}, {"code": 7, "msg": "missing network name"}),
    (ENV, dict(CONF, name="bad name"),
     {"code": 7, "msg": "invalid characters found in network name", "details": "bad name"}),
])
def test_skel_validation_errors(env: dict[str, str], conf: object, expected: dict | None) -> None:
    err = error_of(env, conf)
    if expected is None:  # undecodable config
        assert err["code"] == 6 and err["msg"].startswith("error unmarshall network config:")
    else:
        err.pop("cniVersion", None)
        assert err == expected


def test_incompatible_version_is_code_1_with_the_supported_list() -> None:
    err = error_of(ENV, dict(CONF, cniVersion="9.0.0"))
    assert err["code"] == 1 and err["msg"] == "incompatible CNI versions"
    assert err["details"] == ('config is "9.0.0", plugin supports ["0.1.0" "0.2.0" "0.3.0" "0.3.1" '
                              '"0.4.0" "1.0.0"]')
    assert error_of(ENV, dict(CONF, cniVersion="one"))["code"] == 6


def test_check_needs_config_version_0_4() -> None:
    err = error_of(dict(ENV, CNI_COMMAND="CHECK"), dict(CONF, cniVersion="0.3.1"))
    assert err == {"cniVersion": "0.3.1", "code": 1, "msg": "config version does not allow CHECK"}


@pytest.mark.parametrize("key,value,word", [
    ("mtu", "x", "mtu must be an integer"),
    ("isGateway", "yes", "isGateway must be true or false"),
    ("bridge", 5, "bridge must be a string"),
    ("ipam", [], "ipam must be an object"),
])
def test_bad_bridge_config_types_are_code_7(key: str, value: object, word: str) -> None:
    err = error_of(ENV, dict(CONF, **{key: value}))
    assert err["code"] == 7 and word in err["msg"] and err["cniVersion"] == "1.0.0"


def test_bridge_config_rules() -> None:
    with pytest.raises(CNIError) as e:
        parse_conf(dict(CONF, vlan=5000), "", "1.0.0")
    assert e.value.code == 7 and "invalid VLAN ID 5000" in e.value.msg
    with pytest.raises(CNIError) as e:
        parse_conf(dict(CONF, vlan=10), "", "1.0.0")
    assert e.value.code == 2
    with pytest.raises(CNIError) as e:
        parse_conf(dict(CONF, runtimeConfig={"mac": "zz:00:00:00:00:00"}), "", "1.0.0")
    assert e.value.code == 7
    err = error_of(ENV, dict(CONF, hairpinMode=True, promiscMode=True))
    assert err["code"] == 7 and err["msg"] == "cannot set hairpin mode and promiscuous mode at the same time."


def test_bridge_config_defaults_and_mac_precedence() -> None:
    c = parse_conf(dict(CONF), "IgnoreUnknown=1;K8S_POD_NAME=p", "1.0.0")
    assert isinstance(c, BridgeConf)
    assert (c.bridge, c.is_gateway, c.ip_masq, c.mtu, c.hairpin, c.mac, c.ipam_type) == \
        ("cni0", False, False, 0, False, "", "host-local")
    c = parse_conf(dict(CONF, isDefaultGateway=True, args={"cni": {"mac": "02:00:00:00:00:02"}}),
                   "MAC=02:00:00:00:00:01", "1.0.0")
    assert c.mac == "02:00:00:00:00:02"
    c = parse_conf(dict(CONF, runtimeConfig={"mac": "02:00:00:00:00:03"}, args={"cni": {"mac": "02:00:00:00:00:02"}}),
                   "MAC=02:00:00:00:00:01", "1.0.0")
    assert c.mac == "02:00:00:00:00:03"
    with pytest.raises(CNIError) as e:
        parse_conf(dict(CONF), "K8S_POD_NAME=p", "1.0.0")
    assert e.value.code == 4 and 'unknown args ["K8S_POD_NAME"]' in e.value.msg


# -- results ---------------------------------------------------------------------------------

RESULT = spec.new_result(
    [{"name": "cni0", "mac": "aa:00:00:00:00:01"}, {"name": "veth01234567", "mac": "aa:00:00:00:00:02"},
     {"name": "eth0", "mac": "aa:00:00:00:00:03", "sandbox": "/run/netns/x"}],
    [{"interface": 2, "address": "10.1.0.5/24", "gateway": "10.1.0.1"},
     {"interface": 2, "address": "fd00::5/64", "gateway": "fd00::1"}],
    [{"dst": "0.0.0.0/0"}, {"dst": "10.9.0.0/16", "gw": "10.1.0.9"}, {"dst": "::/0", "gw": "fd00::1"}],
    {"nameservers": ["10.96.0.10"], "search": ["svc.cluster.local"]})


def test_result_1_0_shape_and_key_order() -> None:
    r = spec.convert_result(RESULT, "1.0.0")
    assert list(r) == ["cniVersion", "interfaces", "ips", "routes", "dns"]
    assert list(r["ips"][0]) == ["interface", "address", "gateway"]
    assert "version" not in r["ips"][0]
    text = spec.dumps(r)
    assert text.startswith('{\n    "cniVersion": "1.0.0",\n    "interfaces": [') and not text.endswith("\n")


@pytest.mark.parametrize("version", ["0.3.0", "0.3.1", "0.4.0"])
def test_result_down_to_0_4_adds_ip_versions(version: str) -> None:
    r = spec.convert_result(RESULT, version)
    assert r["cniVersion"] == version
    assert [list(i) for i in r["ips"]] == [["version", "interface", "address", "gateway"]] * 2
    assert [i["version"] for i in r["ips"]] == ["4", "6"]
    assert r["interfaces"] == RESULT["interfaces"] and r["routes"] == RESULT["routes"]
    assert spec.parse_result(r) == RESULT  # and back up to 1.0


def test_result_down_to_0_2_folds_per_family() -> None:
    r = spec.convert_result(RESULT, "0.2.0")
    assert r == {"cniVersion": "0.2.0",
                 "ip4": {"ip": "10.1.0.5/24", "gateway": "10.1.0.1",
                         "routes": [{"dst": "0.0.0.0/0"}, {"dst": "10.9.0.0/16", "gw": "10.1.0.9"}]},
                 "ip6": {"ip": "fd00::5/64", "gateway": "fd00::1", "routes": [{"dst": "::/0", "gw": "fd00::1"}]},
                 "dns": {"nameservers": ["10.96.0.10"], "search": ["svc.cluster.local"]}}
    back = spec.parse_result(r)
    assert [i["address"] for i in back["ips"]] == ["10.1.0.5/24", "fd00::5/64"]
    with pytest.raises(CNIError):
        spec.convert_result(spec.new_result([], [], []), "0.2.0")


def test_empty_lists_are_left_out_but_dns_stays() -> None:
    assert spec.new_result() == {"cniVersion": "1.0.0", "dns": {}}
    with pytest.raises(CNIError) as e:
        spec.parse_result({"cniVersion": "1.0.0", "ips": [{"gateway": "1.2.3.4"}]})
    assert e.value.code == 6
    with pytest.raises(CNIError) as e:
        spec.parse_result({"cniVersion": "7.0.0"})
    assert e.value.code == 1


def test_error_json() -> None:
    e = CNIError(11, "try again", "busy")
    assert e.to_dict("1.0.0") == {"cniVersion": "1.0.0", "code": 11, "msg": "try again", "details": "busy"}
    assert CNIError(7, "bad").to_dict() == {"code": 7, "msg": "bad"}


def test_masq_chain_and_comment_match_the_reference() -> None:
    # the reference bridge plugin made this chain for network "reftest", container "abc123"
    assert masq.chain_name("reftest", "abc123") == "CNI-831ad61a2aaf2e8f61127352"
    assert len(masq.chain_name("n", "x" * 64)) == 28
    assert masq.comment("net", "c1") == 'name: "net" id: "c1"'
    assert masq.go_quote('a"b\\c') == '"a\\"b\\\\c"'


def test_bridge_netfilter_message_when_br_netfilter_is_missing(tmp_path) -> None:
    msg = ensure_bridge_netfilter(str(tmp_path))
    assert "net/bridge is missing" in msg and "modprobe br_netfilter" in msg and "\n" not in msg
    (tmp_path / "net/bridge").mkdir(parents=True)
    for f in ("bridge-nf-call-iptables", "bridge-nf-call-ip6tables"):
        (tmp_path / "net/bridge" / f).write_text("0\n")
    assert ensure_bridge_netfilter(str(tmp_path)) == ""
    assert (tmp_path / "net/bridge/bridge-nf-call-iptables").read_text() == "1"
    assert (tmp_path / "net/bridge/bridge-nf-call-ip6tables").read_text() == "1"


# -- host-local ------------------------------------------------------------------------------

def ipam_conf(tmp_path, ranges, **kw) -> ipam.IPAMConfig:
    conf = {"cniVersion": "1.0.0", "name": "net1",
            "ipam": dict({"type": "host-local", "dataDir": str(tmp_path), "ranges": ranges}, **kw)}
    return ipam.load_config(conf)


def test_ipam_config_defaults(tmp_path) -> None:
    cfg = ipam_conf(tmp_path, [[{"subnet": "10.1.0.0/24"}], [{"subnet": "fd00:1::/120"}]])
    r4, r6 = cfg.range_sets[0].ranges[0], cfg.range_sets[1].ranges[0]
    assert (str(r4.range_start), str(r4.range_end), str(r4.gateway)) == ("10.1.0.1", "10.1.0.254", "10.1.0.1")
    assert (str(r6.range_start), str(r6.range_end), str(r6.gateway)) == ("fd00:1::1", "fd00:1::ff", "fd00:1::1")
    assert cfg.dir == os.path.join(str(tmp_path), "net1")
    old = ipam.load_config({"name": "n", "cniVersion": "0.3.1",
                            "ipam": {"subnet": "10.2.0.0/16", "rangeStart": "10.2.3.4", "gateway": "10.2.0.254"}})
    assert old.data_dir == "/var/lib/cni/networks"
    assert str(old.range_sets[0].ranges[0].range_start) == "10.2.3.4"


@pytest.mark.parametrize("ranges,words", [
    ([], "no IP ranges specified"),
    ([[{"subnet": "10.1.0.0/31"}]], "too small to allocate from"),
    ([[{"subnet": "10.1.0.0"}]], "invalid CIDR address"),
    ([[{"subnet": "10.1.0.0/24", "gateway": "10.2.0.1"}]], "not in network"),
    ([[{"subnet": "10.1.0.0/24", "rangeStart": "10.1.1.5"}]], "not in network"),
    ([[{"subnet": "10.1.0.0/24"}, {"subnet": "fd00::/64"}]], "mixed address families"),
    ([[{"subnet": "10.1.0.0/24"}], [{"subnet": "10.1.0.0/25"}]], "range set 0 overlaps with 1"),
])
def test_ipam_config_errors_are_code_7(tmp_path, ranges, words) -> None:
    with pytest.raises(CNIError) as e:
        ipam_conf(tmp_path, ranges)
    assert e.value.code == 7 and words in e.value.msg


def test_ipam_allocates_round_robin_and_writes_the_reference_layout(tmp_path) -> None:
    cfg = ipam_conf(tmp_path, [[{"subnet": "10.1.0.0/29"}]], routes=[{"dst": "0.0.0.0/0"}])
    a = ipam.allocate(cfg, "ctr-a", "eth0")
    assert a == {"ips": [{"address": "10.1.0.2/29", "gateway": "10.1.0.1"}],
                 "routes": [{"dst": "0.0.0.0/0"}], "dns": {}}
    d = tmp_path / "net1"
    assert (d / "10.1.0.2").read_bytes() == b"ctr-a\r\neth0"
    assert (d / "last_reserved_ip.0").read_text() == "10.1.0.2"
    assert (d / "lock").exists()
    b = ipam.allocate(cfg, "ctr-b", "eth0")["ips"][0]["address"]
    assert b == "10.1.0.3/29"
    assert ipam.release(cfg, "ctr-a", "eth0") == [ipaddress_of("10.1.0.2")]
    assert ipam.release(cfg, "ctr-a", "eth0") == []  # idempotent
    # round robin: the freed .2 is not reused before the range wraps
    got = [ipam.allocate(cfg, f"c{i}", "eth0")["ips"][0]["address"] for i in range(4)]
    assert got == ["10.1.0.4/29", "10.1.0.5/29", "10.1.0.6/29", "10.1.0.2/29"]
    with pytest.raises(CNIError) as e:
        ipam.allocate(cfg, "c-full", "eth0")
    assert "no IP addresses available in range set: 10.1.0.1-10.1.0.6" in e.value.msg
    with pytest.raises(CNIError) as e:
        ipam.allocate(cfg, "c0", "eth0")
    assert e.value.msg == ("failed to allocate for range 0: 10.1.0.4 has been allocated to c0, "
                           "duplicate allocation is not allowed")
    for c in ("ctr-b", "c0", "c1", "c2", "c3"):
        ipam.release(cfg, c, "eth0")
    assert sorted(p.name for p in d.iterdir()) == ["last_reserved_ip.0", "lock"]


def ipaddress_of(s: str):
    import ipaddress
    return ipaddress.ip_address(s)


def test_ipam_duplicate_requested_dual_stack_and_resolv_conf(tmp_path) -> None:
    rc = tmp_path / "resolv.conf"
    rc.write_text("# c\nnameserver 10.0.0.10\nsearch a.local b.local\noptions ndots:5\ndomain x.local\n")
    cfg = ipam_conf(tmp_path, [[{"subnet": "10.1.0.0/24", "rangeStart": "10.1.0.10"}],
                               [{"subnet": "fd00:1::/64"}]], resolvConf=str(rc))
    res = ipam.allocate(cfg, "a", "eth0")
    assert [i["address"] for i in res["ips"]] == ["10.1.0.10/24", "fd00:1::2/64"]
    assert res["dns"] == {"nameservers": ["10.0.0.10"], "domain": "x.local", "search": ["a.local", "b.local"],
                          "options": ["ndots:5"]}
    with pytest.raises(CNIError) as e:
        ipam.allocate(cfg, "a", "eth0")
    assert "10.1.0.10 has been allocated to a, duplicate allocation is not allowed" in e.value.msg
    ipam.check(cfg, "a", "eth0")
    with pytest.raises(CNIError):
        ipam.check(cfg, "a", "eth1")
    req = ipam.load_config({"name": "net1", "cniVersion": "1.0.0", "runtimeConfig": {"ips": ["10.1.0.50/24"]},
                            "ipam": {"dataDir": str(tmp_path), "ranges": [[{"subnet": "10.1.0.0/24"}]]}},
                           {"IP": "10.1.0.1"})
    with pytest.raises(CNIError) as e:
        ipam.allocate(req, "b", "eth0")
    assert "requested ip 10.1.0.1 is subnet's gateway" in e.value.msg
    req.requested = req.requested[1:]
    assert ipam.allocate(req, "b", "eth0")["ips"][0]["address"] == "10.1.0.50/24"
    # a failed multi-range ADD releases what it took
    req.requested = [ipaddress_of("10.1.0.60"), ipaddress_of("10.7.0.1")]
    with pytest.raises(CNIError) as e:
        ipam.allocate(req, "c", "eth0")
    assert "failed to allocate all requested IPs: 10.7.0.1" in e.value.msg
    assert not (tmp_path / "net1" / "10.1.0.60").exists()
    assert ipam.release(cfg, "a", "eth0") and ipam.release(req, "b", "eth0")


def test_ipam_release_of_files_from_an_older_host_local(tmp_path) -> None:
    cfg = ipam_conf(tmp_path, [[{"subnet": "10.1.0.0/24"}]])
    (tmp_path / "net1").mkdir()
    (tmp_path / "net1" / "10.1.0.7").write_text("legacy-id")
    assert ipam.held(cfg, "legacy-id", "eth0") == [ipaddress_of("10.1.0.7")]
    assert ipam.release(cfg, "legacy-id", "eth0") == [ipaddress_of("10.1.0.7")]


def _churn(args: tuple[str, int]) -> list[str]:
    data_dir, n = args
    cfg = ipam.load_config({"name": "net1", "cniVersion": "1.0.0",
                            "ipam": {"dataDir": data_dir, "ranges": [[{"subnet": "10.1.0.0/26"}]]}})
    got = []
    for i in range(n):
        cid = f"p{os.getpid()}-{i}"
        got.append(ipam.allocate(cfg, cid, "eth0")["ips"][0]["address"])
        if i % 2:
            ipam.release(cfg, cid, "eth0")
    return got


def test_ipam_is_safe_across_processes(tmp_path) -> None:
    """8 processes allocating at once from a /26 (61 usable): never the same address twice while
    held, every file accounted for."""
    with multiprocessing.get_context("fork").Pool(4) as pool:
        results = pool.map(_churn, [(str(tmp_path), 14)] * 4)
    kept = [r[i] for r in results for i in range(0, 14, 2)]
    assert len(kept) == len(set(kept)) == 28
    files = sorted(p.name for p in (tmp_path / "net1").iterdir() if p.name[0].isdigit())
    assert files == sorted(a.split("/")[0] for a in kept)
