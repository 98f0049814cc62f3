"""DefaultBinder: POST the pod's binding subresource."""
from __future__ import annotations

from typing import Any

from ..framework import SUCCESS, CycleState, Status

NAME = "DefaultBinder"


class DefaultBinder:
    name = NAME

    def __init__(self, client: Any) -> None:
        self.client = client

    async def bind(self, state: CycleState, pod: dict, node_name: str) -> Status:
        m = pod["metadata"]
        body = {"apiVersion": "v1", "kind": "Binding",
                "metadata": {"name": m["name"], "namespace": m.get("namespace"), "uid": m.get("uid")},
                "target": {"apiVersion": "v1", "kind": "Node", "name": node_name}}
        try:
            await self.client.create("v1", "pods", body, m.get("namespace"), subresource="binding", name=m["name"])
        except Exception as e:  # the caller forgets the assumption and retries
            return Status.error(f"binding rejected: {e}")
        return SUCCESS
