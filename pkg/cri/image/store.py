"""The image index: which images exist, by what names, over which blobs and snapshots.

root/images.json is rewritten atomically (tmp + fsync + rename) under an flock, and re-read when another
process (e.g. `kubelab images import` beside a running kubelab-cri) changed it. Image records follow
containerd's CRI plugin: the ID is the config digest, repo_tags are full normalised tagged references,
repo_digests full "repository@sha256:..." references, size is the sum of the stored descriptors of the
image (index if any, manifest, config, compressed layers), as containerd's image Size walks them.
"""
from __future__ import annotations

import fcntl
import json
import logging
import os
import threading
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Iterator

from kubelab.cri.image import reference
from kubelab.cri.image.content import ContentStore, check_digest, fsync_dir, sha256_bytes, sweep_tmp, tmp_name
from kubelab.cri.image.reference import InvalidReference
from kubelab.cri.image.snapshots import Snapshotter, chain_ids

log = logging.getLogger("kubelab.cri.image")

MT_OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MT_OCI_INDEX = "application/vnd.oci.image.index.v1+json"
MT_OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
MT_OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
MT_OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
MT_OCI_LAYER_ZSTD = "application/vnd.oci.image.layer.v1.tar+zstd"
MT_DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
MT_DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
MT_DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
MT_DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar"
MT_DOCKER_LAYER_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip"
MANIFEST_TYPES = (MT_OCI_MANIFEST, MT_DOCKER_MANIFEST)
INDEX_TYPES = (MT_OCI_INDEX, MT_DOCKER_LIST)
MIN_ID_PREFIX = 12


class ImageError(Exception):
    """A manifest/config pair cannot be stored (malformed, missing blobs)."""


class ImageInUse(Exception):
    """RemoveImage of an image a container uses."""


@dataclass
class Image:
    id: str
    repo_tags: list[str]
    repo_digests: list[str]
    manifest_digest: str
    config_digest: str
    layers: list[str]
    diff_ids: list[str]
    size: int
    config: dict = field(default_factory=dict, repr=False)
    pinned: bool = False
    index_digest: str | None = None
    media_type: str = MT_OCI_MANIFEST

    @property
    def chain_id(self) -> str:
        return chain_ids(self.diff_ids)[-1] if self.diff_ids else ""

    def record(self) -> dict:
        d = asdict(self)
        d.pop("config")
        return d


def parse_manifest(manifest: bytes) -> dict:
    try:
        m = json.loads(manifest)
    except ValueError as e:
        raise ImageError(f"manifest is not valid JSON: {e}") from None
    if not isinstance(m, dict) or m.get("schemaVersion") != 2:
        raise ImageError("unsupported manifest: only schema version 2 (Docker v2 / OCI) is supported")
    mt = m.get("mediaType") or MT_OCI_MANIFEST
    if mt in INDEX_TYPES or "manifests" in m:
        raise ImageError("expected an image manifest, got an image index")
    if mt not in MANIFEST_TYPES:
        raise ImageError(f"unsupported manifest media type {mt!r}")
    if not isinstance(m.get("config"), dict) or not isinstance(m.get("layers"), list):
        raise ImageError("manifest has no config or layers")
    return m


class ImageStore:
    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        sweep_tmp(self.root, prefix="images.json")
        self.content = ContentStore(self.root / "content")
        self.snapshots = Snapshotter(self.root / "snapshots", self.content)
        self.index_path = self.root / "images.json"
        self._lock = threading.RLock()
        self._images: dict[str, Image] = {}
        self._stamp: tuple | None = None
        self._reload(force=True)

    # ---- the index file ----
    @contextmanager
    def _flock(self) -> Iterator[None]:
        with self._lock:
            fd = os.open(self.root / "images.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                yield
            finally:
                os.close(fd)

    def _file_stamp(self) -> tuple | None:
        try:
            st = os.stat(self.index_path)
        except FileNotFoundError:
            return None
        return (st.st_ino, st.st_mtime_ns, st.st_size)

    def _reload(self, force: bool = False) -> None:
        with self._lock:
            stamp = self._file_stamp()
            if not force and stamp == self._stamp:
                return
            images: dict[str, Image] = {}
            if stamp is not None:
                try:
                    data = json.loads(self.index_path.read_text())
                except (OSError, ValueError) as e:
                    raise ImageError(f"cannot read the image index {self.index_path}: {e}") from None
                for rec in data.get("images", []):
                    old = self._images.get(rec.get("id", ""))
                    try:
                        config = old.config if old is not None else json.loads(
                            self.content.read(rec["config_digest"]))
                    except (OSError, ValueError, KeyError) as e:
                        log.warning("image %s: config unreadable, skipped: %s", rec.get("id"), e)
                        continue
                    known = {k: rec[k] for k in Image.__dataclass_fields__ if k in rec and k != "config"}
                    images[rec["id"]] = Image(**known, config=config)
            self._images = images
            self._stamp = stamp

    def _save(self) -> None:
        data = {"version": 1, "images": [i.record() for i in sorted(self._images.values(), key=lambda i: i.id)]}
        tmp = self.root / tmp_name("images.json")
        try:
            with open(tmp, "w") as f:
                json.dump(data, f, indent=1)
                f.flush()
                os.fsync(f.fileno())
            os.rename(tmp, self.index_path)
        finally:
            tmp.unlink(missing_ok=True)
        fsync_dir(self.root)
        self._stamp = self._file_stamp()

    # ---- queries ----
    def list(self) -> list[Image]:
        self._reload()
        return sorted(self._images.values(), key=lambda i: (i.repo_tags[:1] or i.repo_digests[:1] or [""], i.id))

    def get(self, ref_or_id: str) -> Image | None:
        """Find an image by name ("nginx", full ref, "repo@sha256:..."), ID "sha256:<hex>" or a unique
        ID prefix of at least 12 hex digits. None if there is none (also for malformed input)."""
        self._reload()
        s = (ref_or_id or "").strip()
        if not s:
            return None
        if s.startswith("sha256:") and s in self._images:
            return self._images[s]
        try:
            ref = reference.parse(s)
        except InvalidReference:
            ref = None
        if ref is not None:
            name = ref.string()
            for img in self._images.values():
                if name in img.repo_tags or name in img.repo_digests:
                    return img
        hexpart = s[len("sha256:"):] if s.startswith("sha256:") else s
        if len(hexpart) >= MIN_ID_PREFIX and all(c in "0123456789abcdef" for c in hexpart):
            found = [i for i in self._images.values() if i.id[len("sha256:"):].startswith(hexpart)]
            if len(found) == 1:
                return found[0]
        return None

    # ---- changes ----
    def add(self, manifest: bytes, config: bytes, names: list[str], repo_digest: str | None = None, *,
            index: bytes | None = None, pinned: bool = False) -> Image:
        """Record an image whose layer blobs are already in the content store. The manifest, config (and
        index, for an image resolved through one) are stored as blobs. names are references (tags or
        digests); a tag held by another image moves to this one."""
        m = parse_manifest(manifest)
        config_digest = m["config"].get("digest", "")
        check_digest(config_digest)
        if sha256_bytes(config) != config_digest:
            raise ImageError(f"config digest mismatch: manifest says {config_digest}, "
                             f"config is {sha256_bytes(config)}")
        try:
            cfg = json.loads(config)
        except ValueError as e:
            raise ImageError(f"image config is not valid JSON: {e}") from None
        diff_ids = list(((cfg.get("rootfs") or {}).get("diff_ids")) or [])
        layers = [ld.get("digest", "") for ld in m["layers"]]
        if len(diff_ids) != len(layers):
            raise ImageError(f"manifest has {len(layers)} layers but the config has {len(diff_ids)} diff IDs")
        for d in layers + diff_ids:
            check_digest(d)
        missing = [d for d in layers if not self.content.has(d)]
        if missing:
            raise ImageError(f"layer blob {missing[0]} is not in the content store")
        tags: list[str] = []
        digests: list[str] = []
        for n in names:
            r = reference.parse(n)
            (digests if r.digest else tags).append(r.string())
        if repo_digest:
            r = reference.parse(repo_digest)
            if not r.digest:
                raise InvalidReference(f"repo digest {repo_digest!r} has no digest")
            digests.append(r.string())
        manifest_digest = self.content.write_bytes(manifest)
        self.content.write_bytes(config)
        index_digest = self.content.write_bytes(index) if index is not None else None
        size = (len(manifest) + len(config) + sum(int(ld.get("size", 0)) for ld in m["layers"])
                + (len(index) if index is not None else 0))
        with self._flock():
            self._reload()
            for other in self._images.values():
                if other.id != config_digest:
                    other.repo_tags = [t for t in other.repo_tags if t not in tags]
                    other.repo_digests = [d for d in other.repo_digests if d not in digests]
            old = self._images.get(config_digest)
            img = Image(id=config_digest, repo_tags=_merge(old.repo_tags if old else [], tags),
                        repo_digests=_merge(old.repo_digests if old else [], digests),
                        manifest_digest=manifest_digest, config_digest=config_digest, layers=layers,
                        diff_ids=diff_ids, size=size, config=cfg, pinned=pinned or bool(old and old.pinned),
                        index_digest=index_digest or (old.index_digest if old else None),
                        media_type=m.get("mediaType") or MT_OCI_MANIFEST)
            self._images[img.id] = img
            self._save()
        return img

    async def ensure_unpacked(self, image: Image) -> list[Path]:
        """The image's overlay lower dirs (top-most first), unpacking what is missing."""
        return await self.snapshots.ensure(image.layers, image.diff_ids)

    def remove(self, ref_or_id: str, in_use: Callable[[str], bool | str | None] | None = None) -> None:
        """Remove an image with all its names (as containerd's RemoveImage does), then the blobs and
        snapshots nothing else uses. Idempotent. in_use(image_id) returning something truthy (a container
        ID is named in the message) refuses with ImageInUse."""
        with self._flock():
            self._reload()
            img = self.get(ref_or_id)
            if img is None:
                return
            user = in_use(img.id) if in_use is not None else None
            if user:
                who = f" by container {user}" if isinstance(user, str) else " by a container"
                name = (img.repo_tags or img.repo_digests or [img.id])[0]
                raise ImageInUse(f"image {name} ({img.id}) is in use{who}; remove the container first")
            del self._images[img.id]
            self._save()
            self._collect(img)

    def _collect(self, removed: Image) -> None:
        """Delete blobs and snapshots of `removed` that no remaining image refers to."""
        keep_blobs: set[str] = set()
        keep_chains: set[str] = set()
        for i in self._images.values():
            keep_blobs.update(i.layers)
            keep_blobs.update((i.manifest_digest, i.config_digest))
            if i.index_digest:
                keep_blobs.add(i.index_digest)
            keep_chains.update(self.snapshots.chain_ids(i.diff_ids))
        for d in [removed.manifest_digest, removed.config_digest, removed.index_digest, *removed.layers]:
            if d and d not in keep_blobs:
                self.content.delete(d)
        for c in self.snapshots.chain_ids(removed.diff_ids):
            if c not in keep_chains:
                self.snapshots.remove(c)

    def gc(self, min_age: float = 3600.0) -> tuple[list[str], list[str]]:
        """Remove blobs and snapshots no image refers to and not touched for min_age seconds (left by a
        pull or import that was killed before it recorded its image; the age spares work in progress of
        another process). Returns (blobs removed, snapshots removed)."""
        now = time.time()
        with self._flock():
            self._reload()
            keep_blobs: set[str] = set()
            keep_chains: set[str] = set()
            for i in self._images.values():
                keep_blobs.update(i.layers + [i.manifest_digest, i.config_digest] + ([i.index_digest] if i.index_digest else []))
                keep_chains.update(self.snapshots.chain_ids(i.diff_ids))
            blobs = [d for d in self.content.list() if d not in keep_blobs
                     and now - self.content.path(d).stat().st_mtime >= min_age]
            for d in blobs:
                self.content.delete(d)
            snaps = [c for c in self.snapshots.list() if c not in keep_chains
                     and now - self.snapshots.dir(c).stat().st_mtime >= min_age]
            for c in snaps:
                self.snapshots.remove(c)
        return blobs, snaps

    def set_pinned(self, ref_or_id: str, pinned: bool = True) -> Image | None:
        """Mark an image pinned (never garbage-collected by the kubelet), e.g. the sandbox image."""
        with self._flock():
            self._reload()
            img = self.get(ref_or_id)
            if img is not None and img.pinned != pinned:
                img.pinned = pinned
                self._save()
            return img

    def fs_info(self) -> tuple[int, int, str]:
        """(used bytes, inodes used, mountpoint) of the image filesystem: the snapshots, as containerd
        reports its snapshotter's usage and root dir."""
        used, inodes = self.snapshots.usage()
        return used, inodes, str(self.snapshots.root)


def _merge(a: list[str], b: list[str]) -> list[str]:
    out = list(a)
    for x in b:
        if x not in out:
            out.append(x)
    return out
