"""PrioritySort: higher .spec.priority first, then the earlier queued."""
from __future__ import annotations

from typing import Any

NAME = "PrioritySort"


def pod_priority(pod: dict) -> int:
    p = (pod.get("spec") or {}).get("priority")
    return int(p) if isinstance(p, int) else 0


class PrioritySort:
    name = NAME

    def less(self, a: Any, b: Any) -> bool:
        pa, pb = pod_priority(a.pod), pod_priority(b.pod)
        return pa > pb or (pa == pb and a.timestamp < b.timestamp)
