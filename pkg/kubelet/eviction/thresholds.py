"""Eviction thresholds: parsing upstream's flags and deciding which are met (pure; upstream's
pkg/kubelet/eviction/helpers.go and api/types.go).

    --eviction-hard=memory.available<100Mi,nodefs.available<10%
    --eviction-soft=memory.available<300Mi  --eviction-soft-grace-period=memory.available=1m30s
    --eviction-minimum-reclaim=memory.available=50Mi

A threshold is met when the signal's observed available amount is below its value (a quantity or a
percentage of the signal's capacity); once met, it stays met until available exceeds value plus
the minimum reclaim. A soft threshold must stay met for its grace period before pods are evicted.
With node allocatable enforced on pods (upstream's default), a hard memory.available threshold
adds the same allocatableMemory.available threshold, measured on the kubepods cgroup.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Iterable, Mapping

from kubelab.api.quantity import BINARY_SI, QuantityError, format_quantity, parse
from kubelab.api.resources import to_int

MEMORY_AVAILABLE = "memory.available"
ALLOCATABLE_MEMORY_AVAILABLE = "allocatableMemory.available"
NODEFS_AVAILABLE = "nodefs.available"
NODEFS_INODES_FREE = "nodefs.inodesFree"
IMAGEFS_AVAILABLE = "imagefs.available"
IMAGEFS_INODES_FREE = "imagefs.inodesFree"
PID_AVAILABLE = "pid.available"

# signal -> (node condition, resource to reclaim)
SIGNALS: dict[str, tuple[str, str]] = {
    MEMORY_AVAILABLE: ("MemoryPressure", "memory"),
    ALLOCATABLE_MEMORY_AVAILABLE: ("MemoryPressure", "memory"),
    NODEFS_AVAILABLE: ("DiskPressure", "ephemeral-storage"),
    NODEFS_INODES_FREE: ("DiskPressure", "inodes"),
    IMAGEFS_AVAILABLE: ("DiskPressure", "ephemeral-storage"),
    IMAGEFS_INODES_FREE: ("DiskPressure", "inodes"),
    PID_AVAILABLE: ("PIDPressure", "pids"),
}
USER_SIGNALS = tuple(s for s in SIGNALS if s != ALLOCATABLE_MEMORY_AVAILABLE)

DEFAULT_HARD = {MEMORY_AVAILABLE: "100Mi", NODEFS_AVAILABLE: "10%", NODEFS_INODES_FREE: "5%",
                IMAGEFS_AVAILABLE: "15%", IMAGEFS_INODES_FREE: "5%"}


class ThresholdError(ValueError):
    pass


@dataclass(frozen=True)
class Value:
    """A quantity (bytes, inodes or pids) or a fraction of capacity."""
    quantity: Decimal | None = None
    percentage: float = 0.0

    def amount(self, capacity: int) -> int:
        if self.quantity is not None:
            return int(self.quantity)
        return int(capacity * self.percentage)

    def text(self, capacity: int) -> str:
        """As upstream prints the threshold quantity in eviction messages."""
        if self.quantity is not None:
            return format_quantity(self.quantity, BINARY_SI)
        return format_quantity(self.amount(capacity), BINARY_SI)


@dataclass(frozen=True)
class Threshold:
    signal: str
    value: Value
    grace_period: float = 0.0           # seconds; 0 for hard thresholds
    min_reclaim: Value = field(default_factory=Value)
    hard: bool = True


def memory_stats(summary: Mapping[str, Any], signal: str) -> Mapping[str, Any]:
    """The Summary's memory stats a memory signal is read from: the node's for memory.available,
    the kubepods "pods" system container's for allocatableMemory.available ({} if absent)."""
    node = summary.get("node") or {}
    if signal == ALLOCATABLE_MEMORY_AVAILABLE:
        return next((c.get("memory") or {} for c in node.get("systemContainers") or [] if c.get("name") == "pods"),
                    {})
    return node.get("memory") or {}


@dataclass(frozen=True)
class Observation:
    available: int
    capacity: int


def parse_pairs(text: str, sep: str) -> dict[str, str]:
    """`a<1,b<2` (sep "<") or `a=1,b=2` (sep "=") as a map; ThresholdError when malformed."""
    out: dict[str, str] = {}
    for item in (x.strip() for x in text.split(",")):
        if not item:
            continue
        k, s, v = item.partition(sep)
        if not s or not k.strip() or not v.strip():
            raise ThresholdError(f"malformed pair, expect string{sep}string: {item!r}")
        out[k.strip()] = v.strip()
    return out


def _value(signal: str, text: str, what: str) -> Value | None:
    if text.endswith("%"):
        if text in ("0%", "100%") and what == "threshold":
            return None                 # upstream ignores these
        try:
            pct = float(text[:-1]) / 100
        except ValueError:
            raise ThresholdError(f"invalid percentage {text!r} for {signal}") from None
        if pct < 0:
            raise ThresholdError(f"eviction percentage {what} {signal} must be >= 0%: {text}")
        if pct > 1:
            raise ThresholdError(f"eviction percentage {what} {signal} must be <= 100%: {text}")
        return Value(percentage=pct)
    try:
        q = parse(text).value
    except QuantityError as e:
        raise ThresholdError(f"invalid quantity {text!r} for {signal}: {e}") from None
    if q < 0 or (q == 0 and what == "threshold"):
        raise ThresholdError(f"eviction {what} {signal} must be positive: {text}")
    return Value(quantity=q)


def _check_signal(signal: str) -> None:
    if signal not in USER_SIGNALS:
        raise ThresholdError(f"unsupported eviction signal {signal}")


def parse_thresholds(hard: Mapping[str, str], soft: Mapping[str, str] | None = None,
                     soft_grace: Mapping[str, float] | None = None, min_reclaim: Mapping[str, str] | None = None,
                     enforce_pods_allocatable: bool = True) -> list[Threshold]:
    """Upstream's ParseThresholdConfig; raises ThresholdError with upstream's wording."""
    soft, soft_grace, min_reclaim = soft or {}, soft_grace or {}, min_reclaim or {}
    reclaim: dict[str, Value] = {}
    for sig, text in min_reclaim.items():
        _check_signal(sig)
        v = _value(sig, text, "minimum reclaim")
        if v is not None:
            reclaim[sig] = v
    out: list[Threshold] = []
    for sig, text in hard.items():
        _check_signal(sig)
        v = _value(sig, text, "threshold")
        if v is None:
            continue
        out.append(Threshold(sig, v, min_reclaim=reclaim.get(sig, Value())))
        if sig == MEMORY_AVAILABLE and enforce_pods_allocatable:
            out.append(Threshold(ALLOCATABLE_MEMORY_AVAILABLE, v, min_reclaim=reclaim.get(sig, Value())))
    for sig in soft_grace:
        _check_signal(sig)
    for sig, text in soft.items():
        _check_signal(sig)
        v = _value(sig, text, "threshold")
        if v is None:
            continue
        if sig not in soft_grace:
            raise ThresholdError(f"grace period must be specified for the soft eviction threshold {sig}")
        if soft_grace[sig] < 0:
            raise ThresholdError(f"grace period of the soft eviction threshold {sig} must not be negative")
        out.append(Threshold(sig, v, grace_period=soft_grace[sig], min_reclaim=reclaim.get(sig, Value()), hard=False))
    return out


def thresholds_met(thresholds: Iterable[Threshold], observed: Mapping[str, Observation],
                   already_met: Iterable[Threshold] = ()) -> list[Threshold]:
    """The thresholds whose signal is below its value; those already met last time count as met
    until available reaches value + minimum reclaim (upstream's thresholdsMet with min reclaim)."""
    prior = set(already_met)
    out = []
    for t in thresholds:
        obs = observed.get(t.signal)
        if obs is None:
            continue
        limit = t.value.amount(obs.capacity)
        if t in prior:
            limit += t.min_reclaim.amount(obs.capacity)
        if obs.available < limit:
            out.append(t)
    return out


def grace_periods_passed(met: Iterable[Threshold], first_observed: Mapping[Threshold, float],
                         now: float) -> list[Threshold]:
    return [t for t in met if now - first_observed.get(t, now) >= t.grace_period]


def first_observed(met: Iterable[Threshold], previous: Mapping[Threshold, float], now: float) -> dict[Threshold, float]:
    return {t: previous.get(t, now) for t in met}


def node_conditions(met: Iterable[Threshold]) -> set[str]:
    return {SIGNALS[t.signal][0] for t in met}


def conditions_within_transition(current: set[str], last_observed: Mapping[str, float], now: float,
                                 transition_period: float) -> tuple[set[str], dict[str, float]]:
    """Conditions stay reported for the pressure transition period after they were last observed
    (so a node does not flap between pressure and none). Returns (reported, new last-observed)."""
    seen = {c: t for c, t in last_observed.items() if now - t < transition_period}
    seen.update({c: now for c in current})
    return set(seen), seen


def reclaim_resource(t: Threshold) -> str:
    return SIGNALS[t.signal][1]


def pick_threshold(met: list[Threshold]) -> Threshold:
    """The threshold to act on first: memory before anything else, as upstream orders them."""
    order = {MEMORY_AVAILABLE: 0, ALLOCATABLE_MEMORY_AVAILABLE: 1}
    return sorted(met, key=lambda t: (order.get(t.signal, 2), not t.hard))[0]


def hard_eviction_reservation(thresholds: Iterable[Threshold], capacity: Mapping[str, str]) -> dict[str, str]:
    """What node allocatable keeps back for the hard memory.available and nodefs.available
    thresholds (upstream's hardEvictionReservation), as quantities per resource."""
    out: dict[str, str] = {}
    for t in thresholds:
        if not t.hard:
            continue
        res = {MEMORY_AVAILABLE: "memory", NODEFS_AVAILABLE: "ephemeral-storage"}.get(t.signal)
        if res is None or res not in capacity:
            continue
        out[res] = str(t.value.amount(to_int(res, capacity[res])))
    return out
