"""Admission: the mutating and validating plugins of the request chain, and Service allocation.

Built in: NamespaceLifecycle (in the handler's namespace check), DefaultTolerationSeconds,
ServiceAccount defaulting, Service ClusterIP/NodePort allocation, and the eviction check
against PodDisruptionBudgets. RBAC and the rest of upstream's plugins plug in here later.
"""
from __future__ import annotations

import logging
from typing import Awaitable, Callable

from ..api import validation as v
from ..api.registry import Kind
from ..api.selectors import SelectorError, label_selector_from_api
from ..storage.cacher import Cacher
from . import status
from .allocators import AllocationError, NodePortAllocator, ServiceIPAllocator, owner_of, service_ports_of

log = logging.getLogger(__name__)

Release = Callable[[], Awaitable[None]]

NOT_READY = "node.kubernetes.io/not-ready"
IMMORTAL_NAMESPACES = ("default", "kube-system", "kube-public")
UNREACHABLE = "node.kubernetes.io/unreachable"


async def _noop() -> None:
    return None


class Admission:
    def __init__(self, cacher: Cacher, service_ips: ServiceIPAllocator, node_ports: NodePortAllocator,
                 default_toleration_seconds: int = 300) -> None:
        self.cacher = cacher
        self.service_ips = service_ips
        self.node_ports = node_ports
        self.default_toleration_seconds = default_toleration_seconds

    async def mutate(self, request, k: Kind, obj: dict, old: dict | None, op: str) -> None:
        if k.group == "" and k.plural == "pods" and op == "CREATE":
            spec = obj.setdefault("spec", {})
            if not spec.get("serviceAccountName"):
                spec["serviceAccountName"] = "default"
                spec["serviceAccount"] = "default"
            tols = spec.setdefault("tolerations", [])
            for key in (NOT_READY, UNREACHABLE):
                if not any(t.get("key") == key and t.get("effect") in ("NoExecute", None, "") or
                           (t.get("operator") == "Exists" and not t.get("key")) for t in tols):
                    tols.append({"key": key, "operator": "Exists", "effect": "NoExecute",
                                 "tolerationSeconds": self.default_toleration_seconds})

    async def validate(self, request, k: Kind, obj: dict, old: dict | None, op: str) -> None:
        return None

    def validate_delete(self, k: Kind, name: str) -> None:
        """NamespaceLifecycle: the system namespaces may not be deleted."""
        if k.group == "" and k.plural == "namespaces" and name in IMMORTAL_NAMESPACES:
            raise status.forbidden("", "namespaces", name, "this namespace may not be deleted")

    # --- Service allocation ----------------------------------------------------------------

    async def allocate(self, k: Kind, svc: dict, old: dict | None) -> Release:
        if not (k.group == "" and k.plural == "services"):
            return _noop
        owner = owner_of(svc)
        spec = svc.setdefault("spec", {})
        typ = spec.get("type", "ClusterIP")
        errs = []
        try:
            if typ != "ExternalName":
                if spec.get("clusterIP") == "None":
                    spec["clusterIPs"] = ["None"]
                else:
                    wanted = spec.get("clusterIP") or None
                    try:
                        ip = await self.service_ips.allocate(owner, wanted)
                    except AllocationError as e:
                        errs.append(v.invalid("spec.clusterIPs", [wanted] if wanted else [],
                                              f"failed to allocate IP {wanted}: {e}"))
                    else:
                        spec["clusterIP"] = ip
                        spec["clusterIPs"] = [ip]
                spec.setdefault("ipFamilies", ["IPv4"])
                spec.setdefault("ipFamilyPolicy", "SingleStack")
            if typ in ("NodePort", "LoadBalancer"):
                for i, p in enumerate(spec.get("ports") or []):
                    wanted = str(p["nodePort"]) if p.get("nodePort") else None
                    try:
                        p["nodePort"] = int(await self.node_ports.allocate(owner, wanted))
                    except AllocationError as e:
                        errs.append(v.invalid(f"spec.ports[{i}].nodePort", p.get("nodePort"), str(e)))
                if typ == "LoadBalancer" and spec.get("externalTrafficPolicy") == "Local" and \
                        not spec.get("healthCheckNodePort"):
                    spec["healthCheckNodePort"] = int(await self.node_ports.allocate(owner))
        except BaseException:
            await self._release(svc)
            raise
        if errs:
            await self._release(svc, keep_old=old)
            raise status.invalid("", "Service", svc["metadata"].get("name", ""), errs)

        async def release() -> None:
            await self._release(svc)
        return release

    async def _release(self, svc: dict, keep_old: dict | None = None) -> None:
        ips, ports = service_ports_of(keep_old) if keep_old else (set(), set())
        try:
            await self.service_ips.release(owner_of(svc), ips)
            await self.node_ports.release(owner_of(svc), ports)
        except Exception as e:  # the repair at start mends what this could not
            log.warning("release of service allocations failed svc=%s err=%r", owner_of(svc), e)

    async def after_update(self, k: Kind, new: dict, old: dict) -> None:
        if k.group == "" and k.plural == "services":
            ips, ports = service_ports_of(new)
            await self.service_ips.release(owner_of(new), ips)
            await self.node_ports.release(owner_of(new), ports)

    async def after_delete(self, k: Kind, obj: dict) -> None:
        if k.group == "" and k.plural == "services":
            await self._release(obj)

    # --- eviction --------------------------------------------------------------------------

    def pdbs_for(self, pod: dict) -> list[dict]:
        """The PodDisruptionBudgets whose selector matches the pod (an empty selector matches none)."""
        ns = pod["metadata"].get("namespace")
        labels = pod["metadata"].get("labels") or {}
        pdbs, _ = self.cacher.list("/registry/poddisruptionbudgets/", f"/registry/poddisruptionbudgets/{ns}/")
        out = []
        for pdb in pdbs:
            try:
                sel = label_selector_from_api((pdb.get("spec") or {}).get("selector"))
            except SelectorError:
                continue
            if not sel.empty and sel.matches(labels):
                out.append(pdb)
        return out
