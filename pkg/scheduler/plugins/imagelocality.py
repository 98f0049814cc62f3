"""ImageLocality: prefer nodes that already have the pod's images, weighted by size and by how
many nodes have each image (upstream's thresholds: 23 MB to 1000 MB per container)."""
from __future__ import annotations

from ..framework import MAX_NODE_SCORE, CycleState, NodeInfo, Status, SUCCESS

NAME = "ImageLocality"
MB = 1024 * 1024
MIN_THRESHOLD = 23 * MB
MAX_CONTAINER_THRESHOLD = 1000 * MB


def normalized_image_name(name: str) -> str:
    """docker.io/library/nginx -> nginx:latest style matching: a name without a tag gets :latest."""
    last = name.rsplit("/", 1)[-1]
    if ":" not in last and "@" not in last:
        name += ":latest"
    return name


class ImageLocality:
    name = NAME

    def pre_score(self, state: CycleState, pod: dict, nodes: list[NodeInfo]) -> Status:
        spread: dict[str, int] = {}
        for n in nodes:
            for img in n.images:
                spread[img] = spread.get(img, 0) + 1
        state[NAME] = (spread, len(nodes))
        return SUCCESS

    def score(self, state: CycleState, pod: dict, node: NodeInfo) -> int:
        spread, total = state.get(NAME, ({}, 1))
        images = state.get("imagelocality/images")
        if images is None:              # once per cycle: each container's image and its normalized name
            spec = pod.get("spec") or {}
            images = state["imagelocality/images"] = [
                (c.get("image") or "", normalized_image_name(c.get("image") or ""))
                for c in list(spec.get("initContainers") or []) + list(spec.get("containers") or [])]
        containers = images
        s = 0
        for names in images:
            for name in names:
                if name in node.images:
                    s += int(node.images[name] * spread.get(name, 1) / max(1, total))
                    break
        max_threshold = MAX_CONTAINER_THRESHOLD * max(1, len(containers))
        if s < MIN_THRESHOLD:
            s = MIN_THRESHOLD
        elif s > max_threshold:
            s = max_threshold
        return MAX_NODE_SCORE * (s - MIN_THRESHOLD) // (max_threshold - MIN_THRESHOLD)
