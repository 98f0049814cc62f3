"""The kubelet's volume manager: materializes a pod's volumes on the node, tells the runtime what to
mount where, keeps API-backed payloads current and removes it all when the pod goes.

Layout and behaviour follow upstream's volume plugins:
- <root>/pods/<uid>/volumes/kubernetes.io~<plugin>/<name> for emptyDir (`empty-dir`, mode 0777;
  medium Memory is a tmpfs sized as calculateEmptyDirMemorySize), configMap (`configmap`, on disk),
  secret (`secret`), downwardAPI (`downward-api`) and projected (`projected`), the last three on a
  tmpfs as upstream's wrapped memory emptyDir; payloads go through the AtomicWriter.
- hostPath is used in place after its type check; persistentVolumeClaim resolves the bound PV
  (hostPath or local source) with upstream's errors for unbound or mismatched claims.
- mounts(): a container's volumeMounts with subPath / subPathExpr (created when missing, kept
  inside the volume), readOnly (always for API-backed payload volumes, as their plugins report)
  and mountPropagation (None -> private, HostToContainer -> rslave, Bidirectional -> rshared).

Errors are VolumeError(reason, message) with upstream's wording, e.g. FailedMount
`MountVolume.SetUp failed for volume "cfg" : configmap "x" not found`.
"""
from __future__ import annotations

import asyncio
import logging
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from kubelab.client.rest import ApiError, Client, is_not_found
from kubelab.kubelet.expansion import expand
from kubelab.kubelet.volumes import tmpfs
from kubelab.kubelet.volumes.atomic_writer import AtomicWriter, FileProjection, PayloadError
from kubelab.kubelet.volumes.hostpath import HostPathError, check_type
from kubelab.kubelet.volumes.ownership import set_volume_ownership
from kubelab.kubelet.volumes.payload import (DEFAULT_MODE, PayloadSourceError, aggregate, configmap_payload,
                                             downward_api_payload, secret_payload)
from kubelab.kubelet.volumes.token import TokenError, TokenManager

log = logging.getLogger(__name__)

Obj = dict[str, Any]

PLUGIN_DIRS = {
    "emptyDir": "kubernetes.io~empty-dir",
    "configMap": "kubernetes.io~configmap",
    "secret": "kubernetes.io~secret",
    "downwardAPI": "kubernetes.io~downward-api",
    "projected": "kubernetes.io~projected",
}
PAYLOAD_KINDS = ("configMap", "secret", "downwardAPI", "projected")
MEMORY_BACKED = ("secret", "downwardAPI", "projected")
SUPPORTED = tuple(PLUGIN_DIRS) + ("hostPath", "persistentVolumeClaim")
PROPAGATION = {None: "private", "": "private", "None": "private", "HostToContainer": "rslave",
               "Bidirectional": "rshared"}
ALLOCATABLE_TTL = 60.0


@dataclass
class Mount:
    container_path: str
    host_path: str
    readonly: bool = False
    propagation: str = "private"      # "private" | "rslave" | "rshared" (CRI MountPropagation)


class VolumeError(Exception):
    """A volume could not be set up or mounted: `reason` for the event or waiting state
    ("FailedMount", "CreateContainerConfigError"), `message` in upstream's words."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


def _kind(vol: Obj) -> str | None:
    for k in vol:
        if k != "name":
            return k
    return None


class VolumeManager:
    """Volumes of the pods of one node (see the module docstring).

        vm = VolumeManager(client, Path("/var/lib/kubelet"), "node1")
        await vm.setup(pod)                       # raises VolumeError
        mounts = vm.mounts(pod, container)        # list[Mount] for the CRI ContainerConfig
        changed = await vm.resync(pod)            # periodically, and on configMap/secret changes
        await vm.teardown(pod_uid)
    """

    def __init__(self, client: Client, root_dir: Path, node_name: str,
                 cached: Callable[[str, str, str], Obj | None] | None = None) -> None:
        self.client = client
        # cached(resource, namespace, name): a configMap or secret from the kubelet's informers, or
        # None when the cache does not hold it (then it is read from the API, which decides)
        self.cached = cached
        self.root_dir = Path(root_dir)
        self.node_name = node_name
        self.tokens = TokenManager(client)
        self._resolved: dict[tuple[str, str], tuple[str, bool]] = {}    # PVC volumes: (path, readOnly)
        self._alloc: tuple[float, dict[str, Any] | None] = (0.0, None)
        self._locks: dict[str, asyncio.Lock] = {}

    # -- paths ------------------------------------------------------------------------

    def pod_dir(self, uid: str) -> Path:
        return self.root_dir / "pods" / uid

    def volume_dir(self, uid: str, kind: str, name: str) -> Path:
        return self.pod_dir(uid) / "volumes" / PLUGIN_DIRS[kind] / name

    def pod_uids_on_disk(self) -> list[str]:
        """The pods that have a directory under <root>/pods (for orphan cleanup)."""
        try:
            return sorted(p.name for p in (self.root_dir / "pods").iterdir() if p.is_dir())
        except FileNotFoundError:
            return []

    def _lock(self, uid: str) -> asyncio.Lock:
        return self._locks.setdefault(uid, asyncio.Lock())

    # -- setup and resync ------------------------------------------------------------------

    async def setup(self, pod: Obj) -> None:
        """Materialize every volume of the pod (idempotent). Every volume is attempted; the first
        failure is raised as VolumeError once the others are done."""
        await self._run(pod, None)

    async def resync(self, pod: Obj) -> bool:
        """Re-read the API sources of the payload volumes (configMap, secret, downwardAPI,
        projected, rotating service account tokens) and swap changed payloads atomically. True if
        any payload changed; a failing volume raises VolumeError after the others are updated."""
        return await self._run(pod, PAYLOAD_KINDS)

    async def _run(self, pod: Obj, kinds: tuple[str, ...] | None) -> bool:
        uid = pod["metadata"]["uid"]
        changed = False
        first: VolumeError | None = None
        async with self._lock(uid):
            for vol in (pod.get("spec") or {}).get("volumes") or []:
                kind = _kind(vol)
                if kinds is not None and (kind not in kinds or
                                          not self.volume_dir(uid, kind, vol.get("name", "")).is_dir()):
                    continue          # resync never creates: a volume not set up (or torn down) stays away
                try:
                    changed |= await self._setup_volume(pod, vol, kind)
                except VolumeError as e:
                    log.info("volume setup failed pod=%s/%s volume=%s err=%s", pod["metadata"].get("namespace"),
                             pod["metadata"].get("name"), vol.get("name"), e.message)
                    first = first or e
        if first is not None:
            raise first
        return changed

    def _fail(self, vol: Obj, msg: str) -> VolumeError:
        return VolumeError("FailedMount", f'MountVolume.SetUp failed for volume "{vol.get("name")}" : {msg}')

    async def _setup_volume(self, pod: Obj, vol: Obj, kind: str | None) -> bool:
        name = vol.get("name", "")
        uid = pod["metadata"]["uid"]
        if kind not in SUPPORTED:
            raise VolumeError("FailedMount", f'failed to get Plugin from volumeSpec for volume "{name}" '
                                             "err=no volume plugin matched")
        src = vol.get(kind) or {}
        if kind == "hostPath":
            try:
                check_type(src.get("path", ""), src.get("type"))
            except HostPathError as e:
                raise self._fail(vol, str(e)) from None
            return False
        if kind == "persistentVolumeClaim":
            path, ro = await self._resolve_claim(pod, vol)
            self._resolved[(uid, name)] = (path, ro)
            return False
        d = self.volume_dir(uid, kind, name)
        fs_group = ((pod.get("spec") or {}).get("securityContext") or {}).get("fsGroup")
        fresh = not d.exists()
        try:
            d.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise self._fail(vol, f"mkdir {d}: {e.strerror}") from None
        if kind == "emptyDir":
            medium = src.get("medium") or ""
            if medium == "Memory":
                await self._mount_tmpfs(pod, vol, d, src.get("sizeLimit"))
            elif medium:
                raise self._fail(vol, f"unsupported medium {medium!r}")
            else:
                os.chmod(d, 0o777)
            if fresh:
                set_volume_ownership(d, fs_group, False)
            return False
        if kind in MEMORY_BACKED:
            await self._mount_tmpfs(pod, vol, d, None)
        try:
            payload = await self._payload(pod, vol, kind, src)
        except (PayloadSourceError, TokenError) as e:
            raise self._fail(vol, str(e)) from None
        try:
            perms = (lambda ts: set_volume_ownership(ts, fs_group, True)) if fs_group is not None else None
            wrote = await asyncio.to_thread(AtomicWriter(d).write, payload, perms)
        except (PayloadError, OSError) as e:
            raise self._fail(vol, str(e)) from None
        return wrote

    async def _mount_tmpfs(self, pod: Obj, vol: Obj, d: Path, size_limit: Any) -> None:
        if tmpfs.is_mount_point(d):
            return
        alloc = tmpfs.allocatable_memory(await self._allocatable())
        try:
            await tmpfs.mount_tmpfs(d, tmpfs.memory_size(pod, size_limit, alloc))
        except OSError as e:
            raise self._fail(vol, e.strerror or str(e)) from None

    async def _allocatable(self) -> dict[str, Any] | None:
        at, value = self._alloc
        if value is not None and time.monotonic() - at < ALLOCATABLE_TTL:
            return value
        try:
            node = await self.client.get("v1", "nodes", None, self.node_name)
            value = dict((node.get("status") or {}).get("allocatable") or {})
        except ApiError:
            value = None
        self._alloc = (time.monotonic(), value)
        return value

    async def _get(self, resource: str, kind: str, ns: str, name: str, optional: bool) -> Obj | None:
        if self.cached is not None:
            obj = self.cached(resource, ns, name)
            if obj is not None:
                return obj
        try:
            return await self.client.get("v1", resource, ns, name)
        except ApiError as e:
            if is_not_found(e):
                if optional:
                    return None
                raise PayloadSourceError(f'{kind} "{name}" not found') from None
            raise PayloadSourceError(f"couldn't get {kind} {ns}/{name}: {e.message}") from None

    async def _payload(self, pod: Obj, vol: Obj, kind: str, src: Obj) -> dict[str, FileProjection]:
        ns = pod["metadata"].get("namespace") or "default"
        mode = int(src["defaultMode"]) if src.get("defaultMode") is not None else DEFAULT_MODE
        if kind == "configMap":
            optional = bool(src.get("optional"))
            cm = await self._get("configmaps", "configmap", ns, src.get("name", ""), optional)
            return configmap_payload(src.get("items"), cm, mode, optional)
        if kind == "secret":
            optional = bool(src.get("optional"))
            sec = await self._get("secrets", "secret", ns, src.get("secretName", ""), optional)
            return secret_payload(src.get("items"), sec, mode, optional)
        if kind == "downwardAPI":
            return downward_api_payload(src.get("items"), pod, mode, await self._alloc_if_needed(src.get("items")))
        return await self._projected(pod, vol, src, mode)

    async def _alloc_if_needed(self, items: list[Obj] | None) -> dict[str, Any] | None:
        if any(it.get("resourceFieldRef") for it in items or []):
            return await self._allocatable()
        return None

    async def _projected(self, pod: Obj, vol: Obj, src: Obj, mode: int) -> dict[str, FileProjection]:
        """projected collectData: every source into one payload; any error fails the volume."""
        ns = pod["metadata"].get("namespace") or "default"
        payload: dict[str, FileProjection] = {}
        errors: list[str] = []
        for i, s in enumerate(src.get("sources") or []):
            try:
                if s.get("configMap") is not None:
                    c = s["configMap"]
                    opt = bool(c.get("optional"))
                    cm = await self._get("configmaps", "configmap", ns, c.get("name", ""), opt)
                    payload.update(configmap_payload(c.get("items"), cm, mode, opt))
                elif s.get("secret") is not None:
                    c = s["secret"]
                    opt = bool(c.get("optional"))
                    sec = await self._get("secrets", "secret", ns, c.get("name", ""), opt)
                    payload.update(secret_payload(c.get("items"), sec, mode, opt))
                elif s.get("downwardAPI") is not None:
                    items = s["downwardAPI"].get("items")
                    payload.update(downward_api_payload(items, pod, mode, await self._alloc_if_needed(items)))
                elif s.get("serviceAccountToken") is not None:
                    t = s["serviceAccountToken"]
                    key = (pod["metadata"]["uid"], vol.get("name", ""), str(i), t.get("path", ""))
                    tok, _ = await self.tokens.get(key, pod, t.get("audience"), t.get("expirationSeconds"))
                    fs_group = ((pod.get("spec") or {}).get("securityContext") or {}).get("fsGroup")
                    # with fsGroup the token is 0600 and SetVolumeOwnership makes it 0640, as upstream
                    payload[t.get("path", "")] = FileProjection(tok.token.encode(),
                                                                0o600 if fs_group is not None else mode)
                elif s.get("clusterTrustBundle") is not None:
                    errors.append("clusterTrustBundle projections are not supported by this kubelet")
            except (PayloadSourceError, TokenError) as e:
                errors.append(str(e))
        if errors:
            raise PayloadSourceError(aggregate(errors))
        return payload

    async def _resolve_claim(self, pod: Obj, vol: Obj) -> tuple[str, bool]:
        """getPVCExtractPV + getPVSpec: the claim must be bound to a PV that points back at it."""
        ns = pod["metadata"].get("namespace") or "default"
        src = vol["persistentVolumeClaim"]
        claim = src.get("claimName", "")

        def err(msg: str) -> VolumeError:
            return VolumeError("FailedMount", f"error processing PVC {ns}/{claim}: {msg}")
        try:
            pvc = await self.client.get("v1", "persistentvolumeclaims", ns, claim)
        except ApiError as e:
            raise err(f"failed to fetch PVC from API server: {e.message}") from None
        if pvc["metadata"].get("deletionTimestamp"):
            raise err("can't start pod because PVC is being deleted")
        pv_name = (pvc.get("spec") or {}).get("volumeName") or ""
        if (pvc.get("status") or {}).get("phase") != "Bound":
            raise err("PVC is not bound")
        if not pv_name:
            raise err("PVC has empty pvc.Spec.VolumeName")
        try:
            pv = await self.client.get("v1", "persistentvolumes", None, pv_name)
        except ApiError as e:
            raise err(f"failed to fetch PV {pv_name} from API server: {e.message}") from None
        ref = (pv.get("spec") or {}).get("claimRef")
        if not ref:
            raise err(f"found PV object {pv_name} but it has a nil pv.Spec.ClaimRef indicating it is not "
                      "yet bound to the claim")
        if ref.get("uid") != pvc["metadata"].get("uid"):
            raise err(f"found PV object {pv_name} but its pv.Spec.ClaimRef.UID ({ref.get('uid')}) does not "
                      f"point to claim.UID ({pvc['metadata'].get('uid')})")
        spec = pv["spec"]
        ro = bool(src.get("readOnly"))
        if spec.get("hostPath"):
            path = spec["hostPath"].get("path", "")
            try:
                check_type(path, spec["hostPath"].get("type"))
            except HostPathError as e:
                raise self._fail(vol, str(e)) from None
            return path, ro
        if spec.get("local"):
            path = spec["local"].get("path", "")
            if not os.path.exists(path):
                raise self._fail(vol, f"path {path!r} does not exist")
            return path, ro
        raise VolumeError("FailedMount", f'failed to get Plugin from volumeSpec for volume "{pv_name}" '
                                         "err=no volume plugin matched")

    # -- mounts -------------------------------------------------------------------------

    def volume_path(self, pod: Obj, vol: Obj) -> tuple[str, bool]:
        """(host path, read-only attribute) of a set-up volume."""
        uid = pod["metadata"]["uid"]
        kind = _kind(vol)
        name = vol.get("name", "")
        if kind == "hostPath":
            return (vol["hostPath"].get("path", ""), False)
        if kind == "persistentVolumeClaim":
            if (uid, name) not in self._resolved:
                raise KeyError(name)
            return self._resolved[(uid, name)]
        if kind not in PLUGIN_DIRS or not self.volume_dir(uid, kind, name).is_dir():
            raise KeyError(name)
        return (str(self.volume_dir(uid, kind, name)), kind in PAYLOAD_KINDS)

    def mounts(self, pod: Obj, container: Obj, *, env: list[tuple[str, str]] | None = None) -> list[Mount]:
        """The container's volumeMounts as host paths (kubelet makeMounts), after setup().
        `env` (the container's resolved environment) expands subPathExpr; without it the
        container's literal env values are used. Errors: VolumeError("CreateContainerConfigError")."""
        cname = container.get("name", "")
        vols = {v.get("name"): v for v in (pod.get("spec") or {}).get("volumes") or []}
        env_map = dict(env) if env is not None else {e["name"]: e.get("value", "")
                                                      for e in container.get("env") or [] if e.get("name")}
        out: list[Mount] = []
        for vm in container.get("volumeMounts") or []:
            mname = vm.get("name", "")

            def fail(msg: str) -> VolumeError:
                return VolumeError("CreateContainerConfigError", msg)
            vol = vols.get(mname)
            try:
                if vol is None:
                    raise KeyError(mname)
                host_path, ro_attr = self.volume_path(pod, vol)
            except KeyError:
                raise fail(f'cannot find volume "{mname}" to mount into container "{cname}"') from None
            sub = vm.get("subPath") or ""
            if vm.get("subPathExpr"):
                missing: set[str] = set()

                def lookup(key: str) -> str:
                    v = env_map.get(key, "")
                    if not v:
                        missing.add(key)
                    return v
                sub = expand(vm["subPathExpr"], lookup)
                if missing:
                    raise fail(f"missing value for {', '.join(sorted(missing))}")
            if sub:
                host_path = self._subpath(host_path, sub, mname, cname, fail)
            prop = vm.get("mountPropagation")
            if prop not in PROPAGATION:
                raise fail(f'invalid MountPropagation mode: "{prop}"')
            out.append(Mount(container_path=vm.get("mountPath", ""), host_path=host_path,
                             readonly=bool(vm.get("readOnly")) or ro_attr, propagation=PROPAGATION[prop]))
        return out

    @staticmethod
    def _subpath(volume_path: str, sub: str, mname: str, cname: str, fail) -> str:
        if sub.startswith("/"):
            raise fail(f"error SubPath `{sub}` must not be an absolute path")
        if ".." in sub.split("/"):
            raise fail(f"unable to provision SubPath `{sub}`: must not contain '..'")
        joined = os.path.join(volume_path, sub)
        if not os.path.lexists(joined):
            try:
                perm = os.stat(volume_path).st_mode & 0o7777
                os.makedirs(joined, perm, exist_ok=True)
                os.chmod(joined, perm)
            except OSError:
                raise fail(f'failed to create subPath directory for volumeMount "{mname}" of container '
                           f'"{cname}"') from None
        real_vol = os.path.realpath(volume_path)
        real = os.path.realpath(joined)
        if real != real_vol and not real.startswith(real_vol.rstrip("/") + "/"):
            raise fail(f'subpath "{real}" not within volume path "{real_vol}"')
        return real

    # -- teardown -------------------------------------------------------------------------

    async def teardown(self, pod_uid: str) -> None:
        """Unmount the pod's tmpfs volumes and remove <root>/pods/<uid>/volumes and etc-hosts (and the
        pod directory itself when nothing else is left in it). Idempotent."""
        async with self._lock(pod_uid):
            vols = self.pod_dir(pod_uid) / "volumes"
            try:
                await tmpfs.unmount_all(vols)
            except OSError as e:
                raise VolumeError("FailedUnmount",
                                  f"UnmountVolume.TearDown failed for pod {pod_uid}: {e.strerror or e}") from None
            await asyncio.to_thread(shutil.rmtree, vols, True)
            try:
                (self.pod_dir(pod_uid) / "etc-hosts").unlink(missing_ok=True)    # the kubelet's hostsfile
                self.pod_dir(pod_uid).rmdir()
            except OSError:
                pass
            self.tokens.forget(pod_uid)
            for k in [k for k in self._resolved if k[0] == pod_uid]:
                del self._resolved[k]
        self._locks.pop(pod_uid, None)
