"""The bridge plugin: a Linux bridge on the host, a veth pair per container, host-local addresses.

ADD, as the reference plugin (containernetworking/plugins plugins/main/bridge) does it:
  1. the bridge (default cni0) is created if missing (with mtu), set up, accept_ra=0; it asks the
     kernel to pass bridged IPv4/IPv6 frames through iptables (IFLA_BR_NF_CALL_IPTABLES, and the
     global net.bridge.bridge-nf-call-iptables=1; a clear stderr line where that cannot be set);
  2. a veth pair: "veth<8 hex>" on the host, enslaved to the bridge and up, its peer created
     directly in the container's netns under CNI_IFNAME (mtu, and the MAC asked for by CNI_ARGS
     MAC=, args.cni.mac or runtimeConfig.mac); hairpinMode sets IFLA_BRPORT_MODE on the port;
  3. IPAM: host-local in-process (any other ipam type is exec'd from CNI_PATH as a delegate);
     every IP is on interface 2; with isGateway the gateway defaults to the subnet's first address
     and is put on the bridge (forceAddress replaces a different one), the bridge MAC is pinned and
     forwarding enabled; isDefaultGateway adds a default route through it;
  4. in the netns: arp_notify=1, accept_dad=0 (unless enabledad), the link up, addresses, routes
     (a route without gw goes through its family's gateway);
  5. ipMasq: the CNI-<hash> chain (see masq.py).
  The result: interfaces [bridge, host veth, container veth], ips, routes, and dns from the config,
  else from IPAM (resolvConf).
A failed ADD undoes what it did (veth, addresses, rules), so nothing leaks.

DEL removes the container's interface (which destroys the pair), frees the addresses and the
ipMasq rules, and succeeds when any of it is already gone: no netns, a netns path that is no
longer a namespace, a second DEL. When the netns is gone but its host veth lingers (the namespace
kept alive elsewhere), the host veth named by prevResult is deleted.

CHECK validates prevResult against the bridge, both veth ends, the addresses and routes.

Where this differs from the reference 1.1.1 (on purpose; each is upstream's later behaviour or a
leak fixed):
  - dns: IPAM's (host-local resolvConf) is kept when the config has none (upstream #733, v1.2.0);
  - veth txqueuelen is the kernel default, not 0 (upstream #1100);
  - DEL removes the ipMasq rules also when the netns is already gone (1.1.1 leaves them);
  - a failed ADD removes its veth too (1.1.1 leaves it in the netns);
  - bad config values are code 7 (invalid config), not 999; vlan, vlanTrunk and macspoofchk are
    refused with code 2 (unsupported field);
  - CHECK accepts routes without gw (1.1.1's CHECK rejects its own result for them).
"""
from __future__ import annotations

import ipaddress
import os
import _socket as socket  # constants only; socket.py would import enum and selectors per exec
import sys
TYPE_CHECKING = False  # not typing's: the plugin is exec'd per pod and skips importing typing

if TYPE_CHECKING:
    from typing import Any, Callable, Coroutine

from kubelab.cni import ipam as hostlocal
from kubelab.cni import netlink as nl
from kubelab.cni.spec import (CNIError, CmdArgs, ERR_INTERNAL, ERR_INVALID_ENV, ERR_UNSUPPORTED_FIELD,
                              config_error, convert_result, dumps, get_bool, get_dict, get_int,
                              get_str, new_result, parse_cni_args, parse_dns, parse_result)

DEFAULT_BRIDGE = "cni0"
PROC_SYS = "/proc/sys"


class BridgeConf:
    """The bridge plugin's config, defaults as the reference plugin's."""

    def __init__(self, name: str, cni_version: str, raw: dict[str, Any]) -> None:
        self.name, self.cni_version, self.raw = name, cni_version, raw
        self.bridge = DEFAULT_BRIDGE
        self.is_gateway = self.is_default_gateway = self.force_address = self.ip_masq = False
        self.mtu = 0
        self.hairpin = self.promisc = self.enable_dad = False
        self.mac = ""
        self.dns: dict[str, Any] = {}
        self.ipam_type = ""
        self.cni_args: dict[str, str] = {}
        self.prev_raw: Any = None

    def prev_result(self, strict: bool = True) -> dict[str, Any] | None:
        """prevResult in the 1.0 shape. CHECK needs a valid one; DEL only uses it as a hint, so a
        broken one must not stop the teardown (strict=False gives None then)."""
        if self.prev_raw is None:
            return None
        try:
            return parse_result(self.prev_raw)
        except CNIError:
            if strict:
                raise
            return None


def _valid_mac(mac: str) -> bool:
    parts = mac.split(":")
    return len(parts) == 6 and all(len(p) == 2 and all(c in "0123456789abcdefABCDEF" for c in p)
                                   for p in parts)


def parse_conf(conf: dict[str, Any], cni_args: str, cni_version: str) -> BridgeConf:
    """The bridge's keys (types checked, code 7), defaults as the reference plugin's."""
    c = BridgeConf(name=conf["name"], cni_version=cni_version, raw=conf)
    c.bridge = get_str(conf, "bridge") or DEFAULT_BRIDGE
    if len(c.bridge.encode()) > 15 or "/" in c.bridge or " " in c.bridge:
        raise config_error(f"invalid bridge name {c.bridge!r}")
    c.is_gateway = get_bool(conf, "isGateway")
    c.is_default_gateway = get_bool(conf, "isDefaultGateway")
    c.is_gateway = c.is_gateway or c.is_default_gateway
    c.force_address = get_bool(conf, "forceAddress")
    c.ip_masq = get_bool(conf, "ipMasq")
    c.mtu = get_int(conf, "mtu")
    if c.mtu < 0 or c.mtu > 65535:
        raise config_error(f"invalid mtu {c.mtu}")
    c.hairpin = get_bool(conf, "hairpinMode")
    c.promisc = get_bool(conf, "promiscMode")
    c.enable_dad = get_bool(conf, "enabledad")
    vlan = get_int(conf, "vlan")
    if vlan < 0 or vlan > 4094:
        raise config_error(f"invalid VLAN ID {vlan} (must be between 0 and 4094)")
    if vlan or conf.get("vlanTrunk"):
        raise CNIError(ERR_UNSUPPORTED_FIELD, "vlan and vlanTrunk are not supported by kubelab-bridge")
    if get_bool(conf, "macspoofchk"):
        raise CNIError(ERR_UNSUPPORTED_FIELD, "macspoofchk is not supported by kubelab-bridge")
    c.dns = parse_dns(conf.get("dns"))
    ipam_conf = get_dict(conf, "ipam")
    c.ipam_type = get_str(ipam_conf, "type", where="ipam.")
    c.cni_args = parse_cni_args(cni_args, ("MAC", "IP"))
    mac = c.cni_args.get("MAC", "")
    args = get_dict(conf, "args")
    mac = get_str(get_dict(args, "cni", "args."), "mac", mac, "args.cni.") or mac
    mac = get_str(get_dict(conf, "runtimeConfig"), "mac", mac, "runtimeConfig.") or mac
    if mac and not _valid_mac(mac):
        raise config_error(f"invalid MAC address {mac!r}")
    c.mac = mac.lower()
    c.prev_raw = conf.get("prevResult")
    return c


# -- small host helpers ----------------------------------------------------------------------

def sysctl(key: str, value: str | None = None, root: str = PROC_SYS) -> str | None:
    """Read (and with value, set if different) /proc/sys/<key>; None if the key does not exist."""
    path = os.path.join(root, key)
    try:
        with open(path) as f:
            cur = f.read().strip()
    except FileNotFoundError:
        return None
    if value is not None and cur != value:
        with open(path, "w") as f:
            f.write(value)
        return value
    return cur


def ensure_bridge_netfilter(root: str | None = None) -> str:
    """net.bridge.bridge-nf-call-iptables and -ip6tables = 1 so bridged pod traffic traverses
    iptables (kube-proxy's Services between pods on one bridge need it). Returns "" when set, else
    the one-line reason it cannot be set."""
    root = root or PROC_SYS
    if not os.path.isdir(os.path.join(root, "net/bridge")):
        return (f"{root}/net/bridge is missing: the br_netfilter module is not loaded "
                "(run `modprobe br_netfilter`); bridged pod traffic will bypass iptables, "
                "so Service traffic between pods on this bridge will not work")
    for key in ("net/bridge/bridge-nf-call-iptables", "net/bridge/bridge-nf-call-ip6tables"):
        try:
            sysctl(key, "1", root)
        except OSError as e:
            return (f"cannot set {key.replace('/', '.')}=1 ({e.strerror}): bridged pod traffic "
                    "will bypass iptables, so Service traffic between pods on this bridge will not work")
    return ""


def warn(msg: str) -> None:
    sys.stderr.write(f"kubelab-bridge: {msg}\n")
    sys.stderr.flush()


def run_async(make: Callable[[], Coroutine[Any, Any, Any]]) -> Any:
    """Run a coroutine to completion; asyncio is only imported by the paths that exec commands."""
    import asyncio
    return asyncio.run(make())


def _load_br_netfilter() -> None:
    async def go() -> None:
        from kubelab import proc
        try:
            from kubelab.cni.masq import find_binary
            modprobe = find_binary("modprobe")
        except CNIError:
            return
        await proc.run([modprobe, "br_netfilter"], timeout=10, check=False)
    run_async(go)


def _family(addr: str) -> int:
    return socket.AF_INET6 if ":" in addr else socket.AF_INET


# -- IPAM ------------------------------------------------------------------------------------

class IPAM:
    """host-local in-process, anything else exec'd from CNI_PATH like libcni's ipam.ExecAdd."""

    def __init__(self, conf: BridgeConf, args: CmdArgs) -> None:
        self.conf, self.args = conf, args
        self.local = conf.ipam_type == "host-local"
        self.cfg = hostlocal.load_config(conf.raw, conf.cni_args) if self.local else None

    def families(self) -> set[int]:
        if self.cfg is not None:
            return {rs.ranges[0].subnet.version for rs in self.cfg.range_sets}
        return set()

    def _exec(self, command: str) -> dict[str, Any] | None:
        import json

        from kubelab.cni.masq import DEFAULT_PATH
        typ = self.conf.ipam_type
        if not typ or "/" in typ:
            raise config_error(f"invalid ipam type {typ!r}")
        path = next((os.path.join(d, typ) for d in self.args.path.split(":")
                     if d and os.access(os.path.join(d, typ), os.X_OK)), None)
        if path is None:
            raise CNIError(ERR_INTERNAL, f'failed to find plugin "{typ}" in path [{self.args.path}]')
        env = dict(os.environ, CNI_COMMAND=command)
        env.setdefault("PATH", DEFAULT_PATH)

        async def go() -> Any:
            from kubelab import proc
            return await proc.run([path], input=self.args.stdin, env=env, timeout=60, check=False)

        res = run_async(go)
        out = res.stdout.strip()
        if res.returncode != 0:
            try:
                err = json.loads(out)
                raise CNIError(int(err.get("code", ERR_INTERNAL)), str(err.get("msg", "")),
                               str(err.get("details", "")))
            except (ValueError, AttributeError, TypeError):
                tail = (res.stderr or res.stdout).decode(errors="replace").strip().splitlines()
                raise CNIError(ERR_INTERNAL, f"ipam plugin {typ} failed ({command.lower()}): "
                                             f"{tail[-1] if tail else f'exit status {res.returncode}'}") from None
        if command != "ADD":
            return None
        try:
            return parse_result(json.loads(out))
        except ValueError:
            raise CNIError(ERR_INTERNAL, f"ipam plugin {typ} returned invalid JSON") from None

    def add(self) -> dict[str, Any]:
        if self.cfg is not None:
            return hostlocal.allocate(self.cfg, self.args.container_id, self.args.ifname)
        res = self._exec("ADD") or {}
        return {"ips": res.get("ips") or [], "routes": res.get("routes") or [], "dns": res.get("dns") or {}}

    def delete(self) -> list[str]:
        if self.cfg is not None:
            return [str(ip) for ip in hostlocal.release(self.cfg, self.args.container_id, self.args.ifname)]
        self._exec("DEL")
        return []

    def check(self) -> None:
        if self.cfg is not None:
            hostlocal.check(self.cfg, self.args.container_id, self.args.ifname)
        else:
            self._exec("CHECK")


# -- ADD -------------------------------------------------------------------------------------

def _ensure_bridge(rt: nl.RTNL, conf: BridgeConf) -> nl.Link:
    br = rt.get_link(conf.bridge)
    if br is None:
        try:
            rt.add_link(conf.bridge, "bridge", mtu=conf.mtu, up=True,
                        data=[("IFLA_BR_NF_CALL_IPTABLES", 1), ("IFLA_BR_NF_CALL_IP6TABLES", 1)])
        except nl.NetlinkError as e:
            if e.errno != 17:  # EEXIST: another ADD made it first
                raise CNIError(ERR_INTERNAL, f'failed to create bridge "{conf.bridge}": could not add '
                                             f'"{conf.bridge}": {e.strerror}') from None
        br = rt.get_link(conf.bridge)
        if br is None:
            raise CNIError(ERR_INTERNAL, f'failed to create bridge "{conf.bridge}": it vanished')
    if br.kind != "bridge":
        raise CNIError(ERR_INTERNAL, f'failed to create bridge "{conf.bridge}": '
                                     f'"{conf.bridge}" already exists but is not a bridge')
    if not br.info_data.get("IFLA_BR_NF_CALL_IPTABLES") or not br.up or (conf.promisc and not br.promisc):
        data = [("IFLA_BR_NF_CALL_IPTABLES", 1), ("IFLA_BR_NF_CALL_IP6TABLES", 1)]
        rt.set_link(br.index, up=True, data_kind="bridge", data=data)
        if conf.promisc and not br.promisc:
            _set_promisc(rt, br.index)
    try:
        sysctl(f"net/ipv6/conf/{conf.bridge}/accept_ra", "0")
    except OSError:
        pass
    return br


def _set_promisc(rt: nl.RTNL, index: int) -> None:
    rt.request("ifinfmsg", nl.RTM_NEWLINK, nl.NLM_F_ACK,
               {"index": index, "flags": nl.IFF_PROMISC, "change": nl.IFF_PROMISC}, [])


def _make_veth(rt: nl.RTNL, conf: BridgeConf, args: CmdArgs, br: nl.Link, netns_fd: int) -> nl.Link:
    for _ in range(10):
        name = "veth" + os.urandom(4).hex()
        try:
            rt.add_veth(name, args.ifname, netns_fd, mtu=conf.mtu, up=True, master=br.index,
                        peer_mac=conf.mac)
        except nl.NetlinkError as e:
            if e.errno == 17:  # EEXIST: our random host name, or the container's ifname
                if rt.get_link(name) is not None:
                    continue
                raise CNIError(ERR_INTERNAL, f"container veth name provided ({args.ifname}) "
                                             "already exists") from None
            raise CNIError(ERR_INTERNAL, f"failed to make veth pair: {e.strerror}") from None
        host = rt.get_link(name)
        if host is None:
            raise CNIError(ERR_INTERNAL, f"failed to lookup {name!r}: it vanished")
        return host
    raise CNIError(ERR_INTERNAL, "failed to find a unique veth name")


def _gateways(result_ips: list[dict[str, Any]], routes: list[dict[str, Any]],
              conf: BridgeConf) -> list[ipaddress.IPv4Interface | ipaddress.IPv6Interface]:
    """calcGateways: interface indexes, default gateways, default routes; returns the bridge's
    gateway addresses (with isGateway)."""
    gws: list[ipaddress.IPv4Interface | ipaddress.IPv6Interface] = []
    default_found: set[int] = set()
    for ip in result_ips:
        iface = ipaddress.ip_interface(ip["address"])
        ip["interface"] = 2
        if not ip.get("gateway") and conf.is_gateway:
            ip["gateway"] = str(iface.network.network_address + 1)
        if conf.is_default_gateway and iface.version not in default_found:
            default = "0.0.0.0/0" if iface.version == 4 else "::/0"
            if not any(r.get("gw") and r["dst"] == default for r in routes):
                route = {"dst": default}
                if ip.get("gateway"):
                    route["gw"] = ip["gateway"]
                routes.append(route)
            default_found.add(iface.version)
        if conf.is_gateway and ip.get("gateway"):
            gws.append(ipaddress.ip_interface(f"{ip['gateway']}/{iface.network.prefixlen}"))
    return gws


def _configure_container(netns_fd: int, args: CmdArgs, conf: BridgeConf, ips: list[dict[str, Any]],
                         routes: list[dict[str, Any]]) -> nl.Link:
    """ipam.ConfigureIface inside the netns; returns the container link."""
    with nl.netns(netns_fd):
        rt = nl.RTNL()
        try:
            ifn = args.ifname
            try:
                if conf.enable_dad:
                    sysctl(f"net/ipv6/conf/{ifn}/enhanced_dad", "1")
                    sysctl(f"net/ipv6/conf/{ifn}/accept_dad", "1")
                else:
                    sysctl(f"net/ipv6/conf/{ifn}/accept_dad", "0")
                sysctl(f"net/ipv4/conf/{ifn}/arp_notify", "1")
            except OSError:
                pass
            if any(":" in ip["address"] for ip in ips):
                for dev in ("lo", ifn):
                    try:
                        sysctl(f"net/ipv6/conf/{dev}/disable_ipv6", "0")
                    except OSError as e:
                        raise CNIError(ERR_INTERNAL, f"failed to enable IPv6 for interface {dev!r}: "
                                                     f"{e.strerror}") from None
            link = rt.get_link(ifn)
            if link is None:
                raise CNIError(ERR_INTERNAL, f'failed to lookup "{ifn}": link not found')
            try:
                rt.set_link(link.index, up=True)
            except nl.NetlinkError as e:
                raise CNIError(ERR_INTERNAL, f'failed to set "{ifn}" UP: {e.strerror}') from None
            gw: dict[int, str] = {}
            for ip in ips:
                iface = ipaddress.ip_interface(ip["address"])
                fam = _family(ip["address"])
                try:
                    rt.add_addr(link.index, str(iface.ip), iface.network.prefixlen, fam)
                except nl.NetlinkError as e:
                    raise CNIError(ERR_INTERNAL, f'failed to add IP addr {ip["address"]} to "{ifn}": '
                                                 f"{e.strerror}") from None
                if ip.get("gateway") and fam not in gw:
                    gw[fam] = ip["gateway"]
            for r in routes:
                dst = ipaddress.ip_network(r["dst"], strict=False)
                fam = socket.AF_INET6 if dst.version == 6 else socket.AF_INET
                via = r.get("gw") or gw.get(fam)
                try:
                    rt.add_route(fam, str(dst.network_address), dst.prefixlen, via, link.index)
                except nl.NetlinkError as e:
                    raise CNIError(ERR_INTERNAL, f"failed to add route '{r['dst']} via {via} dev {ifn}': "
                                                 f"{e.strerror}") from None
            return rt.get_link(ifn) or link
        finally:
            rt.close()


def _ensure_addr(rt: nl.RTNL, br: nl.Link, gw: ipaddress.IPv4Interface | ipaddress.IPv6Interface,
                 force: bool, name: str) -> None:
    """Put the gateway address on the bridge; `br` is the bridge as it was before this ADD
    enslaved its veth, so pinning its MAC keeps the bridge's own address (a new bridge otherwise
    takes its lowest port's MAC)."""
    fam = socket.AF_INET6 if gw.version == 6 else socket.AF_INET
    for a in rt.addrs(br.index, fam):
        have = ipaddress.ip_interface(f"{a.address}/{a.prefixlen}")
        if have == gw:
            return
        if have.is_link_local:
            continue
        if fam == socket.AF_INET or gw.ip in have.network or have.ip in gw.network:
            if not force:
                raise CNIError(ERR_INTERNAL, f'failed to set bridge addr: "{name}" already has an IP '
                                             f"address different from {gw}")
            rt.del_addr(br.index, a.address, a.prefixlen, fam)
    try:
        rt.add_addr(br.index, str(gw.ip), gw.network.prefixlen, fam)
    except nl.NetlinkError as e:
        if e.errno != 17:
            raise CNIError(ERR_INTERNAL, f'failed to set bridge addr: could not add IP address to "{name}": '
                                         f"{e.strerror}") from None
    # pin the bridge's MAC: otherwise it follows the lowest port MAC and changes as pods come and go
    if br.mac:
        rt.set_link(br.index, mac=br.mac)


def cmd_add(args: CmdArgs, conf: BridgeConf) -> str:
    if conf.hairpin and conf.promisc:
        raise config_error("cannot set hairpin mode and promiscuous mode at the same time.")
    ipam = IPAM(conf, args) if conf.ipam_type else None
    netns_fd = _open_netns(args.netns)
    try:
        if nl.is_own_netns(netns_fd):
            raise CNIError(ERR_INVALID_ENV, "plugin's netns and netns from CNI_NETNS should not be the same")
        return _add(args, conf, ipam, netns_fd)
    finally:
        os.close(netns_fd)


def _open_netns(path: str) -> int:
    try:
        return nl.open_netns(path)
    except FileNotFoundError:
        raise CNIError(ERR_INTERNAL, f'failed to open netns "{path}": no such file or directory') from None
    except nl.NotANetns:
        raise CNIError(ERR_INTERNAL, f'failed to open netns "{path}": not a network namespace') from None
    except OSError as e:
        raise CNIError(ERR_INTERNAL, f'failed to open netns "{path}": {e.strerror}') from None


def _add(args: CmdArgs, conf: BridgeConf, ipam: IPAM | None, netns_fd: int) -> str:
    problem = ensure_bridge_netfilter()
    if problem and not os.path.isdir(os.path.join(PROC_SYS, "net/bridge")):
        _load_br_netfilter()
        problem = ensure_bridge_netfilter()
    if problem:
        warn(problem)

    rt = nl.RTNL()
    host: nl.Link | None = None
    allocated = masqueraded = False
    try:
        br = _ensure_bridge(rt, conf)
        host = _make_veth(rt, conf, args, br, netns_fd)
        if conf.hairpin:
            try:
                rt.set_hairpin(host.index, True)
            except nl.NetlinkError as e:
                raise CNIError(ERR_INTERNAL, f"failed to setup hairpin mode for {host.name}: {e.strerror}") from None
        try:
            sysctl(f"net/ipv6/conf/{host.name}/accept_ra", "0")
        except OSError:
            pass
        interfaces = [{"name": br.name, "mac": br.mac}, {"name": host.name, "mac": host.mac},
                      {"name": args.ifname, "mac": "", "sandbox": args.netns}]
        ips: list[dict[str, Any]] = []
        routes: list[dict[str, Any]] = []
        ipam_dns: dict[str, Any] = {}
        if ipam is not None:
            res = ipam.add()
            allocated = True  # only now: a failed ADD must not free what an earlier ADD took
            ips = [dict(i) for i in res["ips"]]
            routes = [dict(r) for r in res["routes"]]
            ipam_dns = res["dns"]
            if not ips:
                raise CNIError(ERR_INTERNAL, "IPAM plugin returned missing IP config")
            gws = _gateways(ips, routes, conf)
            cont = _configure_container(netns_fd, args, conf, ips, routes)
            if conf.is_gateway:
                for gw in gws:
                    _ensure_addr(rt, br, gw, conf.force_address, conf.bridge)
                for fam in {g.version for g in gws}:
                    sysctl("net/ipv4/ip_forward" if fam == 4 else "net/ipv6/conf/all/forwarding", "1")
            if conf.ip_masq:
                from kubelab.cni import masq
                masqueraded = True
                run_async(lambda: masq.setup([i["address"] for i in ips], conf.name, args.container_id))
        else:
            with nl.netns(netns_fd):
                with nl.RTNL() as crt:
                    link = crt.get_link(args.ifname)
                    if link is None:
                        raise CNIError(ERR_INTERNAL, "failed to retrieve link: link not found")
                    crt.set_link(link.index, up=True)
                    cont = crt.get_link(args.ifname) or link
        interfaces[2]["mac"] = cont.mac
        now = rt.get_link(index=host.index)
        if now is not None:
            interfaces[1]["mac"] = now.mac
        brnow = rt.get_link(conf.bridge)
        if brnow is not None:
            interfaces[0]["mac"] = brnow.mac
        result = new_result(interfaces, ips, routes, conf.dns or ipam_dns)
        return dumps(convert_result(result, conf.cni_version))
    except BaseException:
        _undo_add(rt, conf, args, host, ipam if allocated else None, masqueraded)
        raise
    finally:
        rt.close()


def _undo_add(rt: nl.RTNL, conf: BridgeConf, args: CmdArgs, host: nl.Link | None,
              ipam: IPAM | None, masqueraded: bool) -> None:
    """Best effort: a failed ADD leaves nothing behind."""
    if host is not None:
        try:
            rt.del_link(host.index)
        except OSError:
            pass
    if ipam is not None:
        try:
            ipam.delete()
        except Exception as e:  # noqa: BLE001 - report the original error, not the cleanup's
            warn(f"releasing addresses after a failed ADD: {e}")
    if masqueraded:
        try:
            from kubelab.cni import masq
            fams = (ipam.families() if ipam else set()) or {4, 6}
            run_async(lambda: masq.teardown(conf.name, args.container_id, fams))
        except Exception as e:  # noqa: BLE001
            warn(f"removing ipMasq rules after a failed ADD: {e}")


# -- DEL -------------------------------------------------------------------------------------

def cmd_del(args: CmdArgs, conf: BridgeConf) -> str:
    ipam = IPAM(conf, args) if conf.ipam_type else None
    found: list[str] = []  # the container's addresses, for the ipMasq teardown
    removed = False
    if args.netns:
        try:
            with nl.netns(args.netns):
                with nl.RTNL() as rt:
                    link = rt.get_link(args.ifname)
                    if link is not None:
                        for a in rt.addrs(link.index):
                            ip = ipaddress.ip_address(a.address)
                            if not (ip.is_link_local or ip.is_loopback or ip.is_multicast
                                    or ip.is_unspecified):
                                found.append(str(ip))
                        try:
                            rt.del_link(link.index)
                        except nl.NetlinkError as e:
                            if e.errno != 19:  # ENODEV: a concurrent DEL won
                                raise CNIError(ERR_INTERNAL, f'failed to delete "{args.ifname}": '
                                                             f"{e.strerror}") from None
                        removed = True
        except (FileNotFoundError, nl.NotANetns):
            pass  # the namespace is gone: so is the container end of the pair
        except PermissionError as e:
            raise CNIError(ERR_INTERNAL, f'failed to open netns "{args.netns}": {e.strerror}') from None
    if not removed:
        _remove_lingering_veth(conf)
    if ipam is not None:
        found += ipam.delete()
        if conf.ip_masq:
            from kubelab.cni import masq
            fams = ipam.families()
            prev = conf.prev_result(strict=False)
            if not fams and not found and prev:
                fams = {6 if ":" in i["address"] else 4 for i in prev.get("ips") or []}
            run_async(lambda: masq.teardown(conf.name, args.container_id, fams or {4}, found))
    return ""


def _remove_lingering_veth(conf: BridgeConf) -> None:
    """The container's netns is gone from its path but may live on elsewhere with our veth pair:
    delete the host end prevResult names if it is still a veth on our bridge."""
    prev = conf.prev_result(strict=False) or {}
    names = [i["name"] for i in prev.get("interfaces") or []
             if not i.get("sandbox") and i.get("name") != conf.bridge]
    if not names:
        return
    with nl.RTNL() as rt:
        br = rt.get_link(conf.bridge)
        for name in names:
            link = rt.get_link(name)
            if link is not None and link.kind == "veth" and br is not None and link.master == br.index:
                try:
                    rt.del_link(link.index)
                except nl.NetlinkError:
                    pass


# -- CHECK -----------------------------------------------------------------------------------

def cmd_check(args: CmdArgs, conf: BridgeConf) -> str:
    os.close(_open_netns(args.netns))
    if conf.ipam_type:
        IPAM(conf, args).check()
    prev = conf.prev_result()
    if prev is None:
        raise CNIError(ERR_INTERNAL, "Required prevResult missing")
    intfs = prev.get("interfaces") or []
    br_i = next((i for i in intfs if i["name"] == conf.bridge), None)
    cont_i = next((i for i in intfs if i["name"] == args.ifname and i.get("sandbox") == args.netns), None)
    with nl.RTNL() as rt:
        if br_i is None:
            raise CNIError(ERR_INTERNAL, f"CNI created bridge {conf.bridge} in host namespace was not found")
        br = rt.get_link(br_i["name"])
        if br is None:
            raise CNIError(ERR_INTERNAL, f"Interface name {br_i['name']} not found")
        if br.kind != "bridge":
            raise CNIError(ERR_INTERNAL, f"Interface {br.name} does not have link type of bridge")
        if br_i.get("mac") and br_i["mac"].lower() != br.mac:
            raise CNIError(ERR_INTERNAL, f"Bridge interface {br.name} Mac doesn't match: {br_i['mac']}")
        if br.promisc != conf.promisc:
            raise CNIError(ERR_INTERNAL, f"Bridge interface {br.name} configured Promisc Mode {conf.promisc} "
                                         f"doesn't match current state: {br.promisc}")
        if cont_i is None:
            raise CNIError(ERR_INTERNAL, f"Sandbox in prevResult  doesn't match configured netns: {args.netns}")
        with nl.netns(args.netns):
            with nl.RTNL() as crt:
                cont = crt.get_link(args.ifname)
                if cont is None:
                    raise CNIError(ERR_INTERNAL, f"Interface name {args.ifname} not found")
                if cont.kind != "veth":
                    raise CNIError(ERR_INTERNAL, f"Error: Container interface {cont.name} not of type veth")
                if cont_i.get("mac") and cont_i["mac"].lower() != cont.mac:
                    raise CNIError(ERR_INTERNAL, f"Interface {cont.name} Mac {cont_i['mac']} doesn't match "
                                                 f"container Mac: {cont.mac}")
                _validate_ips(crt, cont, prev.get("ips") or [])
                _validate_routes(crt, prev.get("routes") or [])
        veth_ok = False
        for i in intfs:
            if i is br_i or i is cont_i or i.get("sandbox"):
                continue
            link = rt.get_link(i["name"])
            if link is None:
                raise CNIError(ERR_INTERNAL, f"Interface name {i['name']} not found")
            if link.kind != "veth":
                continue
            if link.index == cont.peer_index and link.peer_index == cont.index and link.master == br.index:
                if i.get("mac") and i["mac"].lower() != link.mac:
                    raise CNIError(ERR_INTERNAL, f"Interface {link.name} Mac doesn't match: {i['mac']} not found")
                veth_ok = True
                break
        if not veth_ok:
            raise CNIError(ERR_INTERNAL, f"CNI veth created for bridge {conf.bridge} was not found")
    return ""


def _validate_ips(rt: nl.RTNL, link: nl.Link, ips: list[dict[str, Any]]) -> None:
    have = {ipaddress.ip_interface(f"{a.address}/{a.prefixlen}") for a in rt.addrs(link.index)}
    for ip in ips:
        if ipaddress.ip_interface(ip["address"]) not in have:
            raise CNIError(ERR_INTERNAL, f"Failed to match addr {ip['address']} on interface {link.name}")


def _validate_routes(rt: nl.RTNL, routes: list[dict[str, Any]]) -> None:
    table = rt.routes()
    for r in routes:
        dst = ipaddress.ip_network(r["dst"], strict=False)
        ok = False
        for have in table:
            if have.table != nl.RT_TABLE_MAIN or have.dst_len != dst.prefixlen:
                continue
            if have.family != (socket.AF_INET6 if dst.version == 6 else socket.AF_INET):
                continue
            if dst.prefixlen and ipaddress.ip_address(have.dst) != dst.network_address:
                continue
            if r.get("gw") and have.gateway != r["gw"]:
                continue
            ok = True
            break
        if not ok:
            raise CNIError(ERR_INTERNAL, f"Failed to match route {r['dst']}" +
                           (f" via {r['gw']}" if r.get("gw") else "") + " in the container")
