"""Image archives: import OCI layouts (a directory or a tar) and `docker save` tarballs; write OCI layouts.

OCI layout: oci-layout, index.json, blobs/<alg>/<hex>. Names come from the index entries' annotations
"io.containerd.image.name" (a full reference) or "org.opencontainers.image.ref.name" (a full reference,
or a bare tag that is given a repository by `base_name`). Docker save, classic: manifest.json
([{Config: "<id>.json", RepoTags: [...], Layers: ["<id>/layer.tar", ...]}]), repositories, uncompressed
layer tars (identical layers may be symlinks); newer Docker (25+) writes an OCI layout with a
manifest.json beside index.json. A docker save image gets a Docker schema 2 manifest made here, as
containerd's importer does. Imported images carry only their tags (no repo digests), as after `ctr import`.
"""
from __future__ import annotations

import asyncio
import gzip
import hashlib
import io
import json
import os
import platform
import posixpath
import shutil
import tarfile
from dataclasses import dataclass, field
from pathlib import Path

from kubelab.cri.image import reference
from kubelab.cri.image.content import DigestMismatch, InvalidDigest, check_digest, sha256_bytes, tmp_name
from kubelab.cri.image.reference import InvalidReference
from kubelab.cri.image.store import (INDEX_TYPES, MT_DOCKER_CONFIG, MT_DOCKER_LAYER, MT_DOCKER_LAYER_GZIP,
                                     MT_DOCKER_MANIFEST, MT_OCI_CONFIG, MT_OCI_INDEX, MT_OCI_LAYER,
                                     MT_OCI_LAYER_GZIP, MT_OCI_MANIFEST, Image, ImageError, ImageStore,
                                     parse_manifest)
from kubelab.cri.image.unpack import LayerError

ANNOTATION_IMAGE_NAME = "io.containerd.image.name"
ANNOTATION_REF_NAME = "org.opencontainers.image.ref.name"
_SMALL_FILE = 16 << 20
_META_FILES = ("index.json", "oci-layout", "manifest.json", "repositories")


class ArchiveError(Exception):
    """The archive cannot be imported; the message names the file and the reason."""


def host_platform() -> tuple[str, str]:
    m = platform.machine().lower()
    arch = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64", "armv7l": "arm",
            "i686": "386", "i386": "386", "ppc64le": "ppc64le", "s390x": "s390x"}.get(m, m)
    return "linux", arch


@dataclass
class _Pending:
    manifest: bytes
    config: bytes
    names: list[str]
    index: bytes | None = None


@dataclass
class _Source:
    """Files of an archive: a directory read in place, or a tar whose files were streamed into the
    content store (path -> digest) with the small metadata files kept in memory."""
    store: ImageStore
    label: str
    directory: Path | None = None
    files: dict[str, str] = field(default_factory=dict)
    small: dict[str, bytes] = field(default_factory=dict)
    links: dict[str, str] = field(default_factory=dict)
    new_blobs: set[str] = field(default_factory=set)

    def _resolve(self, path: str) -> str:
        path = posixpath.normpath(path.lstrip("/")) if path else path
        for _ in range(40):
            if path in self.links:
                path = self.links[path]
            else:
                return path
        raise ArchiveError(f"{self.label}: too many levels of links at {path!r}")

    def _dir_file(self, path: str) -> Path:
        assert self.directory is not None
        p = self.directory / path
        real = Path(os.path.realpath(p))
        root = Path(os.path.realpath(self.directory))
        if real != root and root not in real.parents:
            raise ArchiveError(f"{self.label}: {path!r} points outside the archive")
        return real

    def exists(self, path: str) -> bool:
        if self.directory is not None:
            return (self.directory / path).is_file()
        path = self._resolve(path)
        return path in self.small or path in self.files

    def read(self, path: str) -> bytes:
        if self.directory is not None:
            try:
                return self._dir_file(path).read_bytes()
            except FileNotFoundError:
                raise ArchiveError(f"{self.label}: {path} is missing") from None
        path = self._resolve(path)
        if path in self.small:
            return self.small[path]
        if path in self.files:
            return self.store.content.read(self.files[path])
        raise ArchiveError(f"{self.label}: {path} is missing")

    def blob(self, path: str, expected: str | None = None) -> str:
        """Put the file at path into the content store; return its digest (checked against expected)."""
        if self.directory is not None:
            if expected and self.store.content.has(expected):
                return expected
            src = self._dir_file(path)
            if not src.is_file():
                raise ArchiveError(f"{self.label}: {path} is missing")
            tmp = self.store.content.new_tmp()
            shutil.copyfile(src, tmp)
            digest = expected or _sha256_file(tmp)
            existed = self.store.content.has(digest)
            try:
                self.store.content.commit(digest, tmp)
            except DigestMismatch:
                raise ArchiveError(f"{self.label}: {path} does not match its digest {digest}") from None
            if not existed:
                self.new_blobs.add(digest)
            return digest
        rpath = self._resolve(path)
        if rpath in self.files:
            digest = self.files[rpath]
        elif rpath in self.small:
            existed = self.store.content.has(sha256_bytes(self.small[rpath]))
            digest = self.store.content.write_bytes(self.small[rpath])
            if not existed:
                self.new_blobs.add(digest)
        else:
            raise ArchiveError(f"{self.label}: {path} is missing")
        if expected and digest != expected:
            raise ArchiveError(f"{self.label}: {path} does not match its digest {expected} (it is {digest})")
        return digest

    def read_blob(self, digest: str) -> bytes:
        data = self.read(_blob_path(digest))
        if sha256_bytes(data) != digest:
            raise ArchiveError(f"{self.label}: blob {digest} does not match its digest")
        return data


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return "sha256:" + h.hexdigest()


def _blob_path(digest: str) -> str:
    try:
        return "blobs/sha256/" + check_digest(digest)
    except InvalidDigest as e:
        raise ArchiveError(str(e)) from None


def _stream_tar(src: _Source, path: Path) -> None:
    content = src.store.content
    try:
        with tarfile.open(path, mode="r|*") as tf:
            for m in tf:
                name = posixpath.normpath(m.name.lstrip("/"))
                if name.startswith("../") or name == "..":
                    raise ArchiveError(f"{src.label}: entry {m.name!r} escapes the archive")
                if m.issym():
                    src.links[name] = posixpath.normpath(posixpath.join(posixpath.dirname(name), m.linkname))
                    continue
                if m.islnk():
                    src.links[name] = posixpath.normpath(m.linkname.lstrip("/"))
                    continue
                if not m.isreg():
                    continue
                f = tf.extractfile(m)
                assert f is not None
                base = posixpath.basename(name)
                if m.size <= _SMALL_FILE and (name in _META_FILES or base.endswith(".json") or base == "json"):
                    data = f.read()
                    src.small[name] = data
                    if name in _META_FILES:
                        continue
                    digest = sha256_bytes(data)
                    if not content.has(digest):
                        content.write_bytes(data)
                        src.new_blobs.add(digest)
                    src.files[name] = digest
                    continue
                tmp = content.new_tmp()
                h = hashlib.sha256()
                try:
                    with open(tmp, "wb") as out:
                        while chunk := f.read(1 << 20):
                            h.update(chunk)
                            out.write(chunk)
                    digest = "sha256:" + h.hexdigest()
                    if name.startswith("blobs/sha256/") and name != _blob_path(digest):
                        raise ArchiveError(f"{src.label}: blob {name} does not match its digest (it is {digest})")
                    existed = content.has(digest)
                    content.commit(digest, tmp)
                    if not existed:
                        src.new_blobs.add(digest)
                    src.files[name] = digest
                finally:
                    tmp.unlink(missing_ok=True)
    except (tarfile.TarError, EOFError, gzip.BadGzipFile) as e:
        raise ArchiveError(f"{src.label}: not a readable tar archive: {e}") from None


def _names_from(annotations: dict, base_name: str | None, label: str) -> list[str]:
    name = annotations.get(ANNOTATION_IMAGE_NAME)
    if not name:
        ref = annotations.get(ANNOTATION_REF_NAME)
        if ref and any(c in ref for c in "/:@"):
            name = ref
        elif ref and base_name:
            name = f"{base_name}:{ref}"
    if not name:
        return []
    try:
        return [reference.parse(name).string()]
    except InvalidReference as e:
        raise ArchiveError(f"{label}: image name {name!r}: {e}") from None


def _choose_manifest(src: _Source, desc: dict, depth: int = 0) -> tuple[bytes, bytes | None]:
    """(manifest bytes, top index bytes or None) for the host platform under descriptor desc."""
    data = src.read_blob(desc["digest"])
    try:
        doc = json.loads(data)
    except ValueError:
        raise ArchiveError(f"{src.label}: blob {desc['digest']} is not JSON") from None
    mt = doc.get("mediaType") or desc.get("mediaType") or ""
    if mt in INDEX_TYPES or "manifests" in doc:
        if depth > 3:
            raise ArchiveError(f"{src.label}: image indexes nested too deep")
        os_, arch = host_platform()
        for m in doc.get("manifests") or []:
            p = m.get("platform") or {}
            if p and (p.get("os") != os_ or p.get("architecture") != arch):
                continue
            if not p:
                # no platform given: look at the manifest's config (as containerd does)
                try:
                    inner, _ = _choose_manifest(src, m, depth + 1)
                    cfg = json.loads(src.read_blob(json.loads(inner)["config"]["digest"]))
                except (ArchiveError, KeyError, ValueError):
                    continue
                if cfg.get("os", os_) != os_ or cfg.get("architecture", arch) != arch:
                    continue
            manifest, _ = _choose_manifest(src, m, depth + 1)
            return manifest, data
        raise ArchiveError(f"{src.label}: no image for {os_}/{arch} in the index {desc['digest']}")
    return data, None


def _read_archive(src: _Source, path: Path, base_name: str | None) -> list[_Pending]:
    store, label = src.store, src.label
    if src.directory is None:
        _stream_tar(src, path)
    pending: list[_Pending] = []
    docker_manifest: list = []
    if src.exists("manifest.json"):
        try:
            docker_manifest = json.loads(src.read("manifest.json"))
            assert isinstance(docker_manifest, list)
        except (ValueError, AssertionError):
            raise ArchiveError(f"{label}: manifest.json is not a docker save manifest list") from None
    if src.exists("index.json"):
        try:
            index = json.loads(src.read("index.json"))
        except ValueError as e:
            raise ArchiveError(f"{label}: index.json is not valid JSON: {e}") from None
        for desc in index.get("manifests") or []:
            if not isinstance(desc, dict) or "digest" not in desc:
                raise ArchiveError(f"{label}: index.json has a manifest entry without a digest")
            names = _names_from(desc.get("annotations") or {}, base_name, label)
            manifest, top_index = _choose_manifest(src, desc)
            try:
                m = parse_manifest(manifest)
            except ImageError as e:
                raise ArchiveError(f"{label}: {e}") from None
            config = src.read_blob(m["config"]["digest"])
            if not names:
                cfg_path = _blob_path(m["config"]["digest"])
                for entry in docker_manifest:
                    if isinstance(entry, dict) and entry.get("Config") == cfg_path:
                        names = [_parse_name(t, label) for t in entry.get("RepoTags") or []]
            for layer in m["layers"]:
                src.blob(_blob_path(layer["digest"]), expected=layer["digest"])
            pending.append(_Pending(manifest, config, names, top_index))
    elif docker_manifest:
        for entry in docker_manifest:
            if not isinstance(entry, dict) or "Config" not in entry:
                raise ArchiveError(f"{label}: manifest.json entry without Config")
            config_digest = src.blob(entry["Config"])
            config = store.content.read(config_digest)
            layers = []
            for lp in entry.get("Layers") or []:
                d = src.blob(lp)
                with open(store.content.path(d), "rb") as f:
                    gz = f.read(2) == b"\x1f\x8b"
                layers.append({"mediaType": MT_DOCKER_LAYER_GZIP if gz else MT_DOCKER_LAYER,
                               "size": store.content.size(d), "digest": d})
            manifest = json.dumps({"schemaVersion": 2, "mediaType": MT_DOCKER_MANIFEST,
                                   "config": {"mediaType": MT_DOCKER_CONFIG, "size": len(config),
                                              "digest": config_digest},
                                   "layers": layers}, indent=3).encode()
            names = [_parse_name(t, label) for t in entry.get("RepoTags") or []]
            pending.append(_Pending(manifest, config, names))
    else:
        raise ArchiveError(f"{label}: not an OCI layout or a docker save archive (no index.json or manifest.json)")
    if not pending:
        raise ArchiveError(f"{label}: the archive holds no image")
    return pending


def _parse_name(name: str, label: str) -> str:
    try:
        return reference.parse(name).string()
    except InvalidReference as e:
        raise ArchiveError(f"{label}: image name {name!r}: {e}") from None


async def import_archive(store: ImageStore, path: Path, *, base_name: str | None = None,
                         unpack: bool = True) -> list[Image]:
    """Import every image of an OCI layout (dir or tar, maybe gzip-compressed) or docker save archive.
    Layers are unpacked into snapshots (diff IDs checked) before an image is recorded, so an image in
    the index is always usable. Blobs brought in for nothing are removed again."""
    path = Path(path)
    if path.is_dir():
        src = _Source(store, str(path), directory=path)
    elif path.is_file():
        src = _Source(store, str(path))
    else:
        raise ArchiveError(f"{path}: no such file or directory")
    try:
        pending = await asyncio.to_thread(_read_archive, src, path, base_name)
        images = []
        for p in pending:
            m = json.loads(p.manifest)
            layers = [ld["digest"] for ld in m["layers"]]
            try:
                diff_ids = json.loads(p.config)["rootfs"]["diff_ids"]
            except (ValueError, KeyError, TypeError):
                raise ArchiveError(f"{path}: image config {m['config']['digest']} has no rootfs.diff_ids") from None
            if unpack:
                try:
                    await store.snapshots.ensure(layers, diff_ids)
                except LayerError as e:
                    raise ArchiveError(f"{path}: {e}") from None
            try:
                images.append(store.add(p.manifest, p.config, p.names, index=p.index))
            except (ImageError, InvalidReference) as e:
                raise ArchiveError(f"{path}: {e}") from None
        return images
    finally:
        # blobs this import brought in that no image refers to (a failure part way, unused files)
        _drop_unreferenced(store, src.new_blobs)


def _drop_unreferenced(store: ImageStore, digests: set[str]) -> None:
    if not digests:
        return
    used: set[str] = set()
    for img in store.list():
        used.update(img.layers)
        used.update(d for d in (img.manifest_digest, img.config_digest, img.index_digest) if d)
    for d in digests - used:
        store.content.delete(d)


# ---- writing ----
def _detect_layer_type(path: Path) -> str:
    with open(path, "rb") as f:
        return MT_OCI_LAYER_GZIP if f.read(2) == b"\x1f\x8b" else MT_OCI_LAYER


def write_oci_layout(out: Path, refs: list[str] | str, config: bytes, layers: list[Path], *,
                     as_dir: bool = False) -> str:
    """Write an OCI image layout holding one image (config + layer blob files, bottom-most first) named
    by refs, as a tar (deterministic: sorted, mtime 0, root-owned) or a directory. A docker-style
    manifest.json is added so `docker load` takes it too. Written atomically. Returns the manifest digest."""
    if isinstance(refs, str):
        refs = [refs]
    names = [reference.parse(r) for r in refs]
    cfg = json.loads(config)
    blobs: dict[str, bytes | Path] = {}
    config_digest = sha256_bytes(config)
    blobs[config_digest] = config
    layer_descs = []
    for lp in layers:
        lp = Path(lp)
        d = _sha256_file(lp)
        blobs[d] = lp
        layer_descs.append({"mediaType": _detect_layer_type(lp), "digest": d, "size": lp.stat().st_size})
    manifest = json.dumps({"schemaVersion": 2, "mediaType": MT_OCI_MANIFEST,
                           "config": {"mediaType": MT_OCI_CONFIG, "digest": config_digest, "size": len(config)},
                           "layers": layer_descs}, indent=2).encode()
    manifest_digest = sha256_bytes(manifest)
    blobs[manifest_digest] = manifest
    plat = {"architecture": cfg.get("architecture", host_platform()[1]), "os": cfg.get("os", "linux")}
    entries = [{"mediaType": MT_OCI_MANIFEST, "digest": manifest_digest, "size": len(manifest),
                "platform": plat,
                "annotations": {ANNOTATION_IMAGE_NAME: r.string(), ANNOTATION_REF_NAME: r.string()}}
               for r in names] or [{"mediaType": MT_OCI_MANIFEST, "digest": manifest_digest,
                                    "size": len(manifest), "platform": plat}]
    index = json.dumps({"schemaVersion": 2, "mediaType": MT_OCI_INDEX, "manifests": entries}, indent=2).encode()
    docker_manifest = json.dumps([{"Config": _blob_path(config_digest),
                                   "RepoTags": [r.familiar() for r in names if r.tag],
                                   "Layers": [_blob_path(ld["digest"]) for ld in layer_descs]}]).encode()
    files: dict[str, bytes | Path] = {"oci-layout": b'{"imageLayoutVersion":"1.0.0"}',
                                      "index.json": index, "manifest.json": docker_manifest}
    for d, data in blobs.items():
        files[_blob_path(d)] = data
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / tmp_name(out.name)
    try:
        if as_dir:
            for name, data in sorted(files.items()):
                p = tmp / name
                p.parent.mkdir(parents=True, exist_ok=True)
                if isinstance(data, Path):
                    shutil.copyfile(data, p)
                else:
                    p.write_bytes(data)
            if out.exists():
                shutil.rmtree(out)
        else:
            with tarfile.open(tmp, "w", format=tarfile.PAX_FORMAT) as tf:
                for dname in ("blobs", "blobs/sha256"):
                    ti = tarfile.TarInfo(dname)
                    ti.type, ti.mode, ti.mtime = tarfile.DIRTYPE, 0o755, 0
                    tf.addfile(ti)
                for name, data in sorted(files.items(), key=lambda kv: (not kv[0].startswith("blobs/"), kv[0])):
                    ti = tarfile.TarInfo(name)
                    ti.mode, ti.mtime = 0o644, 0
                    if isinstance(data, Path):
                        ti.size = data.stat().st_size
                        with open(data, "rb") as f:
                            tf.addfile(ti, f)
                    else:
                        ti.size = len(data)
                        tf.addfile(ti, io.BytesIO(data))
            with open(tmp, "rb+") as f:
                os.fsync(f.fileno())
        os.rename(tmp, out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp) if tmp.is_dir() else tmp.unlink()
    return manifest_digest
