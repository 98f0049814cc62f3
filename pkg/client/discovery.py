"""API discovery for controllers that act on every resource (client-go's discovery client and a
small RESTMapper): which group/version/resources the server serves, with their kinds, scope and
verbs, and the resource behind an ownerReference's apiVersion + kind.

Read from the legacy discovery documents (/api, /api/v1, /apis, /apis/<group>/<version>), one
request per group-version, so custom resources appear as soon as their CRD is served. Only the
preferred version of each group is listed by `preferred()`, as the garbage collector and the
namespace controller use upstream's ServerPreferredResources.
"""
from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from .rest import Client

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class APIResource:
    group: str
    version: str
    resource: str          # plural, e.g. "deployments"
    kind: str
    namespaced: bool
    verbs: frozenset[str]

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    def supports(self, *verbs: str) -> bool:
        return all(v in self.verbs for v in verbs)


class Discovery:
    """The server's resources, refreshed on demand (`refresh()`), with lookups by kind."""

    def __init__(self, client: Client) -> None:
        self.client = client
        self.resources: list[APIResource] = []       # every served group-version
        self._preferred: set[tuple[str, str]] = set()  # (group, version)
        self._by_kind: dict[tuple[str, str], APIResource] = {}   # (apiVersion, kind) -> resource
        self.failed_groups: list[str] = []

    async def _group_version(self, group: str, version: str) -> list[APIResource]:
        path = f"/apis/{group}/{version}" if group else f"/api/{version}"
        doc = await self.client.request("GET", path)
        out = []
        for r in (doc or {}).get("resources") or []:
            if "/" in r.get("name", ""):
                continue                   # subresources
            out.append(APIResource(group, version, r["name"], r.get("kind", ""), bool(r.get("namespaced")),
                                   frozenset(r.get("verbs") or [])))
        return out

    async def refresh(self) -> None:
        """Re-read every group-version. A group that fails to answer keeps its last known resources
        and is named in `failed_groups` (the namespace controller reports it as upstream does)."""
        gvs: list[tuple[str, str]] = []
        preferred: set[tuple[str, str]] = set()
        core = await self.client.request("GET", "/api")
        for v in (core or {}).get("versions") or []:
            gvs.append(("", v))
        if gvs:
            preferred.add(gvs[0])
        groups = await self.client.request("GET", "/apis")
        for g in (groups or {}).get("groups") or []:
            for v in g.get("versions") or []:
                gvs.append((g["name"], v["version"]))
            pv = (g.get("preferredVersion") or {}).get("version")
            if pv:
                preferred.add((g["name"], pv))
        results = await asyncio.gather(*(self._group_version(g, v) for g, v in gvs), return_exceptions=True)
        old = {(r.group, r.version): [] for r in self.resources}
        for r in self.resources:
            old[(r.group, r.version)].append(r)
        resources: list[APIResource] = []
        failed: list[str] = []
        for (g, v), res in zip(gvs, results):
            if isinstance(res, BaseException):
                log.warning("discovery of %s/%s failed: %s", g or "core", v, res)
                failed.append(f"{g}/{v}" if g else v)
                resources.extend(old.get((g, v), []))
            else:
                resources.extend(res)
        self.resources = resources
        self._preferred = preferred
        self._by_kind = {(r.api_version, r.kind): r for r in resources}
        self.failed_groups = failed

    def preferred(self, *verbs: str) -> list[APIResource]:
        """Resources of each group's preferred version that support every verb given."""
        return [r for r in self.resources if (r.group, r.version) in self._preferred and r.supports(*verbs)]

    def for_kind(self, api_version: str, kind: str) -> APIResource | None:
        """The resource serving `kind` in `api_version` (an ownerReference's fields), or None."""
        return self._by_kind.get((api_version, kind))
