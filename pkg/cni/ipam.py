"""host-local IPAM in-process, with the reference plugin's on-disk layout so either can manage the
same data dir:

  <dataDir>/<network name>/            dataDir defaults to /var/lib/cni/networks
      lock                             flock(2)ed around every allocation and release
      <ip>                             one file per allocated address: "<container id>\r\n<ifname>"
      last_reserved_ip.<range set #>   the last address handed out from that range set

Allocation is round-robin from the address after last_reserved_ip (a crash-looping pod does not get
the same address back at once), skips each range's gateway, and reserves with O_CREAT|O_EXCL, so the
file system is the arbiter even without the lock. A container already holding an address in a range
set is refused (duplicate allocation). Release removes every file naming the container id and
interface (or, for files an older host-local wrote, the id alone) and is idempotent.

Config (the "ipam" object): ranges [[{subnet, rangeStart, rangeEnd, gateway}]] (or the old
single-range keys subnet/rangeStart/rangeEnd/gateway at the top), routes [{dst, gw}], dataDir,
resolvConf; requested addresses from CNI_ARGS IP=, args.cni.ips and runtimeConfig.ips; ranges
from runtimeConfig.ipRanges.
"""
from __future__ import annotations

import fcntl
import ipaddress
import os
TYPE_CHECKING = False  # not typing's: the plugin is exec'd per pod and skips importing typing

from kubelab.cni.spec import (CNIError, ERR_INTERNAL, ERR_IO, config_error, parse_dns,
                              version_at_least)

if TYPE_CHECKING:
    from typing import Any, Iterator, Mapping

IP = ipaddress.IPv4Address | ipaddress.IPv6Address
Net = ipaddress.IPv4Network | ipaddress.IPv6Network

DEFAULT_DATA_DIR = "/var/lib/cni/networks"
LAST_IP_PREFIX = "last_reserved_ip."
LINE_BREAK = "\r\n"


class _Lock:
    """An exclusive flock on a file, for a with statement (contextlib is not imported per exec)."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __enter__(self) -> None:
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX)
        except BaseException:
            os.close(self.fd)
            raise

    def __exit__(self, *exc: object) -> None:
        os.close(self.fd)  # closing drops the lock


class Range:
    """An allocatable range: range_start..range_end (inclusive) of subnet, gateway excluded."""

    def __init__(self, subnet: Net, range_start: IP, range_end: IP, gateway: IP) -> None:
        self.subnet, self.range_start, self.range_end, self.gateway = subnet, range_start, range_end, gateway

    def contains(self, ip: IP) -> bool:
        return ip.version == self.subnet.version and self.range_start <= ip <= self.range_end

    def __str__(self) -> str:
        return f"{self.range_start}-{self.range_end}"


class RangeSet:
    """Ranges of one family that share one allocation (one address per container)."""

    def __init__(self, ranges: list[Range]) -> None:
        self.ranges = ranges

    def contains(self, ip: IP) -> bool:
        return any(r.contains(ip) for r in self.ranges)

    def range_for(self, ip: IP) -> Range:
        for r in self.ranges:
            if r.contains(ip):
                return r
        raise CNIError(ERR_INTERNAL, f"{ip} not in range set {self}")

    def __str__(self) -> str:
        return ",".join(str(r) for r in self.ranges)


class IPAMConfig:
    def __init__(self, name: str, range_sets: list[RangeSet], routes: list[dict[str, Any]] | None = None,
                 data_dir: str = DEFAULT_DATA_DIR, resolv_conf: str = "",
                 requested: list[IP] | None = None) -> None:
        self.name, self.range_sets = name, range_sets
        self.routes = routes or []
        self.data_dir, self.resolv_conf = data_dir, resolv_conf
        self.requested = requested or []

    @property
    def dir(self) -> str:
        return os.path.join(self.data_dir, self.name)


def parse_ip(s: Any, what: str) -> IP:
    if not isinstance(s, str):
        raise config_error(f"invalid {what}: {s!r} is not a string")
    try:
        return ipaddress.ip_address(s.split("/", 1)[0].strip())
    except ValueError:
        raise config_error(f"invalid {what} {s!r}: not an IP address") from None


def parse_cidr(s: Any, what: str) -> ipaddress.IPv4Interface | ipaddress.IPv6Interface:
    if not isinstance(s, str) or "/" not in s:
        raise config_error(f"invalid {what} {s!r}: invalid CIDR address")
    try:
        return ipaddress.ip_interface(s.strip())
    except ValueError:
        raise config_error(f"invalid {what} {s!r}: invalid CIDR address") from None


def _last_ip(net: Net) -> IP:
    """The last address of a subnet, the broadcast excluded for IPv4."""
    last = net.broadcast_address
    return last - 1 if net.version == 4 else last


def parse_range(obj: Any, where: str) -> Range:
    if not isinstance(obj, dict):
        raise config_error(f"{where}: a range must be an object")
    iface = parse_cidr(obj.get("subnet"), "subnet")
    net = iface.network
    if net.prefixlen > net.max_prefixlen - 2:
        raise config_error(f"{where}: Network {net} too small to allocate from")
    gw = parse_ip(obj["gateway"], "gateway") if obj.get("gateway") else net.network_address + 1
    if obj.get("gateway") and gw not in net:
        raise config_error(f"{where}: gateway {gw} not in network {net}")
    r = Range(net, net.network_address + 1, _last_ip(net), gw)
    for key in ("rangeStart", "rangeEnd"):
        if obj.get(key):
            ip = parse_ip(obj[key], key)
            if ip.version != net.version:
                raise config_error(f"{where}: IP {ip} is not the same protocol as subnet {net}")
            if ip not in net:
                raise config_error(f"{where}: {ip} not in network {net}")
            if key == "rangeStart":
                r.range_start = ip
            else:
                r.range_end = ip
    if r.range_start > r.range_end:
        raise config_error(f"{where}: rangeStart {r.range_start} is after rangeEnd {r.range_end}")
    return r


def _overlaps(a: Range, b: Range) -> bool:
    return a.subnet.version == b.subnet.version and a.range_start <= b.range_end and b.range_start <= a.range_end


def parse_range_set(obj: Any, idx: int) -> RangeSet:
    where = f"invalid range set {idx}"
    if not isinstance(obj, list) or not obj:
        raise config_error(f"{where}: empty range set")
    rs = RangeSet([parse_range(r, where) for r in obj])
    if len({r.subnet.version for r in rs.ranges}) > 1:
        raise config_error(f"{where}: mixed address families")
    for i, a in enumerate(rs.ranges):
        for b in rs.ranges[i + 1:]:
            if _overlaps(a, b):
                raise config_error(f"{where}: subnets {a.subnet} and {b.subnet} overlap")
    return rs


def parse_route(obj: Any) -> dict[str, Any]:
    if not isinstance(obj, dict):
        raise config_error("invalid route: must be an object")
    dst = parse_cidr(obj.get("dst"), "route dst")
    out: dict[str, Any] = {"dst": str(dst)}
    if obj.get("gw"):
        out["gw"] = str(parse_ip(obj["gw"], "route gw"))
    return out


def load_config(conf: Mapping[str, Any], cni_args: Mapping[str, str] | None = None) -> IPAMConfig:
    """The host-local config from the whole plugin config (it reads name, cniVersion, ipam, args and
    runtimeConfig), validated like allocator.LoadIPAMConfig; errors are code 7."""
    ipam = conf.get("ipam")
    if not isinstance(ipam, dict):
        raise config_error("IPAM config missing 'ipam' key")
    requested: list[IP] = []
    if cni_args and cni_args.get("IP"):
        requested.append(parse_ip(cni_args["IP"], "IP in CNI_ARGS"))
    args = conf.get("args")
    if isinstance(args, dict) and isinstance(args.get("cni"), dict):
        for s in args["cni"].get("ips") or []:
            requested.append(parse_ip(s, "args.cni.ips"))
    rc = conf.get("runtimeConfig") if isinstance(conf.get("runtimeConfig"), dict) else {}
    for s in rc.get("ips") or []:
        requested.append(parse_ip(s, "runtimeConfig.ips"))

    raw_sets: list[Any] = []
    if rc.get("ipRanges"):
        raw_sets.extend(rc["ipRanges"])
    if ipam.get("subnet"):
        raw_sets.append([{k: ipam.get(k) for k in ("subnet", "rangeStart", "rangeEnd", "gateway")}])
    if ipam.get("ranges") is not None and not isinstance(ipam.get("ranges"), list):
        raise config_error("invalid ipam.ranges: must be a list of range sets")
    raw_sets.extend(ipam.get("ranges") or [])
    if not raw_sets:
        raise config_error("no IP ranges specified")
    sets = [parse_range_set(s, i) for i, s in enumerate(raw_sets)]
    fams = [s.ranges[0].subnet.version for s in sets]
    if (fams.count(4) > 1 or fams.count(6) > 1) and not version_at_least(
            str(conf.get("cniVersion") or "0.1.0"), "0.3.0"):
        raise config_error(f"CNI version {conf.get('cniVersion')} does not support more than 1 address per family")
    for i, a in enumerate(sets):
        for j in range(i + 1, len(sets)):
            if any(_overlaps(x, y) for x in a.ranges for y in sets[j].ranges):
                raise config_error(f"range set {i} overlaps with {j}")
    routes = ipam.get("routes") or []
    if not isinstance(routes, list):
        raise config_error("invalid ipam.routes: must be a list")
    data_dir = ipam.get("dataDir") or DEFAULT_DATA_DIR
    resolv = ipam.get("resolvConf") or ""
    if not isinstance(data_dir, str) or not isinstance(resolv, str):
        raise config_error("ipam.dataDir and ipam.resolvConf must be strings")
    return IPAMConfig(name=str(conf.get("name")), range_sets=sets,
                      routes=[parse_route(r) for r in routes], data_dir=data_dir,
                      resolv_conf=resolv, requested=requested)


def parse_resolv_conf(path: str) -> dict[str, Any]:
    """nameserver/domain/search/options lines of a resolv.conf as a CNI DNS object."""
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            lines = f.read().splitlines()
    except OSError as e:
        raise CNIError(ERR_IO, f"cannot read resolvConf {path}: {e.strerror}") from None
    dns: dict[str, Any] = {}
    for line in lines:
        line = line.strip()
        if not line or line[0] in "#;":
            continue
        f = line.split()
        if len(f) < 2:
            continue
        if f[0] == "nameserver":
            dns.setdefault("nameservers", []).append(f[1])
        elif f[0] == "domain":
            dns["domain"] = f[1]
        elif f[0] == "search":
            dns.setdefault("search", []).extend(f[1:])
        elif f[0] == "options":
            dns.setdefault("options", []).extend(f[1:])
    return parse_dns(dns)


class Store:
    """The data dir of one network: one file per address, under an flock."""

    def __init__(self, network: str, data_dir: str = DEFAULT_DATA_DIR) -> None:
        self.dir = os.path.join(data_dir or DEFAULT_DATA_DIR, network)
        try:
            os.makedirs(self.dir, 0o755, exist_ok=True)
        except OSError as e:
            raise CNIError(ERR_IO, f"cannot create IPAM data dir {self.dir}: {e.strerror}") from None

    def lock(self) -> "_Lock":
        """The store's flock, held while the body runs."""
        return _Lock(os.path.join(self.dir, "lock"))

    @staticmethod
    def _key(container_id: str, ifname: str) -> str:
        return container_id.strip() + LINE_BREAK + ifname

    def reserve(self, container_id: str, ifname: str, ip: IP, range_id: str) -> bool:
        path = os.path.join(self.dir, str(ip))
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
        except FileExistsError:
            return False
        except OSError as e:
            raise CNIError(ERR_IO, f"cannot reserve {ip} in {self.dir}: {e.strerror}") from None
        try:
            os.write(fd, self._key(container_id, ifname).encode())
        except OSError as e:
            os.close(fd)
            os.unlink(path)
            raise CNIError(ERR_IO, f"cannot reserve {ip} in {self.dir}: {e.strerror}") from None
        os.close(fd)
        with open(os.path.join(self.dir, LAST_IP_PREFIX + range_id), "w") as f:
            f.write(str(ip))
        return True

    def last_reserved(self, range_id: str) -> IP | None:
        try:
            with open(os.path.join(self.dir, LAST_IP_PREFIX + range_id)) as f:
                return ipaddress.ip_address(f.read().strip())
        except (OSError, ValueError):
            return None

    def _entries(self) -> Iterator[tuple[str, IP, str]]:
        """(path, address, content) of every address file."""
        try:
            names = os.listdir(self.dir)
        except FileNotFoundError:
            return
        for name in names:
            try:
                ip = ipaddress.ip_address(name)
            except ValueError:
                continue
            path = os.path.join(self.dir, name)
            try:
                with open(path, "rb") as f:
                    content = f.read().decode(errors="replace").strip()
            except OSError:
                continue
            yield path, ip, content

    def get_by_id(self, container_id: str, ifname: str) -> list[IP]:
        key, old = self._key(container_id, ifname), container_id.strip()
        return sorted((ip for _, ip, c in self._entries() if c in (key, old)),
                      key=lambda ip: (ip.version, ip))

    def release_by_id(self, container_id: str, ifname: str) -> list[IP]:
        """Remove the container's address files; the id-only files of older versions only when
        no file carries the id and interface."""
        entries = list(self._entries())
        key = self._key(container_id, ifname)
        mine = [(p, ip) for p, ip, c in entries if c == key]
        if not mine:
            mine = [(p, ip) for p, ip, c in entries if c == container_id.strip()]
        out = []
        for path, ip in mine:
            try:
                os.unlink(path)
                out.append(ip)
            except FileNotFoundError:
                pass
        return out

    def allocated(self) -> list[IP]:
        return [ip for _, ip, _ in self._entries()]


def _iterate(rs: RangeSet, last: IP | None) -> Iterator[tuple[IP, Range]]:
    """Every candidate once, starting after `last` (if it lies in the set), gateways skipped."""
    n = len(rs.ranges)
    start_idx, cur = 0, None
    if last is not None and rs.contains(last):
        start_idx = next(i for i, r in enumerate(rs.ranges) if r.contains(last))
        cur = last
    ranges = rs.ranges
    seq: list[tuple[int, IP, IP]] = []
    # walk from the address after `cur` to the end of its range, then every other range, then back
    # to the start of the first range up to `cur` itself
    r0 = ranges[start_idx]
    if cur is None:
        seq.append((start_idx, r0.range_start, r0.range_end))
        for k in range(1, n):
            r = ranges[(start_idx + k) % n]
            seq.append(((start_idx + k) % n, r.range_start, r.range_end))
    else:
        if cur < r0.range_end:
            seq.append((start_idx, cur + 1, r0.range_end))
        for k in range(1, n):
            r = ranges[(start_idx + k) % n]
            seq.append(((start_idx + k) % n, r.range_start, r.range_end))
        seq.append((start_idx, r0.range_start, cur))
    for idx, lo, hi in seq:
        r = ranges[idx]
        ip = lo
        while ip <= hi:
            if ip != r.gateway:
                yield ip, r
            if ip == hi:
                break
            ip += 1


def _ipconf(ip: IP, r: Range) -> dict[str, Any]:
    return {"address": f"{ip}/{r.subnet.prefixlen}", "gateway": str(r.gateway)}


def allocate(cfg: IPAMConfig, container_id: str, ifname: str) -> dict[str, Any]:
    """ADD: one address per range set (the requested one if it lies in the set). Returns the IPAM
    part of a 1.0 result: {"ips": [{"address", "gateway"}], "routes": [...], "dns": {...}}."""
    dns = parse_resolv_conf(cfg.resolv_conf) if cfg.resolv_conf else {}
    store = Store(cfg.name, cfg.data_dir)
    requested = {str(ip): ip for ip in cfg.requested}
    ips: list[dict[str, Any]] = []
    with store.lock():
        done: list[IP] = []
        try:
            held = store.get_by_id(container_id, ifname)
            for idx, rs in enumerate(cfg.range_sets):
                want = next((ip for ip in requested.values() if rs.contains(ip)), None)
                try:
                    if want is not None:
                        del requested[str(want)]
                        r = rs.range_for(want)
                        if want == r.gateway:
                            raise CNIError(ERR_INTERNAL, f"requested ip {want} is subnet's gateway")
                        if not store.reserve(container_id, ifname, want, str(idx)):
                            raise CNIError(ERR_INTERNAL, f"requested IP address {want} is not available "
                                                         f"in range set {rs}")
                        done.append(want)
                        ips.append(_ipconf(want, r))
                        continue
                    for ip in held:
                        if rs.contains(ip):
                            raise CNIError(ERR_INTERNAL, f"{ip} has been allocated to {container_id}, "
                                                         "duplicate allocation is not allowed")
                    for ip, r in _iterate(rs, store.last_reserved(str(idx))):
                        if store.reserve(container_id, ifname, ip, str(idx)):
                            done.append(ip)
                            ips.append(_ipconf(ip, r))
                            break
                    else:
                        raise CNIError(ERR_INTERNAL, f"no IP addresses available in range set: {rs}")
                except CNIError as e:
                    raise CNIError(e.code, f"failed to allocate for range {idx}: {e.msg}") from None
            if requested:
                raise CNIError(ERR_INTERNAL, "failed to allocate all requested IPs: " +
                               " ".join(requested))
        except BaseException:
            for ip in done:
                try:
                    os.unlink(os.path.join(store.dir, str(ip)))
                except OSError:
                    pass
            raise
    return {"ips": ips, "routes": [dict(r) for r in cfg.routes], "dns": dns}


def release(cfg: IPAMConfig, container_id: str, ifname: str) -> list[IP]:
    """DEL: free every address of this container and interface; nothing to free is fine."""
    store = Store(cfg.name, cfg.data_dir)
    with store.lock():
        return store.release_by_id(container_id, ifname)


def held(cfg: IPAMConfig, container_id: str, ifname: str) -> list[IP]:
    store = Store(cfg.name, cfg.data_dir)
    with store.lock():
        return store.get_by_id(container_id, ifname)


def check(cfg: IPAMConfig, container_id: str, ifname: str) -> None:
    """CHECK: the container holds at least one address here."""
    if not held(cfg, container_id, ifname):
        raise CNIError(ERR_INTERNAL, f"host-local: Failed to find address added by container {container_id}")

