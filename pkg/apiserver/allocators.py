"""ClusterIP and NodePort allocation, kept in etcd.

Each range is one etcd key holding {value: owner}; allocation is a compare-and-swap on it, so
concurrent creates never get the same value. Owners are "namespace/name" of the Service, which
makes allocation idempotent per owner and lets `repair` rebuild the map from the Services
themselves (what upstream's repair controllers do), so a crash between allocation and the
Service write leaks nothing for long.
"""
from __future__ import annotations

import ipaddress
import random
from typing import Callable

from ..storage import errors as serr
from ..storage.etcd import Store


class AllocationError(Exception):
    pass


class RangeAllocator:
    def __init__(self, store: Store, key: str, size: int, to_value: Callable[[int], str],
                 contains: Callable[[str], bool], describe: str, reserved: set[str] | None = None) -> None:
        self.store = store
        self.key = key
        self.size = size
        self.to_value = to_value
        self.contains = contains
        self.describe = describe
        self.reserved = reserved or set()

    async def _ensure(self) -> None:
        try:
            await self.store.create(self.key, {"allocated": {}})
        except serr.AlreadyExists:
            pass

    async def allocate(self, owner: str, wanted: str | None = None) -> str:
        """Allocate wanted (or a free random value) to owner; idempotent for the same owner."""
        if wanted is not None and not self.contains(wanted):
            raise AllocationError(f"provided {self.describe} is not in the valid range. {self.range_text()}")
        await self._ensure()
        chosen: dict[str, str] = {}

        def fn(cur: dict) -> dict:
            alloc = cur.setdefault("allocated", {})
            if wanted is not None:
                holder = alloc.get(wanted)
                if wanted in self.reserved or (holder is not None and holder != owner):
                    raise AllocationError(f"provided {self.describe} is already allocated")
                alloc[wanted] = owner
                chosen["v"] = wanted
                return cur
            if len(alloc) + len(self.reserved) >= self.size:
                raise AllocationError("range is full")
            for _ in range(64):
                cand = self.to_value(random.randrange(self.size))
                if cand not in alloc and cand not in self.reserved:
                    break
            else:
                cand = next(c for c in (self.to_value(i) for i in range(self.size))
                            if c not in alloc and c not in self.reserved)
            alloc[cand] = owner
            chosen["v"] = cand
            return cur
        await self.store.guaranteed_update(self.key, fn)
        return chosen["v"]

    async def release(self, owner: str, keep: set[str] = frozenset()) -> None:
        """Release every value owned by owner except those in keep."""
        await self._ensure()

        def fn(cur: dict) -> dict | None:
            alloc = cur.get("allocated", {})
            drop = [val for val, o in alloc.items() if o == owner and val not in keep]
            if not drop:
                return None
            for val in drop:
                del alloc[val]
            return cur
        await self.store.guaranteed_update(self.key, fn)

    async def repair(self, truth: dict[str, str]) -> None:
        """Make the stored map exactly `truth` (value -> owner) as read from the Services."""
        await self._ensure()

        def fn(cur: dict) -> dict | None:
            if cur.get("allocated") == truth:
                return None
            cur["allocated"] = dict(truth)
            return cur
        await self.store.guaranteed_update(self.key, fn)

    async def allocated(self) -> dict[str, str]:
        await self._ensure()
        return dict((await self.store.get(self.key)).get("allocated", {}))

    def range_text(self) -> str:
        return ""


class ServiceIPAllocator(RangeAllocator):
    def __init__(self, store: Store, cidr: str) -> None:
        self.net = ipaddress.ip_network(cidr, strict=False)
        first = int(self.net.network_address)
        # network address and (for IPv4) broadcast are never handed out
        size = self.net.num_addresses - (2 if self.net.version == 4 else 1)
        super().__init__(store, "/registry/ranges/serviceips", max(size, 0),
                         lambda i: str(ipaddress.ip_address(first + 1 + i)), self._contains, "IP")

    def _contains(self, v: str) -> bool:
        try:
            ip = ipaddress.ip_address(v)
        except ValueError:
            return False
        return ip in self.net and ip != self.net.network_address and (
            self.net.version != 4 or ip != self.net.broadcast_address)

    def nth(self, n: int) -> str:
        return str(ipaddress.ip_address(int(self.net.network_address) + n))

    def range_text(self) -> str:
        return f"The range of valid IPs is {self.net}"


class NodePortAllocator(RangeAllocator):
    def __init__(self, store: Store, port_range: str) -> None:
        lo, _, hi = port_range.partition("-")
        self.lo, self.hi = int(lo), int(hi or lo)
        super().__init__(store, "/registry/ranges/servicenodeports", self.hi - self.lo + 1,
                         lambda i: str(self.lo + i), self._contains, "port")

    def _contains(self, v: str) -> bool:
        return v.isdigit() and self.lo <= int(v) <= self.hi

    def range_text(self) -> str:
        return f"The range of valid ports is {self.lo}-{self.hi}"


def service_ports_of(svc: dict) -> tuple[set[str], set[str]]:
    """(cluster IPs, node ports) a Service holds."""
    spec = svc.get("spec") or {}
    ips = {ip for ip in (spec.get("clusterIPs") or [spec.get("clusterIP")]) if ip and ip != "None"}
    ports = {str(p["nodePort"]) for p in spec.get("ports") or [] if isinstance(p, dict) and p.get("nodePort")}
    if spec.get("healthCheckNodePort"):
        ports.add(str(spec["healthCheckNodePort"]))
    return ips, ports


def owner_of(svc: dict) -> str:
    md = svc.get("metadata") or {}
    return f"{md.get('namespace')}/{md.get('name')}"

