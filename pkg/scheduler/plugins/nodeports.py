"""NodePorts: a node fits when none of the pod's hostPorts (protocol, port, host IP) is taken; a
taken 0.0.0.0 conflicts with every address, and asking for 0.0.0.0 conflicts with any use."""
from __future__ import annotations

from kubelab.api import resources as R
from ..framework import SUCCESS, CycleState, NodeInfo, Status

NAME = "NodePorts"
ERR_REASON = "node(s) didn't have free ports for the requested pod ports"


def conflicts(want: list[tuple[str, str, int]], used: dict[tuple[str, int], set[str]]) -> bool:
    for ip, proto, port in want:
        ips = used.get((proto, port))
        if not ips:
            continue
        if ip == "0.0.0.0" or "0.0.0.0" in ips or ip in ips:
            return True
    return False


class NodePorts:
    name = NAME

    def filter(self, state: CycleState, pod: dict, node: NodeInfo) -> Status:
        want = state.get(NAME)
        if want is None:                # once per cycle
            want = state[NAME] = R.pod_host_ports(pod)
        if want and node.used_ports and conflicts(want, node.used_ports):
            return Status.unschedulable(ERR_REASON)
        return SUCCESS
