"""The kubelet's node-pressure eviction: thresholds (flags, signals, which are met), ranking (which
pod goes, what its eviction says, admission under pressure) and the manager loop."""
from kubelab.kubelet.eviction.manager import EvictionConfig, EvictionManager, observe
from kubelab.kubelet.eviction.thresholds import DEFAULT_HARD, ThresholdError, hard_eviction_reservation, \
    parse_pairs, parse_thresholds

__all__ = ["DEFAULT_HARD", "EvictionConfig", "EvictionManager", "ThresholdError", "hard_eviction_reservation",
           "observe", "parse_pairs", "parse_thresholds"]
