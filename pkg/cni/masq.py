"""ipMasq: the reference bridge plugin's iptables layout, written with one iptables-restore per family.

For a container's addresses, in the nat table:

  -A POSTROUTING -s <ip>/32 -m comment --comment "name: \\"<net>\\" id: \\"<cid>\\"" -j CNI-<hash>
  -A CNI-<hash> -d <subnet> -m comment --comment ... -j ACCEPT
  -A CNI-<hash> ! -d 224.0.0.0/4 -m comment --comment ... -j MASQUERADE      (ff00::/8 for IPv6)

where CNI-<hash> is "CNI-" + hex(sha512(network name + container id)), cut to 28 characters.

Setup is one atomic `iptables-restore --noflush` per family: the chain (re)written and the jump
appended. Unlike the reference (which checks each rule with `iptables -C` first), a second ADD for
the same container without a DEL would append a second, harmless, jump; the host-local IPAM refuses
such an ADD before it gets here, and teardown removes every jump anyway. Teardown is one restore
when the addresses are known, else it finds the jumps by chain name in POSTROUTING, so it works after
the container's netns is gone; it is idempotent.
"""
from __future__ import annotations

import hashlib
import os
from typing import Iterable, Sequence

from kubelab.cni.spec import CNIError, ERR_INTERNAL

MAX_CHAIN = 28
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def chain_name(network: str, container_id: str) -> str:
    return ("CNI-" + hashlib.sha512((network + container_id).encode()).hexdigest())[:MAX_CHAIN]


def go_quote(s: str) -> str:
    """Go's %q for the strings used here (names and ids are [A-Za-z0-9_.-], but be exact anyway)."""
    out = []
    for c in s:
        if c in '"\\':
            out.append("\\" + c)
        elif c == "\n":
            out.append("\\n")
        elif c == "\t":
            out.append("\\t")
        elif not c.isprintable():
            out.append(f"\\x{ord(c):02x}" if ord(c) < 0x80 else f"\\u{ord(c):04x}")
        else:
            out.append(c)
    return '"' + "".join(out) + '"'


def comment(network: str, container_id: str) -> str:
    return f"name: {go_quote(network)} id: {go_quote(container_id)}"


def _restore_quote(s: str) -> str:
    """A token for iptables-restore (and iptables-save's own quoting)."""
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def find_binary(name: str) -> str:
    for d in (os.environ.get("PATH") or DEFAULT_PATH).split(":") + DEFAULT_PATH.split(":"):
        p = os.path.join(d or ".", name)
        if os.access(p, os.X_OK) and not os.path.isdir(p):
            return p
    raise CNIError(ERR_INTERNAL, f"ipMasq needs {name}, which is not in PATH or {DEFAULT_PATH}")


def _tools(family: int) -> tuple[str, str]:
    base = "iptables" if family == 4 else "ip6tables"
    return find_binary(base), find_binary(base + "-restore")


async def _postrouting_jumps(iptables: str, chain: str) -> list[str]:
    from kubelab import proc
    try:
        res = await proc.run([iptables, "-w", "5", "-t", "nat", "-S", "POSTROUTING"], timeout=30)
    except proc.CommandError as e:
        raise CNIError(ERR_INTERNAL, f"failed to list nat POSTROUTING: {e}") from None
    out = []
    for line in res.text.splitlines():
        if line.startswith("-A POSTROUTING ") and (line.endswith(" -j " + chain) or f" -j {chain} " in line):
            out.append(line)
    return out


async def _restore(restore: str, lines: Sequence[str]) -> None:
    from kubelab import proc
    data = "\n".join(["*nat", *lines, "COMMIT", ""]).encode()
    try:
        await proc.run([restore, "-w", "5", "--noflush"], input=data, timeout=30)
    except proc.CommandError as e:
        raise CNIError(ERR_INTERNAL, f"failed to program ipMasq rules: {e}") from None


def _family(addr: str) -> int:
    return 6 if ":" in addr else 4


async def setup(addresses: Iterable[str], network: str, container_id: str) -> None:
    """Masquerade traffic from each address ("ip/prefix") leaving its subnet, except multicast."""
    import ipaddress
    chain, cmt = chain_name(network, container_id), _restore_quote(comment(network, container_id))
    by_family: dict[int, list[ipaddress.IPv4Interface | ipaddress.IPv6Interface]] = {}
    for a in addresses:
        by_family.setdefault(_family(a), []).append(ipaddress.ip_interface(a))
    for family, ifaces in sorted(by_family.items()):
        _, restore = _tools(family)
        lines = [f":{chain} - [0:0]"]
        for net in dict.fromkeys(i.network for i in ifaces):
            lines.append(f"-A {chain} -d {net} -m comment --comment {cmt} -j ACCEPT")
        mcast = "224.0.0.0/4" if family == 4 else "ff00::/8"
        lines.append(f"-A {chain} ! -d {mcast} -m comment --comment {cmt} -j MASQUERADE")
        for i in ifaces:
            lines.append(f"-A POSTROUTING -s {i.ip}/{i.max_prefixlen} -m comment --comment {cmt} -j {chain}")
        await _restore(restore, lines)


async def teardown(network: str, container_id: str, families: Iterable[int] = (4,),
                   addresses: Iterable[str] = ()) -> None:
    """Remove the container's POSTROUTING jumps and its chain; nothing there is fine.

    With the container's addresses known (the usual DEL) this is one iptables-restore per family;
    without them, or if that restore fails because the rules are not as expected, POSTROUTING is
    listed first to find the jumps."""
    from kubelab import proc
    chain = chain_name(network, container_id)
    cmt = _restore_quote(comment(network, container_id))
    ips: dict[int, list[str]] = {}
    for a in addresses:
        ip = a.split("/")[0]
        ips.setdefault(_family(ip), []).append(ip)
    for family in sorted(set(families) | set(ips)):
        iptables, restore = _tools(family)
        tail = [f":{chain} - [0:0]", f"-X {chain}"]
        if ips.get(family):
            bits = 32 if family == 4 else 128
            lines = [f"-D POSTROUTING -s {ip}/{bits} -m comment --comment {cmt} -j {chain}"
                     for ip in dict.fromkeys(ips[family])]
            try:
                await proc.run([restore, "-w", "5", "--noflush"],
                               input="\n".join(["*nat", *lines, *tail, "COMMIT", ""]).encode(), timeout=30)
                continue
            except proc.CommandError:
                pass  # not the rules we expected: look them up
        jumps = await _postrouting_jumps(iptables, chain)
        if not jumps and not ips.get(family):
            continue  # setup writes the chain and its jump in one transaction: no jump, no chain
        await _restore(restore, ["-D" + j[2:] for j in jumps] + tail)
