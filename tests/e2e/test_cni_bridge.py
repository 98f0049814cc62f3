"""kubelab-bridge against the kernel and against the reference bridge plugin (/usr/lib/cni/bridge,
containernetworking-plugins 1.1.1 with its host-local).

Every comparison runs the same config through both plugins, each on its own bridge, subnet, data
dir and network namespace, and compares what they print and what they leave in the kernel (the
container's addresses, routes and mtu; the bridge's addresses, mtu and promiscuity; the host veth's
hairpin flag and master; the ipMasq rules; host-local's files), after normalising what must differ
(names, MACs, the subnet prefix). Both plugins CHECK each other's work.

Everything made here (namespaces, bridges, nat chains, IPAM dirs) is removed, and each test asserts
its DELs left nothing behind.
"""
from __future__ import annotations

import asyncio
import itertools
import json
import os
import re
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from kubelab import proc
from kubelab.cni import launcher as cni_launcher
from kubelab.cni.masq import chain_name

pytestmark = pytest.mark.e2e

REF = "/usr/lib/cni/bridge"
TAG = f"{os.getpid() % 10000:04d}"
_subnets = itertools.count(1)
_names = itertools.count(1)

if not os.path.exists(REF) or os.geteuid() != 0:
    pytest.skip("needs root and the reference CNI plugins in /usr/lib/cni", allow_module_level=True)


# -- plumbing ---------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def ours(tmp_path_factory) -> str:
    """A CNI bin dir holding kubelab-bridge as the labs install it (kubelab.cni.launcher)."""
    return str(cni_launcher.install(tmp_path_factory.mktemp("cnibin")))


class Out:
    def __init__(self, rc: int, stdout: str, stderr: str, seconds: float) -> None:
        self.rc, self.text, self.stderr, self.seconds = rc, stdout, stderr, seconds
        self.obj = json.loads(stdout) if stdout.strip() else None

    def __repr__(self) -> str:
        return f"Out(rc={self.rc}, stdout={self.text!r}, stderr={self.stderr!r})"


async def cni(plugin: str, command: str, conf: dict[str, Any] | bytes, netns: str = "", cid: str = "c1",
              ifname: str = "eth0", args: str = "", drop: tuple[str, ...] = ()) -> Out:
    env = {"PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"), "CNI_COMMAND": command,
           "CNI_CONTAINERID": cid, "CNI_IFNAME": ifname, "CNI_PATH": "/usr/lib/cni"}
    if netns:
        env["CNI_NETNS"] = netns
    if args:
        env["CNI_ARGS"] = args
    for k in drop:
        env.pop(k, None)
    data = conf if isinstance(conf, bytes) else json.dumps(conf).encode()
    t = time.perf_counter()
    res = await proc.run([plugin], input=data, env=env, check=False, timeout=60)
    return Out(res.returncode, res.stdout.decode(), res.stderr.decode(), time.perf_counter() - t)


async def sh(*args: str, check: bool = True) -> str:
    return (await proc.run(list(args), check=check, timeout=30)).text


class Lab:
    """Names for one test, and the cleanup of everything they name."""

    def __init__(self, data: Path) -> None:
        self.data = data
        self.netns: list[str] = []
        self.bridges: list[str] = []
        self.networks: list[str] = []

    async def new_netns(self) -> str:
        name = f"klcni-{TAG}-{next(_names)}"
        await sh("ip", "netns", "add", name)
        self.netns.append(name)
        return name

    def side(self, plugin: str, template: str, v4: str | None = None) -> "Side":
        i = next(_names)
        s = Side(plugin, f"klcni{TAG}-{i}", f"klcb{TAG}{i}", v4 or f"10.231.{next(_subnets) % 250}.",
                 str(self.data / f"ipam-{i}"), template)
        self.bridges.append(s.bridge)
        self.networks.append(s.name)
        return s

    async def leftovers(self, netns: bool = True) -> list[str]:
        out = [f"netns {n}" for n in self.netns if netns and os.path.exists(f"/run/netns/{n}")]
        for br in self.bridges:
            ports = Path(f"/sys/class/net/{br}/brif")
            if ports.is_dir():
                out += [f"veth {p.name} on {br}" for p in ports.iterdir()]
        rules = await nat_rules()
        out += [f"nat rule {r}" for r in rules for n in self.networks if f'name: \\"{n}\\"' in r]
        return out

    async def cleanup(self) -> None:
        for n in self.netns:
            await sh("ip", "netns", "del", n, check=False)
        for br in self.bridges:
            if os.path.exists(f"/sys/class/net/{br}"):
                await sh("ip", "link", "del", br, check=False)
        for cmd in ("iptables", "ip6tables"):
            rules = (await sh(cmd, "-w", "5", "-t", "nat", "-S", check=False)).splitlines()
            chains = {c for n in self.networks for r in rules if f'name: \\"{n}\\"' in r
                      for c in re.findall(r"-j (CNI-[0-9a-f]+)", r)}
            for r in rules:
                if r.startswith("-A POSTROUTING") and any(f"-j {c}" in r for c in chains):
                    await sh(cmd, "-w", "5", "-t", "nat", *split_rule("-D" + r[2:]), check=False)
            for c in chains:
                await sh(cmd, "-w", "5", "-t", "nat", "-F", c, check=False)
                await sh(cmd, "-w", "5", "-t", "nat", "-X", c, check=False)


def split_rule(rule: str) -> list[str]:
    import shlex
    return shlex.split(rule)


async def nat_rules() -> list[str]:
    out = []
    for cmd in ("iptables", "ip6tables"):
        out += [r for r in (await sh(cmd, "-w", "5", "-t", "nat", "-S", check=False)).splitlines()
                if r.startswith(("-A", "-N"))]
    return out


@pytest.fixture
async def lab(tmp_path):
    lab = Lab(tmp_path)
    yield lab
    left = await lab.leftovers(netns=False)  # what the plugins left (the namespaces are the test's)
    await lab.cleanup()
    assert await lab.leftovers() == []
    for br in lab.bridges:
        assert not os.path.exists(f"/sys/class/net/{br}")
    assert left == [], f"the test left {left}"


class Side:
    """One plugin's network: its own bridge, subnet, data dir and network name."""

    def __init__(self, plugin: str, name: str, bridge: str, p4: str, data_dir: str, template: str) -> None:
        self.plugin, self.name, self.bridge, self.p4, self.data_dir = plugin, name, bridge, p4, data_dir
        self.p6 = "fd00:231:" + p4.split(".")[2] + "::"
        self.template = template

    def conf(self, **extra: Any) -> dict[str, Any]:
        text = (self.template.replace("{NAME}", self.name).replace("{BR}", self.bridge)
                .replace("{P4}", self.p4).replace("{P6}", self.p6).replace("{DATA}", self.data_dir))
        conf = json.loads(text)
        conf.update(extra)
        return conf

    def norm(self, obj: Any, netns: str = "") -> Any:
        text = json.dumps(obj)
        for cid in re.findall(r"-j (CNI-[0-9a-f]{24})", text):
            text = text.replace(cid, "CHAIN")
        if netns:
            text = text.replace(netns, "NETNS")
        text = text.replace(self.bridge, "BR").replace(self.name, "NET").replace(self.data_dir, "DATA")
        text = text.replace(self.p4, "P4.").replace(self.p6, "P6::")
        text = re.sub(r"\bveth[0-9a-f]{8}\b", "VETH", text)
        text = re.sub(r"\b[0-9a-f]{2}(:[0-9a-f]{2}){5}\b", "MAC", text)
        return json.loads(text)


MAC_RE = re.compile(r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}$")


async def snapshot(side: Side, netns: str, result: dict[str, Any] | None, cid: str = "c1") -> dict[str, Any]:
    """What a plugin left in the kernel and on disk for one container, normalised."""
    async def in_ns(*args: str) -> list[str]:
        lines = (await sh("ip", "netns", "exec", netns, *args)).splitlines()
        return [re.sub(r"^\d+: ", "", line).replace("\\", "").strip() for line in lines
                if "fe80" not in line and "ff00::" not in line and "multicast" not in line]

    snap: dict[str, Any] = {}
    if os.path.exists(f"/run/netns/{netns}"):
        snap["links"] = sorted(re.sub(r"@.*", "", x.split(": ")[0]) for x in await in_ns("ip", "-o", "link", "show"))
    if "eth0" in snap.get("links", []):
        snap["addrs"] = [re.sub(r"\s+", " ", a) for a in await in_ns("ip", "-o", "addr", "show", "dev", "eth0")]
        link = (await in_ns("ip", "-o", "link", "show", "dev", "eth0"))
        # the reference 1.1.1 leaves the veth's txqueuelen at 0 by accident (upstream fixed it in
        # containernetworking/plugins#1100); kubelab-bridge keeps the kernel's default, so qlen is
        # left out here
        snap["link"] = [re.sub(r"eth0@if\d+", "eth0@ifN", re.sub(r" qlen \d+", "", re.sub(r"\s+", " ", x)))
                        for x in link]
        snap["routes4"] = await in_ns("ip", "route", "show")
        snap["routes6"] = await in_ns("ip", "-6", "route", "show")
    br = Path(f"/sys/class/net/{side.bridge}")
    if br.exists():
        addrs = (await sh("ip", "-o", "addr", "show", "dev", side.bridge)).splitlines()
        # (an IPv6 address stays "tentative" until DAD is done: a matter of timing, left out)
        snap["bridge_addrs"] = [re.sub(r"^\d+: ", "", re.sub(r"\s+", " ", a.replace(" tentative", "")))
                                .replace("\\", "").strip() for a in addrs if "fe80" not in a]
        snap["bridge_mtu"] = (br / "mtu").read_text().strip()
        snap["bridge_promisc"] = int((br / "flags").read_text(), 16) & 0x100 != 0
        snap["bridge_ports"] = sorted(p.name for p in (br / "brif").iterdir())
    if result and result.get("interfaces"):
        veth = Path(f"/sys/class/net/{result['interfaces'][1]['name']}")
        snap["veth"] = {"hairpin": (veth / "brport/hairpin_mode").read_text().strip(),
                        "mtu": (veth / "mtu").read_text().strip(),
                        "master": os.path.basename(os.readlink(veth / "master")),
                        "operstate": (veth / "operstate").read_text().strip()} if veth.exists() else None
    snap["nat"] = sorted(r for r in await nat_rules() if f'name: \\"{side.name}\\"' in r
                         or chain_name(side.name, cid) in r)
    d = Path(side.data_dir) / side.name
    snap["ipam"] = {p.name: p.read_text() for p in sorted(d.iterdir())} if d.is_dir() else {}
    return side.norm(snap, f"/run/netns/{netns}")


def check_result_facts(res: dict[str, Any], side: Side, netns: str) -> None:
    """What a result must say about the real kernel state, checked before names are normalised."""
    if "interfaces" not in res:
        return
    br, veth, cont = res["interfaces"]
    assert br["name"] == side.bridge
    assert br["mac"] == Path(f"/sys/class/net/{side.bridge}/address").read_text().strip()
    assert re.fullmatch(r"veth[0-9a-f]{8}", veth["name"])
    assert veth["mac"] == Path(f"/sys/class/net/{veth['name']}/address").read_text().strip()
    assert cont["name"] == "eth0" and cont["sandbox"] == f"/run/netns/{netns}" and MAC_RE.match(cont["mac"])


# -- the comparisons --------------------------------------------------------------------------

CONFIGS = {
    # what kubelab's nodes use: a gateway bridge, masquerading, hairpin, a smaller mtu
    "gateway-masq-hairpin-mtu": """{"cniVersion": "1.0.0", "name": "{NAME}", "type": "bridge", "bridge": "{BR}",
        "isGateway": true, "ipMasq": true, "hairpinMode": true, "mtu": 1400,
        "ipam": {"type": "host-local", "dataDir": "{DATA}", "ranges": [[{"subnet": "{P4}0/24"}]],
                 "routes": [{"dst": "0.0.0.0/0"}]}}""",
    "default-gateway-dual-stack-masq-0.4.0": """{"cniVersion": "0.4.0", "name": "{NAME}", "type": "bridge",
        "bridge": "{BR}", "isDefaultGateway": true, "ipMasq": true,
        "ipam": {"type": "host-local", "dataDir": "{DATA}",
                 "ranges": [[{"subnet": "{P4}0/24", "rangeStart": "{P4}10", "rangeEnd": "{P4}20"}],
                            [{"subnet": "{P6}/64"}]],
                 "routes": [{"dst": "10.9.0.0/16"}, {"dst": "10.8.0.0/16", "gw": "{P4}5"}]}}""",
    "no-gateway-0.3.1": """{"cniVersion": "0.3.1", "name": "{NAME}", "type": "bridge", "bridge": "{BR}",
        "ipam": {"type": "host-local", "dataDir": "{DATA}", "ranges": [[{"subnet": "{P4}0/24",
                 "gateway": "{P4}254"}]]}}""",
    "dns-from-config-0.2.0": """{"cniVersion": "0.2.0", "name": "{NAME}", "type": "bridge", "bridge": "{BR}",
        "isGateway": true, "dns": {"nameservers": ["10.96.0.10"], "search": ["svc.cluster.local"]},
        "ipam": {"type": "host-local", "dataDir": "{DATA}", "subnet": "{P4}0/24",
                 "routes": [{"dst": "0.0.0.0/0"}]}}""",
    "promisc-mac-runtimeconfig": """{"cniVersion": "1.0.0", "name": "{NAME}", "type": "bridge", "bridge": "{BR}",
        "isGateway": true, "promiscMode": true, "runtimeConfig": {"mac": "02:42:0a:00:00:07"},
        "ipam": {"type": "host-local", "dataDir": "{DATA}", "ranges": [[{"subnet": "{P4}0/24"}]]}}""",
    "layer2-no-ipam": """{"cniVersion": "1.0.0", "name": "{NAME}", "type": "bridge", "bridge": "{BR}",
        "ipam": {}}""",
    # an IPAM other than host-local is exec'd from CNI_PATH, as the reference does with every IPAM
    "static-ipam-delegated-masq": """{"cniVersion": "1.0.0", "name": "{NAME}", "type": "bridge",
        "bridge": "{BR}", "isGateway": true, "ipMasq": true,
        "ipam": {"type": "static", "addresses": [{"address": "{P4}33/24", "gateway": "{P4}1"}],
                 "routes": [{"dst": "0.0.0.0/0"}]}}""",
}


@pytest.mark.parametrize("case", list(CONFIGS))
async def test_same_results_and_kernel_state_as_the_reference(case, lab, ours) -> None:
    ref, mine = lab.side(REF, CONFIGS[case]), lab.side(ours, CONFIGS[case])
    ns_ref, ns_mine = await lab.new_netns(), await lab.new_netns()
    args = "IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=p1"

    r = await cni(REF, "ADD", ref.conf(), f"/run/netns/{ns_ref}", args=args)
    m = await cni(ours, "ADD", mine.conf(), f"/run/netns/{ns_mine}", args=args)
    assert r.rc == 0, r
    assert m.rc == 0, m
    assert m.stderr == ""
    assert m.text.startswith("{\n    ") and not m.text.endswith("\n")  # printed like the reference
    check_result_facts(r.obj, ref, ns_ref)
    check_result_facts(m.obj, mine, ns_mine)
    if "mac" in case:
        assert r.obj["interfaces"][2]["mac"] == m.obj["interfaces"][2]["mac"] == "02:42:0a:00:00:07"
    assert mine.norm(m.obj, f"/run/netns/{ns_mine}") == ref.norm(r.obj, f"/run/netns/{ns_ref}")

    s_ref = await snapshot(ref, ns_ref, r.obj)
    s_mine = await snapshot(mine, ns_mine, m.obj)
    assert s_mine == s_ref
    if "hairpin" in case:
        assert s_mine["veth"]["hairpin"] == "1" and s_mine["link"][0].count("mtu 1400") == 1
        assert "default via P4.1 dev eth0" in s_mine["routes4"]
        assert len(s_mine["nat"]) == 4  # the chain, its two rules and the POSTROUTING jump
    if "dual-stack" in case:
        assert any("! -d ff00::/8" in line for line in s_mine["nat"])
        assert "default via P6::1 dev eth0 metric 1024 pref medium" in s_mine["routes6"]
    if "promisc" in case:
        assert s_mine["bridge_promisc"] is True

    # CHECK: each plugin on its own work and on the other's. kubelab-bridge passes both; the
    # reference judges kubelab-bridge's work as it judges its own (1.1.1's CHECK fails its own
    # result when a route has no gw: it looks for a route without a gateway; and without ipam it
    # fails on the empty IPAM type)
    if r.obj.get("cniVersion") in ("0.4.0", "1.0.0"):
        verdicts = []
        for side, ns, res in ((ref, ns_ref, r.obj), (mine, ns_mine, m.obj)):
            c = await cni(ours, "CHECK", side.conf(prevResult=res), f"/run/netns/{ns}", args=args)
            assert (c.rc, c.text) == (0, ""), (side.plugin, c)
            c = await cni(REF, "CHECK", side.conf(prevResult=res), f"/run/netns/{ns}", args=args)
            verdicts.append((c.rc, side.norm(c.obj)))
        assert verdicts[0] == verdicts[1]
        if r.obj.get("ips") and not any(rt.get("gw") is None and rt["dst"] not in ("0.0.0.0/0", "::/0")
                                        for rt in r.obj.get("routes", [])):
            assert verdicts[0] == (0, None)

    # DEL, twice, on both: the same state afterwards (no veth, no rules, only host-local's bookkeeping)
    for side, ns, res in ((ref, ns_ref, r.obj), (mine, ns_mine, m.obj)):
        for _ in range(2):
            d = await cni(side.plugin, "DEL", side.conf(prevResult=res), f"/run/netns/{ns}", args=args)
            assert (d.rc, d.text) == (0, ""), d
    after_ref, after_mine = await snapshot(ref, ns_ref, None), await snapshot(mine, ns_mine, None)
    assert after_mine == after_ref
    assert after_mine["nat"] == [] and after_mine.get("bridge_ports", []) == []
    assert set(after_mine["ipam"]) <= {"lock", "last_reserved_ip.0", "last_reserved_ip.1"}


async def test_ipam_dns_from_resolv_conf(lab, ours, tmp_path) -> None:
    """Where kubelab-bridge follows upstream's later fix: the reference 1.1.1 drops the DNS host-local
    read from resolvConf when the config has no dns of its own (fixed upstream by
    containernetworking/plugins#733, "bridge: support IPAM DNS settings", in v1.2.0)."""
    resolv = tmp_path / "resolv.conf"
    resolv.write_text("nameserver 10.96.0.10\nsearch default.svc.cluster.local svc.cluster.local\n"
                      "options ndots:5\n")
    tpl = CONFIGS["gateway-masq-hairpin-mtu"].replace('"routes"', f'"resolvConf": "{resolv}", "routes"')
    ref, mine = lab.side(REF, tpl), lab.side(ours, tpl)
    ns_ref, ns_mine = await lab.new_netns(), await lab.new_netns()
    r = await cni(REF, "ADD", ref.conf(), f"/run/netns/{ns_ref}")
    m = await cni(ours, "ADD", mine.conf(), f"/run/netns/{ns_mine}")
    assert r.rc == 0 and m.rc == 0, (r, m)
    assert r.obj["dns"] == {}
    assert m.obj["dns"] == {"nameservers": ["10.96.0.10"],
                            "search": ["default.svc.cluster.local", "svc.cluster.local"], "options": ["ndots:5"]}
    m.obj["dns"] = {}
    assert mine.norm(m.obj, f"/run/netns/{ns_mine}") == ref.norm(r.obj, f"/run/netns/{ns_ref}")
    for side, ns in ((ref, ns_ref), (mine, ns_mine)):
        assert (await cni(side.plugin, "DEL", side.conf(), f"/run/netns/{ns}")).rc == 0


async def test_version_is_the_references(ours) -> None:
    r = await cni(REF, "VERSION", b"")
    m = await cni(ours, "VERSION", b"")
    assert (m.rc, m.text) == (r.rc, r.text) == (0, m.text)
    assert m.obj["supportedVersions"][-1] == "1.0.0"


# -- errors ----------------------------------------------------------------------------------

GOOD = {"cniVersion": "1.0.0", "name": "errnet", "type": "bridge", "bridge": "klcberr",
        "ipam": {"type": "host-local", "ranges": [[{"subnet": "10.231.251.0/24"}]]}}


@pytest.mark.parametrize("what,conf,drop,netns", [
    ("missing env", GOOD, ("CNI_CONTAINERID", "CNI_PATH"), "/run/netns/none"),
    ("garbage config", b"{nope", (), "/run/netns/none"),
    ("missing name", {k: v for k, v in GOOD.items() if k != "name"}, (), "/run/netns/none"),
    ("unsupported version", dict(GOOD, cniVersion="2.0.0"), (), "/run/netns/none"),
    ("bad container id", GOOD, (), "/run/netns/none"),
])
async def test_error_json_matches_the_reference_for_spec_errors(what, conf, drop, netns, ours) -> None:
    cid = "bad/id" if what == "bad container id" else "c1"
    r = await cni(REF, "ADD", conf, netns, cid=cid, drop=drop)
    m = await cni(ours, "ADD", conf, netns, cid=cid, drop=drop)
    assert r.rc == m.rc == 1
    mine = dict(m.obj)
    # the spec's error carries the config's cniVersion once the config is read; libcni's skel omits it
    expect_version = conf.get("cniVersion") if isinstance(conf, dict) and what != "missing env" else None
    assert mine.pop("cniVersion", None) == expect_version
    if what == "garbage config":  # the decoder's own words differ (Go's vs Python's)
        assert (mine["code"], r.obj["code"]) == (6, 6)
        assert mine["msg"].startswith("error unmarshall network config: ")
    else:
        assert mine == r.obj
        assert mine["code"] in (1, 3, 4, 6, 7)


async def test_error_json_for_plugin_failures(ours, lab) -> None:
    side = lab.side(ours, CONFIGS["gateway-masq-hairpin-mtu"])
    m = await cni(ours, "ADD", side.conf(), "/run/netns/klcni-does-not-exist")
    assert m.rc == 1 and m.obj["code"] == 999
    assert m.obj["msg"].startswith('failed to open netns "/run/netns/klcni-does-not-exist"')
    # the plugin's own namespace is refused before anything is touched
    m = await cni(ours, "ADD", side.conf(), f"/proc/{os.getpid()}/ns/net")
    assert m.rc == 1 and m.obj["code"] == 4 and "should not be the same" in m.obj["msg"]
    # bad values are invalid config (7), where the reference answers 999
    m = await cni(ours, "ADD", side.conf(mtu="big"), "/run/netns/x")
    assert m.rc == 1 and m.obj["code"] == 7 and "mtu must be an integer" in m.obj["msg"]
    m = await cni(ours, "ADD", side.conf(ipam={"type": "host-local", "ranges": [[{"subnet": "10.1.0.0/31"}]]}),
                  "/run/netns/x")
    assert m.rc == 1 and m.obj["code"] == 7 and "too small to allocate from" in m.obj["msg"]
    # CHECK without prevResult, and CHECK on a 0.3.1 config
    ns = await lab.new_netns()
    m = await cni(ours, "CHECK", side.conf(), f"/run/netns/{ns}")
    assert m.rc == 1 and "host-local: Failed to find address added by container c1" in m.obj["msg"]
    m = await cni(ours, "CHECK", side.conf(cniVersion="0.3.1"), f"/run/netns/{ns}")
    assert m.rc == 1 and (m.obj["code"], m.obj["msg"]) == (1, "config version does not allow CHECK")
    # a failed ADD leaves nothing: the address is taken, so the second ADD fails after making its veth
    conf = side.conf(runtimeConfig={"ips": [side.p4 + "77"]})
    a = await cni(ours, "ADD", conf, f"/run/netns/{ns}", cid="first")
    assert a.rc == 0, a
    ns2 = await lab.new_netns()
    b = await cni(ours, "ADD", conf, f"/run/netns/{ns2}", cid="second")
    assert b.rc == 1 and "requested IP address " + side.p4 + "77 is not available" in b.obj["msg"]
    assert (await sh("ip", "netns", "exec", ns2, "ip", "-o", "link", "show")).count("eth0") == 0
    assert sorted(os.listdir(Path(f"/sys/class/net/{side.bridge}/brif"))) == [a.obj["interfaces"][1]["name"]]
    assert not [r for r in await nat_rules() if 'id: \\"second\\"' in r]
    assert (await cni(ours, "DEL", conf, f"/run/netns/{ns}", cid="first")).rc == 0


async def test_check_notices_a_broken_container(ours, lab) -> None:
    side = lab.side(ours, CONFIGS["gateway-masq-hairpin-mtu"])
    ns = await lab.new_netns()
    a = await cni(ours, "ADD", side.conf(), f"/run/netns/{ns}")
    assert a.rc == 0, a
    addr = a.obj["ips"][0]["address"]
    await sh("ip", "netns", "exec", ns, "ip", "addr", "del", addr, "dev", "eth0")
    for checker in (ours, REF):
        c = await cni(checker, "CHECK", side.conf(prevResult=a.obj), f"/run/netns/{ns}")
        assert c.rc == 1 and c.obj["code"] == 999 and addr.split("/")[0] in c.obj["msg"], (checker, c)
    assert (await cni(ours, "DEL", side.conf(prevResult=a.obj), f"/run/netns/{ns}")).rc == 0


# -- DEL -------------------------------------------------------------------------------------

async def rules_of(cid: str) -> list[str]:
    return [r for r in await nat_rules() if f'id: \\"{cid}\\"' in r]


async def ipam_files(side: Side) -> list[str]:
    d = Path(side.data_dir) / side.name
    return sorted(p.name for p in d.iterdir() if p.name != "lock" and not p.name.startswith("last_reserved_ip."))\
        if d.is_dir() else []


async def test_del_when_the_netns_is_gone_or_absent_or_not_a_netns(ours, lab, tmp_path) -> None:
    side = lab.side(ours, CONFIGS["default-gateway-dual-stack-masq-0.4.0"])
    conf = side.conf()
    # 1. the namespace was deleted before DEL: addresses and masquerade rules still go
    ns = await lab.new_netns()
    a = await cni(ours, "ADD", conf, f"/run/netns/{ns}", cid="gone")
    assert a.rc == 0, a
    assert len(await ipam_files(side)) == 2 and len(await rules_of("gone")) == 6
    await sh("ip", "netns", "del", ns)
    for _ in range(2):
        d = await cni(ours, "DEL", side.conf(prevResult=a.obj), f"/run/netns/{ns}", cid="gone")
        assert (d.rc, d.text) == (0, ""), d
    assert await ipam_files(side) == []
    assert await rules_of("gone") == []
    assert not os.path.exists(f"/sys/class/net/{a.obj['interfaces'][1]['name']}")
    # 2. no CNI_NETNS at all (and a prevResult that does not parse: DEL only takes hints from it)
    ns = await lab.new_netns()
    a = await cni(ours, "ADD", conf, f"/run/netns/{ns}", cid="nonetns")
    assert a.rc == 0, a
    broken = dict(conf, prevResult={"cniVersion": "1.0.0", "ips": [{"gateway": "nonsense"}]})
    d = await cni(ours, "DEL", broken, cid="nonetns", drop=("CNI_NETNS",))
    assert d.rc == 0, d
    assert await ipam_files(side) == [] and await rules_of("nonetns") == []
    await sh("ip", "netns", "del", ns)
    # 3. the path is there but no longer a namespace (unmounted, not yet removed)
    plain = tmp_path / "not-a-netns"
    plain.write_text("")
    d = await cni(ours, "DEL", conf, str(plain), cid="plain")
    assert d.rc == 0, d


async def test_del_removes_the_veth_of_a_netns_kept_alive_elsewhere(ours, lab) -> None:
    """The netns's name is gone but a process still holds the namespace, so the pair lives on: DEL
    finds the host end through prevResult."""
    side = lab.side(ours, CONFIGS["gateway-masq-hairpin-mtu"])
    ns = await lab.new_netns()
    a = await cni(ours, "ADD", side.conf(), f"/run/netns/{ns}", cid="held")
    assert a.rc == 0, a
    holder = await asyncio.create_subprocess_exec("ip", "netns", "exec", ns, "sleep", "60")
    try:
        await asyncio.sleep(0.2)
        await sh("ip", "netns", "del", ns)
        veth = a.obj["interfaces"][1]["name"]
        assert os.path.exists(f"/sys/class/net/{veth}")
        d = await cni(ours, "DEL", side.conf(prevResult=a.obj), f"/run/netns/{ns}", cid="held")
        assert d.rc == 0, d
        assert not os.path.exists(f"/sys/class/net/{veth}")
        assert await ipam_files(side) == []
    finally:
        holder.kill()
        await holder.wait()


# -- traffic ---------------------------------------------------------------------------------

async def test_traffic_is_bridged_through_iptables(ours, lab) -> None:
    """Two pods on one bridge talk (TCP) through the bridge, and that traffic passes the host's
    iptables FORWARD chain (br_netfilter); a pod reaches the host through its gateway."""
    assert Path("/proc/sys/net/bridge/bridge-nf-call-iptables").read_text().strip() == "1"
    side = lab.side(ours, CONFIGS["gateway-masq-hairpin-mtu"])
    nss = [await lab.new_netns() for _ in range(2)]
    res = []
    for i, ns in enumerate(nss):
        a = await cni(ours, "ADD", side.conf(), f"/run/netns/{ns}", cid=f"pod{i}")
        assert a.rc == 0 and a.stderr == "", a
        res.append(a.obj)
    ips = [r["ips"][0]["address"].split("/")[0] for r in res]
    assert "nf_call_iptables 1" in await sh("ip", "-d", "link", "show", side.bridge)
    mark = f"klcni-{TAG}-fwd"
    rule = ["FORWARD", "-s", ips[0], "-d", ips[1], "-p", "tcp", "-m", "comment", "--comment", mark, "-j", "ACCEPT"]
    await sh("iptables", "-w", "5", "-I", *rule)
    try:
        server = (f"import socket;s=socket.socket();s.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1);"
                  f"s.bind(('{ips[1]}',8080));s.listen();c,_=s.accept();c.sendall(b'pong');c.close()")
        task = asyncio.create_task(proc.run(["ip", "netns", "exec", nss[1], sys.executable, "-c", server],
                                            timeout=20))
        client = (f"import socket,time\nfor _ in range(50):\n    try:\n"
                  f"        c=socket.create_connection(('{ips[1]}',8080),timeout=2);break\n"
                  f"    except OSError: time.sleep(0.1)\nprint(c.recv(10).decode())")
        out = await proc.run(["ip", "netns", "exec", nss[0], sys.executable, "-c", client], timeout=20)
        assert out.text.strip() == "pong"
        await task
        counters = await sh("iptables", "-w", "5", "-L", "FORWARD", "-v", "-x", "-n")
        line = next(ln for ln in counters.splitlines() if mark in ln)
        assert int(line.split()[0]) > 0, line  # packets of bridged pod-to-pod traffic hit FORWARD
    finally:
        await sh("iptables", "-w", "5", "-D", *rule, check=False)
    gw = res[0]["ips"][0]["gateway"]
    probe = f"import socket;socket.create_connection(('{gw}',9),timeout=2)"
    r = await proc.run(["ip", "netns", "exec", nss[0], sys.executable, "-c", probe], check=False, timeout=20)
    assert "ConnectionRefused" in r.stderr.decode()  # the host answered (RST): the gateway is reachable
    for i, ns in enumerate(nss):
        assert (await cni(ours, "DEL", side.conf(prevResult=res[i]), f"/run/netns/{ns}", cid=f"pod{i}")).rc == 0


async def test_add_sets_bridge_nf_call_iptables(ours, lab) -> None:
    """ADD turns net.bridge.bridge-nf-call-iptables back on (the window with it off is one ADD)."""
    path = Path("/proc/sys/net/bridge/bridge-nf-call-iptables")
    side = lab.side(ours, CONFIGS["no-gateway-0.3.1"])
    ns = await lab.new_netns()
    before = path.read_text().strip()
    try:
        path.write_text("0")
        a = await cni(ours, "ADD", side.conf(), f"/run/netns/{ns}")
        now = path.read_text().strip()
    finally:
        path.write_text(before)
    assert a.rc == 0 and a.stderr == "", a
    assert now == "1"
    assert (await cni(ours, "DEL", side.conf(), f"/run/netns/{ns}")).rc == 0


async def test_clear_line_when_br_netfilter_is_missing(ours, lab, tmp_path, monkeypatch, capsys) -> None:
    """Where /proc/sys/net/bridge is missing (br_netfilter not loaded), ADD still works and says
    once, on stderr, what is wrong and what to do. (Run in-process with /proc/sys pointed at an
    empty dir: this machine has br_netfilter.)"""
    from kubelab.cni import bridge, spec
    monkeypatch.setattr(bridge, "PROC_SYS", str(tmp_path / "sys"))
    side = lab.side(ours, CONFIGS["no-gateway-0.3.1"])
    ns = await lab.new_netns()
    conf = side.conf()
    args = spec.CmdArgs("ADD", "nf1", f"/run/netns/{ns}", "eth0", "", "/usr/lib/cni", json.dumps(conf).encode())
    out = await asyncio.to_thread(bridge.cmd_add, args, bridge.parse_conf(conf, "", "0.3.1"))
    assert json.loads(out)["ips"][0]["address"].startswith(side.p4)
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith("kubelab-bridge: ") and "net/bridge is missing" in lines[0]
    assert "modprobe br_netfilter" in lines[0] and "bypass iptables" in lines[0]
    assert (await cni(ours, "DEL", conf, f"/run/netns/{ns}", cid="nf1")).rc == 0


# -- load and latency ------------------------------------------------------------------------

async def test_200_concurrent_add_del_pairs_leave_nothing(ours, lab) -> None:
    side = lab.side(ours, CONFIGS["gateway-masq-hairpin-mtu"], v4="10.232.0.")
    conf = side.conf()
    sem = asyncio.Semaphore(16)
    live: set[str] = set()
    seen: list[str] = []
    veths: list[str] = []
    made: list[str] = []

    async def pair(i: int) -> None:
        async with sem:
            ns = f"klcni-{TAG}-p{i}"
            await sh("ip", "netns", "add", ns)
            made.append(ns)
            try:
                a = await cni(ours, "ADD", conf, f"/run/netns/{ns}", cid=f"pair{i}")
                assert a.rc == 0, a
                ip = a.obj["ips"][0]["address"]
                assert ip not in live, f"{ip} handed out twice"
                live.add(ip)
                seen.append(ip)
                veths.append(a.obj["interfaces"][1]["name"])
                assert f"inet {ip} " in await sh("ip", "netns", "exec", ns, "ip", "-o", "addr", "show", "dev", "eth0")
                live.discard(ip)
                d = await cni(ours, "DEL", dict(conf, prevResult=a.obj), f"/run/netns/{ns}", cid=f"pair{i}")
                assert (d.rc, d.text) == (0, ""), d
            finally:
                await sh("ip", "netns", "del", ns)

    t = time.perf_counter()
    await asyncio.gather(*(pair(i) for i in range(200)))
    elapsed = time.perf_counter() - t
    print(f"\n200 concurrent ADD/DEL pairs (16 in flight) with kubelab-bridge: {elapsed:.1f} s")
    assert len(seen) == 200 and len(set(seen)) > 16  # round robin through the /24
    assert await ipam_files(side) == []                                              # 0 allocated IPs
    assert [v for v in veths if os.path.exists(f"/sys/class/net/{v}")] == []         # 0 veths
    assert os.listdir(f"/sys/class/net/{side.bridge}/brif") == []
    assert [n for n in made if os.path.exists(f"/run/netns/{n}")] == []              # 0 namespaces
    assert [r for r in await nat_rules() if f'name: \\"{side.name}\\"' in r] == []   # 0 masquerade rules


async def test_add_latency_against_the_reference(ours, lab) -> None:
    """Median ADD and DEL times of both plugins for the same config, exec'd as a runtime does, the
    two interleaved so both see the same machine load. Printed for the record: kubelab-bridge pays
    Python's start-up on every exec (and asyncio's import where it runs iptables)."""
    figures = {}
    for label, tpl in (("ipMasq", CONFIGS["gateway-masq-hairpin-mtu"]), ("no ipMasq", CONFIGS["no-gateway-0.3.1"])):
        ns = await lab.new_netns()
        sides = {"reference": lab.side(REF, tpl), "kubelab-bridge": lab.side(ours, tpl)}
        times: dict[str, tuple[list[float], list[float]]] = {who: ([], []) for who in sides}
        for i in range(9):
            for who, side in sides.items():
                a = await cni(side.plugin, "ADD", side.conf(), f"/run/netns/{ns}", cid=f"lat{i}")
                assert a.rc == 0, a
                d = await cni(side.plugin, "DEL", side.conf(), f"/run/netns/{ns}", cid=f"lat{i}")
                assert d.rc == 0, d
                times[who][0].append(a.seconds)
                times[who][1].append(d.seconds)
        for who, (adds, dels) in times.items():
            figures[(label, who)] = (statistics.median(adds) * 1000, statistics.median(dels) * 1000)
    print()
    for (label, who), (add, dele) in figures.items():
        print(f"{label:10s} {who:15s} ADD {add:6.1f} ms   DEL {dele:6.1f} ms")
    for label in ("ipMasq", "no ipMasq"):
        assert figures[(label, "kubelab-bridge")][0] < 1000
