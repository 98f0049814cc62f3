"""Flag conventions the components share (upstream's names and syntax): Go durations, booleans
given as `--flag`, `--flag=true|false`, and the leader election flags."""
from __future__ import annotations

import argparse
from typing import Any


def duration(text: str) -> float:
    """argparse type: a Go duration ("1s", "500ms", "1m30s", "0") in seconds."""
    from kubelab.api.duration import parse_duration
    try:
        return parse_duration(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def boolean(text: str) -> bool:
    """argparse type: true/false (as Go's flag package: also 1/0, t/f)."""
    t = text.lower()
    if t in ("true", "1", "t", "yes"):
        return True
    if t in ("false", "0", "f", "no"):
        return False
    raise argparse.ArgumentTypeError(f"invalid boolean {text!r}")


def add_bool(p: argparse.ArgumentParser, name: str, default: bool, help: str) -> None:
    p.add_argument(name, type=boolean, nargs="?", const=True, default=default, help=help)


def add_leader_election(p: argparse.ArgumentParser, resource_name: str) -> None:
    add_bool(p, "--leader-elect", True, "elect a leader before doing any work (for replicated components)")
    p.add_argument("--leader-elect-lease-duration", type=duration, default=15.0,
                   help="how long non-leaders wait after a renewal before taking over")
    p.add_argument("--leader-elect-renew-deadline", type=duration, default=10.0,
                   help="how long the leader keeps trying to renew before it gives up")
    p.add_argument("--leader-elect-retry-period", type=duration, default=2.0, help="between attempts")
    p.add_argument("--leader-elect-resource-name", default=resource_name, help="the Lease's name")
    p.add_argument("--leader-elect-resource-namespace", default="kube-system", help="the Lease's namespace")


def leader_election_config(a: argparse.Namespace) -> Any:
    """The LeaderElectionConfig the flags ask for (None with --leader-elect=false)."""
    if not a.leader_elect:
        return None
    from kubelab.client.leaderelection import LeaderElectionConfig
    return LeaderElectionConfig(name=a.leader_elect_resource_name, namespace=a.leader_elect_resource_namespace,
                                lease_duration=a.leader_elect_lease_duration,
                                renew_deadline=a.leader_elect_renew_deadline,
                                retry_period=a.leader_elect_retry_period, release_on_cancel=True)


def taint(text: str) -> dict:
    """key[=value]:Effect, as --register-with-taints takes it."""
    kv, sep, effect = text.rpartition(":")
    if not sep or effect not in ("NoSchedule", "PreferNoSchedule", "NoExecute") or not kv:
        raise argparse.ArgumentTypeError(f"invalid taint {text!r}: want key[=value]:NoSchedule|PreferNoSchedule|NoExecute")
    key, _, value = kv.partition("=")
    return {"key": key, "value": value, "effect": effect}


def labels(text: str) -> dict[str, str]:
    """k=v,k2=v2 (--node-labels, --kube-reserved, ...)."""
    out = {}
    for item in filter(None, (x.strip() for x in text.split(","))):
        k, sep, v = item.partition("=")
        if not sep or not k:
            raise argparse.ArgumentTypeError(f"invalid label {item!r}: want key=value")
        out[k] = v
    return out
