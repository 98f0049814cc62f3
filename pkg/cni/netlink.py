"""Just enough rtnetlink for the bridge plugin: links, bridge ports, addresses and routes.

The plugin is a short-lived process that the runtime execs for every pod ADD and DEL, so this
module imports nothing beyond the standard library's socket and struct: messages are packed and
parsed here (struct ifinfomsg, ifaddrmsg, rtmsg and the attributes below, numbered as in
linux/if_link.h, if_addr.h and rtnetlink.h), over a plain blocking NETLINK_ROUTE socket.
pyroute2's message classes did this before; importing them (pyroute2.netlink pulls in logging,
multiprocessing and platform) cost the plugin about 45 ms of CPU per call, more than its netlink
work. Only the attributes the plugin, the kubelet's pod routes and kube-proxy's dummy interface use
are known; other attributes in kernel answers are skipped.

Work inside a container's network namespace is done by entering it on the calling thread
(setns(2) affects only that thread) for just as long as it takes to open a netlink socket there and
write its sysctls: a netlink socket stays bound to the namespace it was created in.
"""
from __future__ import annotations

import errno
import os
import struct

import _socket as socket   # socket.py's wrapper would import enum and selectors: ~4 ms per plugin exec
TYPE_CHECKING = False  # not typing's: the plugin is exec'd per pod and skips importing typing

if TYPE_CHECKING:
    from typing import Any, Iterator

AF_BRIDGE = 7
CLONE_NEWNET = 0x40000000

RTM_NEWLINK, RTM_DELLINK, RTM_GETLINK, RTM_SETLINK = 16, 17, 18, 19
RTM_NEWADDR, RTM_DELADDR, RTM_GETADDR = 20, 21, 22
RTM_NEWROUTE, RTM_DELROUTE, RTM_GETROUTE = 24, 25, 26

NLM_F_REQUEST, NLM_F_MULTI, NLM_F_ACK = 0x1, 0x2, 0x4
NLM_F_DUMP = 0x300
NLM_F_REPLACE, NLM_F_EXCL, NLM_F_CREATE, NLM_F_APPEND = 0x100, 0x200, 0x400, 0x800
NLMSG_ERROR, NLMSG_DONE = 2, 3
NLA_F_NESTED = 0x8000

IFF_UP = 0x1
IFF_PROMISC = 0x100
RT_TABLE_MAIN = 254
RT_SCOPE_UNIVERSE, RT_SCOPE_LINK, RT_SCOPE_NOWHERE = 0, 253, 255
RTPROT_BOOT = 3
RTN_UNICAST = 1

NLA_TYPE_MASK = 0x3FFF
_OPERSTATES = ("UNKNOWN", "NOTPRESENT", "DOWN", "LOWERLAYERDOWN", "TESTING", "DORMANT", "UP")

# message kind -> (struct of its fixed header, field names, attribute table)
# attribute table: name -> (type number, how the payload is coded)
_IFLA = {"IFLA_ADDRESS": (1, "mac"), "IFLA_IFNAME": (3, "str"), "IFLA_MTU": (4, "u32"), "IFLA_LINK": (5, "u32"),
         "IFLA_MASTER": (10, "u32"), "IFLA_PROTINFO": (12, "brport"), "IFLA_OPERSTATE": (16, "operstate"),
         "IFLA_LINKINFO": (18, "linkinfo"), "IFLA_NET_NS_FD": (28, "u32")}
_LINKINFO = {"IFLA_INFO_KIND": (1, "str"), "IFLA_INFO_DATA": (2, "info_data")}
_BRPORT = {"IFLA_BRPORT_MODE": (4, "u8")}
_INFO_DATA = {"veth": {"VETH_INFO_PEER": (1, "peer")},
              "bridge": {"IFLA_BR_NF_CALL_IPTABLES": (36, "u8"), "IFLA_BR_NF_CALL_IP6TABLES": (37, "u8")}}
_IFA = {"IFA_ADDRESS": (1, "ip"), "IFA_LOCAL": (2, "ip"), "IFA_BROADCAST": (4, "ip")}
_RTA = {"RTA_DST": (1, "ip"), "RTA_OIF": (4, "u32"), "RTA_GATEWAY": (5, "ip"), "RTA_TABLE": (15, "u32")}
_KINDS: dict[str, tuple[struct.Struct, tuple[str, ...], dict[str, tuple[int, str]]]] = {
    "ifinfmsg": (struct.Struct("=BxHiII"), ("family", "ifi_type", "index", "flags", "change"), _IFLA),
    "ifaddrmsg": (struct.Struct("=BBBBI"), ("family", "prefixlen", "flags", "scope", "index"), _IFA),
    "rtmsg": (struct.Struct("=BBBBBBBBI"),
              ("family", "dst_len", "src_len", "tos", "table", "proto", "scope", "type", "flags"), _RTA),
}
# each table read backwards (type number -> name, coding), for decoding; built once
_BY_TYPE: dict[int, dict[int, tuple[str, str]]] = {
    id(t): {atype: (name, how) for name, (atype, how) in t.items()}
    for t in (_IFLA, _LINKINFO, _BRPORT, _IFA, _RTA, *_INFO_DATA.values())}
_NLA = struct.Struct("=HH")
_NLMSGHDR = struct.Struct("=IHHII")
_INTS = {"u8": struct.Struct("=B"), "u16": struct.Struct("=H"), "u32": struct.Struct("=I")}


class Message:
    """A decoded (or to-be-encoded) rtnetlink message: header fields by name, known attributes."""
    __slots__ = ("kind", "fields", "attrs")

    def __init__(self, kind: str, fields: dict[str, int], attrs: dict[str, Any]) -> None:
        self.kind, self.fields, self.attrs = kind, fields, attrs

    def __getitem__(self, name: str) -> int:
        return self.fields[name]

    def get_attr(self, name: str) -> Any:
        return self.attrs.get(name)


def _pad(n: int) -> int:
    return (n + 3) & ~3


def _nla(atype: int, payload: bytes) -> bytes:
    return _NLA.pack(4 + len(payload), atype) + payload + b"\0" * (_pad(len(payload)) - len(payload))


def _encode_value(how: str, value: Any) -> bytes:
    if how in _INTS:
        return _INTS[how].pack(value)
    if how == "str":
        return value.encode() + b"\0"
    if how == "mac":
        return bytes.fromhex(value.replace(":", ""))
    if how == "ip":
        return socket.inet_pton(socket.AF_INET6 if ":" in value else socket.AF_INET, value)
    if how == "operstate":
        return bytes([_OPERSTATES.index(value)])
    if how == "brport":
        return _encode_attrs(value["attrs"], _BRPORT)
    if how == "linkinfo":
        items = value["attrs"]
        kind = next((v for n, v, *_ in items if n == "IFLA_INFO_KIND"), "")
        out = b""
        for name, v, *flags in items:
            atype, vhow = _LINKINFO[name]
            payload = _encode_attrs(v["attrs"], _INFO_DATA.get(kind, {})) if vhow == "info_data" \
                else _encode_value(vhow, v)
            out += _nla(atype | (flags[0] if flags else 0), payload)
        return out
    if how == "peer":  # VETH_INFO_PEER: a struct ifinfomsg, then the peer's IFLA attributes
        return _KINDS["ifinfmsg"][0].pack(0, 0, 0, 0, 0) + _encode_attrs(value["attrs"], _IFLA)
    raise ValueError(f"cannot encode a netlink attribute as {how}")


def _encode_attrs(attrs: list[Any], table: dict[str, tuple[int, str]]) -> bytes:
    """attrs: (name, value) or (name, value, NLA_F_* flags); a nested value is {"attrs": [...]}."""
    out = b""
    for name, value, *flags in attrs:
        try:
            atype, how = table[name]
        except KeyError:
            raise ValueError(f"unknown netlink attribute {name}") from None
        out += _nla(atype | (flags[0] if flags else 0), _encode_value(how, value))
    return out


def _decode_value(how: str, data: bytes, kind: str = "") -> Any:
    if how in _INTS:
        size = _INTS[how].size
        return _INTS[how].unpack(data[:size])[0] if len(data) >= size else 0
    if how == "str":
        return data.split(b"\0", 1)[0].decode(errors="replace")
    if how == "mac":
        return ":".join(f"{b:02x}" for b in data)
    if how == "ip":
        if len(data) == 4:
            return socket.inet_ntop(socket.AF_INET, data)
        if len(data) == 16:
            return socket.inet_ntop(socket.AF_INET6, data)
        return None
    if how == "operstate":
        return _OPERSTATES[data[0]] if data and data[0] < len(_OPERSTATES) else "UNKNOWN"
    if how == "brport":
        return _decode_attrs(data, _BRPORT)
    if how == "linkinfo":
        raw = {t: v for t, v in _iter_attrs(data)}
        link_kind = _decode_value("str", raw[1]) if 1 in raw else ""
        info: dict[str, Any] = {"IFLA_INFO_KIND": link_kind}
        if 2 in raw:
            info["IFLA_INFO_DATA"] = _decode_attrs(raw[2], _INFO_DATA.get(link_kind, {}))
        return info
    if how == "peer":
        return _decode_attrs(data[_KINDS["ifinfmsg"][0].size:], _IFLA)
    return data


def _iter_attrs(data: bytes) -> Iterator[tuple[int, bytes]]:
    off = 0
    while off + 4 <= len(data):
        length, atype = _NLA.unpack_from(data, off)
        if length < 4:
            return
        yield atype & NLA_TYPE_MASK, data[off + 4:off + length]
        off += _pad(length)


def _decode_attrs(data: bytes, table: dict[str, tuple[int, str]]) -> dict[str, Any]:
    by_type = _BY_TYPE.get(id(table)) or {atype: (name, how) for name, (atype, how) in table.items()}
    out: dict[str, Any] = {}
    for atype, payload in _iter_attrs(data):
        known = by_type.get(atype)
        if known is not None and known[0] not in out:
            out[known[0]] = _decode_value(known[1], payload)
    return out


def encode(kind: str, msg_type: int, flags: int, seq: int, fields: dict[str, int], attrs: list[Any]) -> bytes:
    """One netlink message: nlmsghdr, the kind's fixed header from fields (0 where missing), attrs."""
    hdr, names, table = _KINDS[kind]
    body = hdr.pack(*(fields.get(n, 0) for n in names)) + _encode_attrs(attrs, table)
    return _NLMSGHDR.pack(_NLMSGHDR.size + len(body), msg_type, flags, seq, 0) + body


def decode(kind: str, chunk: bytes) -> Message:
    """The message in chunk (nlmsghdr included)."""
    hdr, names, table = _KINDS[kind]
    start = _NLMSGHDR.size
    fields = dict(zip(names, hdr.unpack_from(chunk, start)))
    return Message(kind, fields, _decode_attrs(chunk[start + _pad(hdr.size):], table))


class NetlinkError(OSError):
    """The kernel refused a request; errno is the kernel's error."""


class _Record:
    __slots__: tuple[str, ...] = ()

    def __init__(self, **kw: Any) -> None:
        for k in self.__slots__:
            setattr(self, k, kw[k])

    def __repr__(self) -> str:
        return f"{type(self).__name__}(" + ", ".join(f"{k}={getattr(self, k)!r}" for k in self.__slots__) + ")"


class Link(_Record):
    """peer_index is IFLA_LINK: a veth's peer ifindex (in the peer's namespace)."""
    __slots__ = ("index", "name", "kind", "mac", "mtu", "flags", "master", "operstate", "peer_index",
                 "promisc", "info_data")
    index: int
    name: str
    kind: str
    mac: str
    mtu: int
    flags: int
    master: int
    operstate: str
    peer_index: int
    promisc: bool
    info_data: dict[str, Any]

    @property
    def up(self) -> bool:
        return bool(self.flags & IFF_UP)


class Addr(_Record):
    __slots__ = ("family", "address", "prefixlen", "index", "scope")
    family: int
    address: str
    prefixlen: int
    index: int
    scope: int


class Route(_Record):
    __slots__ = ("family", "dst", "dst_len", "gateway", "oif", "table", "scope", "proto")
    family: int
    dst: str | None          # None: default route
    dst_len: int
    gateway: str | None
    oif: int
    table: int
    scope: int


def _libc() -> Any:
    import ctypes
    return ctypes.CDLL(None, use_errno=True)


def setns(fd: int, nstype: int = CLONE_NEWNET) -> None:
    """setns(2) for the calling thread."""
    if hasattr(os, "setns"):  # Python >= 3.12
        os.setns(fd, nstype)
        return
    import ctypes
    if _libc().setns(fd, nstype) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


def current_netns_path() -> str:
    return "/proc/thread-self/ns/net"


class netns:
    """Run the body in a network namespace (a path: a bind-mounted nsfs file or /proc/<pid>/ns/net,
    or an open fd of one) and come back to the thread's own namespace afterwards. Raises
    FileNotFoundError if the path is gone and NotANetns (an OSError with EINVAL) if it is not a
    network namespace. (A class, not contextlib's decorator: the plugin does not import contextlib.)"""

    def __init__(self, where: str | int) -> None:
        self.where = where

    def __enter__(self) -> None:
        where = self.where
        path = where if isinstance(where, str) else f"fd {where}"
        target = os.open(where, os.O_RDONLY | os.O_CLOEXEC) if isinstance(where, str) else os.dup(where)
        try:
            own = os.open(current_netns_path(), os.O_RDONLY | os.O_CLOEXEC)
        except BaseException:
            os.close(target)
            raise
        try:
            try:
                setns(target)
            except OSError as e:
                if e.errno == errno.EINVAL:
                    raise NotANetns(errno.EINVAL, f"{path} is not a network namespace") from None
                raise
        except BaseException:
            os.close(own)
            os.close(target)
            raise
        self._fds = (own, target)

    def __exit__(self, *exc: object) -> None:
        own, target = self._fds
        try:
            setns(own)
        finally:
            os.close(own)
            os.close(target)


class NotANetns(OSError):
    pass


NS_GET_NSTYPE = 0xB703  # ioctl on an nsfs file: its CLONE_NEW* type (Linux >= 4.11)


def open_netns(path: str) -> int:
    """An fd for the network namespace at path. FileNotFoundError if the path is gone, NotANetns
    if it is something else (an unmounted bind mount leaves a plain empty file behind)."""
    import fcntl
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        kind = fcntl.ioctl(fd, NS_GET_NSTYPE)
    except OSError:
        kind = -1
    if kind != CLONE_NEWNET:
        os.close(fd)
        raise NotANetns(errno.EINVAL, f"{path} is not a network namespace")
    return fd


def is_own_netns(fd: int) -> bool:
    """True if fd is the calling thread's own network namespace."""
    a, b = os.fstat(fd), os.stat(current_netns_path())
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


class RTNL:
    """A blocking rtnetlink socket in the namespace it was created in."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, 0)
        self.sock.bind((0, 0))
        self.seq = 0

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> "RTNL":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- transport ---------------------------------------------------------------------------

    def request(self, kind: str, msg_type: int, flags: int, fields: dict[str, Any],
                attrs: list[Any]) -> list[Any]:
        """Send one request and return the decoded answers (dump parts or an echo); raise
        NetlinkError on a negative ACK."""
        self.seq += 1
        self.sock.send(encode(kind, msg_type, flags | NLM_F_REQUEST, self.seq, fields, attrs))
        out: list[Message] = []
        dump = bool(flags & NLM_F_DUMP)
        while True:
            data = self.sock.recv(1 << 20)
            off = 0
            while off + 16 <= len(data):
                length, mtype, mflags, seq = struct.unpack_from("=IHHI", data, off)
                if length < 16:
                    raise NetlinkError(errno.EBADMSG, "malformed netlink message")
                chunk = data[off:off + length]
                off += (length + 3) & ~3
                if seq != self.seq:
                    continue
                if mtype == NLMSG_ERROR:
                    code = struct.unpack_from("=i", chunk, 16)[0]
                    if code:
                        raise NetlinkError(-code, os.strerror(-code))
                    return out
                if mtype == NLMSG_DONE:
                    return out
                out.append(decode(kind, chunk))
                if not dump and not (mflags & NLM_F_MULTI) and not (flags & NLM_F_ACK):
                    return out

    # -- links -------------------------------------------------------------------------------

    @staticmethod
    def _link(m: Message) -> Link:
        info = m.get_attr("IFLA_LINKINFO") or {}
        kind, data = info.get("IFLA_INFO_KIND", ""), info.get("IFLA_INFO_DATA") or {}
        return Link(index=m["index"], name=m.get_attr("IFLA_IFNAME") or "", kind=kind,
                    mac=(m.get_attr("IFLA_ADDRESS") or "").lower(), mtu=m.get_attr("IFLA_MTU") or 0,
                    flags=m["flags"], master=m.get_attr("IFLA_MASTER") or 0,
                    operstate=str(m.get_attr("IFLA_OPERSTATE") or ""),
                    peer_index=m.get_attr("IFLA_LINK") or 0,
                    promisc=bool(m["flags"] & IFF_PROMISC), info_data=data)

    def get_link(self, name: str | None = None, index: int = 0) -> Link | None:
        attrs = [("IFLA_IFNAME", name)] if name else []
        try:
            res = self.request("ifinfmsg", RTM_GETLINK, 0, {"index": index}, attrs)
        except NetlinkError as e:
            if e.errno in (errno.ENODEV, errno.ENOENT):
                return None
            raise
        return self._link(res[0]) if res else None

    def links(self) -> list[Link]:
        return [self._link(m) for m in self.request("ifinfmsg", RTM_GETLINK, NLM_F_DUMP, {}, [])]

    def add_link(self, name: str, kind: str, *, mtu: int = 0, up: bool = False, master: int = 0,
                 mac: str = "", data: list[Any] | None = None, exclusive: bool = True) -> None:
        attrs: list[Any] = [("IFLA_IFNAME", name)]
        if mtu:
            attrs.append(("IFLA_MTU", mtu))
        if master:
            attrs.append(("IFLA_MASTER", master))
        if mac:
            attrs.append(("IFLA_ADDRESS", mac))
        info: list[Any] = [("IFLA_INFO_KIND", kind)]
        if data:
            info.append(("IFLA_INFO_DATA", {"attrs": data}))
        attrs.append(("IFLA_LINKINFO", {"attrs": info}))
        flags = NLM_F_ACK | NLM_F_CREATE | (NLM_F_EXCL if exclusive else 0)
        self.request("ifinfmsg", RTM_NEWLINK, flags,
                     {"index": 0, "flags": IFF_UP if up else 0, "change": IFF_UP if up else 0}, attrs)

    def add_veth(self, name: str, peer: str, peer_netns_fd: int, *, mtu: int = 0, up: bool = True,
                 master: int = 0, peer_mac: str = "") -> None:
        """Create a veth pair: `name` here, `peer` created directly in the namespace of
        peer_netns_fd (the kernel checks the peer's name there)."""
        peer_attrs: list[Any] = [("IFLA_IFNAME", peer), ("IFLA_NET_NS_FD", peer_netns_fd)]
        if mtu:
            peer_attrs.append(("IFLA_MTU", mtu))
        if peer_mac:
            peer_attrs.append(("IFLA_ADDRESS", peer_mac))
        self.add_link(name, "veth", mtu=mtu, up=up, master=master,
                      data=[("VETH_INFO_PEER", {"attrs": peer_attrs})])

    def set_link(self, index: int, *, up: bool | None = None, master: int | None = None,
                 mtu: int = 0, mac: str = "", name: str = "", data_kind: str = "",
                 data: list[Any] | None = None) -> None:
        attrs: list[Any] = []
        if master is not None:
            attrs.append(("IFLA_MASTER", master))
        if mtu:
            attrs.append(("IFLA_MTU", mtu))
        if mac:
            attrs.append(("IFLA_ADDRESS", mac))
        if name:
            attrs.append(("IFLA_IFNAME", name))
        if data_kind:
            attrs.append(("IFLA_LINKINFO", {"attrs": [("IFLA_INFO_KIND", data_kind),
                                                      ("IFLA_INFO_DATA", {"attrs": data or []})]}))
        flags = change = 0
        if up is not None:
            change = IFF_UP
            flags = IFF_UP if up else 0
        self.request("ifinfmsg", RTM_NEWLINK, NLM_F_ACK,
                     {"index": index, "flags": flags, "change": change}, attrs)

    def del_link(self, index: int) -> None:
        self.request("ifinfmsg", RTM_DELLINK, NLM_F_ACK, {"index": index}, [])

    def set_hairpin(self, index: int, on: bool) -> None:
        """IFLA_BRPORT_MODE on a bridge port (what `bridge link set dev X hairpin on` sends)."""
        self.request("ifinfmsg", RTM_SETLINK, NLM_F_ACK, {"family": AF_BRIDGE, "index": index},
                     [("IFLA_PROTINFO", {"attrs": [("IFLA_BRPORT_MODE", 1 if on else 0)]}, NLA_F_NESTED)])

    # -- addresses -----------------------------------------------------------------------------

    def addrs(self, index: int = 0, family: int = 0) -> list[Addr]:
        out = []
        for m in self.request("ifaddrmsg", RTM_GETADDR, NLM_F_DUMP, {"family": family}, []):
            if index and m["index"] != index:
                continue
            addr = m.get_attr("IFA_ADDRESS") or m.get_attr("IFA_LOCAL")
            if addr is None:
                continue
            out.append(Addr(family=m["family"], address=addr, prefixlen=m["prefixlen"],
                            index=m["index"], scope=m["scope"]))
        return out

    def add_addr(self, index: int, address: str, prefixlen: int, family: int) -> None:
        attrs: list[Any] = [("IFA_LOCAL", address), ("IFA_ADDRESS", address)]
        if family == socket.AF_INET:
            import ipaddress
            net = ipaddress.ip_network(f"{address}/{prefixlen}", strict=False)
            if prefixlen < 31:
                attrs.append(("IFA_BROADCAST", str(net.broadcast_address)))
        self.request("ifaddrmsg", RTM_NEWADDR, NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL,
                     {"family": family, "prefixlen": prefixlen, "index": index, "scope": 0}, attrs)

    def del_addr(self, index: int, address: str, prefixlen: int, family: int) -> None:
        self.request("ifaddrmsg", RTM_DELADDR, NLM_F_ACK,
                     {"family": family, "prefixlen": prefixlen, "index": index},
                     [("IFA_LOCAL", address), ("IFA_ADDRESS", address)])

    # -- routes --------------------------------------------------------------------------------

    def add_route(self, family: int, dst: str | None, dst_len: int, gateway: str | None,
                  oif: int) -> None:
        """Add a route in the main table; with NLM_F_APPEND like netlink.RouteAddEcmp."""
        attrs: list[Any] = [("RTA_TABLE", RT_TABLE_MAIN), ("RTA_OIF", oif)]
        if dst_len:
            attrs.append(("RTA_DST", dst))
        if gateway:
            attrs.append(("RTA_GATEWAY", gateway))
        self.request("rtmsg", RTM_NEWROUTE, NLM_F_ACK | NLM_F_CREATE | NLM_F_APPEND,
                     {"family": family, "dst_len": dst_len, "table": RT_TABLE_MAIN,
                      "proto": RTPROT_BOOT, "type": RTN_UNICAST,
                      "scope": RT_SCOPE_UNIVERSE if gateway else RT_SCOPE_LINK}, attrs)

    def replace_route(self, family: int, dst: str, dst_len: int, gateway: str, proto: int) -> None:
        """Add or replace the main table's route to dst/dst_len via gateway, tagged with proto (like
        `ip route replace ... proto N`)."""
        self.request("rtmsg", RTM_NEWROUTE, NLM_F_ACK | NLM_F_CREATE | NLM_F_REPLACE,
                     {"family": family, "dst_len": dst_len, "table": RT_TABLE_MAIN, "proto": proto,
                      "type": RTN_UNICAST, "scope": RT_SCOPE_UNIVERSE},
                     [("RTA_TABLE", RT_TABLE_MAIN), ("RTA_DST", dst), ("RTA_GATEWAY", gateway)])

    def del_route(self, family: int, dst: str, dst_len: int, proto: int = 0) -> None:
        """Delete the main table's route to dst/dst_len (only one of protocol proto, if given)."""
        self.request("rtmsg", RTM_DELROUTE, NLM_F_ACK,
                     {"family": family, "dst_len": dst_len, "table": RT_TABLE_MAIN, "proto": proto,
                      "type": RTN_UNICAST, "scope": RT_SCOPE_NOWHERE},
                     [("RTA_TABLE", RT_TABLE_MAIN), ("RTA_DST", dst)])

    def routes(self, family: int = 0) -> list[Route]:
        out = []
        for m in self.request("rtmsg", RTM_GETROUTE, NLM_F_DUMP, {"family": family}, []):
            table = m.get_attr("RTA_TABLE") or m["table"]
            out.append(Route(family=m["family"], dst=m.get_attr("RTA_DST"), dst_len=m["dst_len"],
                             gateway=m.get_attr("RTA_GATEWAY"), oif=m.get_attr("RTA_OIF") or 0,
                             table=table, scope=m["scope"], proto=m["proto"]))
        return out


def rtnl_in(path: str) -> RTNL:
    """An RTNL socket bound to the network namespace at path."""
    with netns(path):
        return RTNL()
