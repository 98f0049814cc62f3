"""A set of equal-sized subnets carved out of a cluster CIDR (upstream's cidrset.CidrSet).

Subnets are numbered 0..n-1 in address order; allocation takes the next free one after the last
allocated (round robin, so a released subnet is not handed out again at once); occupy() marks
subnets in use that were allocated elsewhere (node objects at start, the service range).
"""
from __future__ import annotations

import ipaddress

Network = ipaddress.IPv4Network | ipaddress.IPv6Network

CLUSTER_SUBNET_MAX_DIFF = 16    # at most 2^16 node subnets per cluster CIDR, as upstream


class CIDRSetError(ValueError):
    pass


class CIDRRangeNoCIDRsRemaining(CIDRSetError):
    def __init__(self) -> None:
        super().__init__("CIDR allocation failed; there are no remaining CIDRs left to allocate in the accepted range")


class CIDRSet:
    def __init__(self, cluster_cidr: Network | str, node_mask_size: int) -> None:
        net = ipaddress.ip_network(cluster_cidr, strict=False) if isinstance(cluster_cidr, str) else cluster_cidr
        if node_mask_size < net.prefixlen:
            raise CIDRSetError(f"node CIDR mask size /{node_mask_size} is larger than the cluster CIDR {net}")
        if node_mask_size > net.max_prefixlen:
            raise CIDRSetError(f"node CIDR mask size /{node_mask_size} is too long for {net}")
        if node_mask_size - net.prefixlen > CLUSTER_SUBNET_MAX_DIFF:
            raise CIDRSetError(f"subnet mask size is too big: {net} split into /{node_mask_size} subnets is more "
                               f"than 2^{CLUSTER_SUBNET_MAX_DIFF} subnets")
        self.cluster = net
        self.mask = node_mask_size
        self.max = 1 << (node_mask_size - net.prefixlen)
        self._used = 0              # bitmap: bit i set = subnet i in use
        self._count = 0
        self._next = 0

    def __len__(self) -> int:
        """How many subnets are in use."""
        return self._count

    def subnet(self, i: int) -> Network:
        size = 1 << (self.cluster.max_prefixlen - self.mask)
        return ipaddress.ip_network((int(self.cluster.network_address) + i * size, self.mask))

    def allocate_next(self) -> Network:
        if self._count >= self.max:
            raise CIDRRangeNoCIDRsRemaining()
        for k in range(self.max):
            i = (self._next + k) % self.max
            if not self._used >> i & 1:
                self._used |= 1 << i
                self._count += 1
                self._next = (i + 1) % self.max
                return self.subnet(i)
        raise CIDRRangeNoCIDRsRemaining()

    def _range(self, cidr: Network) -> range:
        """The subnet indexes cidr covers (cidr may be larger or smaller than one subnet)."""
        if cidr.version != self.cluster.version or not (cidr.overlaps(self.cluster)):
            raise CIDRSetError(f"{cidr} is not within the cluster CIDR {self.cluster}")
        lo = max(int(cidr.network_address), int(self.cluster.network_address))
        hi = min(int(cidr.broadcast_address), int(self.cluster.broadcast_address))
        shift = self.cluster.max_prefixlen - self.mask
        base = int(self.cluster.network_address)
        return range((lo - base) >> shift, ((hi - base) >> shift) + 1)

    def occupy(self, cidr: Network | str) -> None:
        """Mark every subnet cidr overlaps as used (idempotent)."""
        net = ipaddress.ip_network(cidr, strict=False) if isinstance(cidr, str) else cidr
        for i in self._range(net):
            if not self._used >> i & 1:
                self._used |= 1 << i
                self._count += 1

    def release(self, cidr: Network | str) -> None:
        """Free every subnet cidr overlaps (idempotent)."""
        net = ipaddress.ip_network(cidr, strict=False) if isinstance(cidr, str) else cidr
        for i in self._range(net):
            if self._used >> i & 1:
                self._used &= ~(1 << i)
                self._count -= 1

    def in_use(self, cidr: Network | str) -> bool:
        net = ipaddress.ip_network(cidr, strict=False) if isinstance(cidr, str) else cidr
        return all(self._used >> i & 1 for i in self._range(net))
