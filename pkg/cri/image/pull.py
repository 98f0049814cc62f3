"""Pull an image from a registry into the ImageStore: resolve, fetch blobs, unpack, register.

- Single flight: concurrent pulls of one reference (with the same credentials) share one task, and
  concurrent fetches of one blob (by any pull) share one download.
- Blobs go to the content store's ingest path and are committed only after their digest checks out
  (ContentStore.commit); a failed download keeps its partial file, and the next pull resumes it.
- Layers download concurrently (3 at a time per pull, as containerd's max_concurrent_downloads).
- The image is registered (store.add) last, after every blob is committed and every snapshot made:
  a pull that fails at any point leaves no half image, only valid committed blobs and partials.
- Progress is logged about once a second: bytes fetched, total, percent.
"""
from __future__ import annotations

import asyncio
import json
import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from kubelab.cri.image import reference
from kubelab.cri.image.content import DigestMismatch
from kubelab.cri.image.registry import (INDEX_TYPES, Auth, Platform, RegistryClient, RegistryError, Resolved,
                                        host_platform)

if TYPE_CHECKING:
    from kubelab.cri.image.store import Image, ImageStore

log = logging.getLogger("kubelab.cri.image.pull")

MAX_CONCURRENT_DOWNLOADS = 3
PROGRESS_INTERVAL = 1.0


def _mib(n: int) -> str:
    return f"{n / (1 << 20):.1f}MiB"


class _Progress:
    """Bytes fetched by one pull, logged every PROGRESS_INTERVAL seconds while it runs."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.done: dict[str, int] = {}
        self.total: dict[str, int] = {}
        self.started = time.monotonic()
        self._task: asyncio.Task | None = None

    def expect(self, digest: str, size: int) -> None:
        self.total[digest] = size
        self.done.setdefault(digest, 0)

    def update(self, digest: str, done: int, size: int | None) -> None:
        self.done[digest] = done

    def line(self) -> str:
        done, total = sum(self.done.values()), sum(self.total.values())
        pct = f" ({100 * done // total}%)" if total else ""
        return f"image={self.name} fetched={done} total={total} progress={_mib(done)}/{_mib(total)}{pct}"

    def start(self) -> None:
        async def ticker() -> None:
            while True:
                await asyncio.sleep(PROGRESS_INTERVAL)
                log.info("pulling %s", self.line())
        self._task = asyncio.ensure_future(ticker())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None


def _retrieve(task: asyncio.Future) -> None:
    """Mark a shared task's exception as retrieved (its waiters may all be gone)."""
    if not task.cancelled():
        task.exception()


class Puller:
    """Pulls images into store through client. One Puller per runtime."""

    def __init__(self, store: "ImageStore", client: RegistryClient, platform: Platform | None = None,
                 max_concurrent_downloads: int = MAX_CONCURRENT_DOWNLOADS) -> None:
        self.store = store
        self.client = client
        self.platform = platform or host_platform()
        self.max_concurrent_downloads = max_concurrent_downloads
        self._pulls: dict[tuple[str, str], asyncio.Task] = {}
        self._blobs: dict[str, asyncio.Task] = {}

    async def pull(self, image: str, auth: Auth | None = None) -> "Image":
        """Pull image (any name Docker accepts) and return the stored Image. Raises InvalidReference,
        ImageNotFound, Unauthorized, RegistryError (and LayerError for a layer that cannot be unpacked)."""
        ref = reference.parse(image)
        key = (ref.string(), auth.key() if auth else "")
        task = self._pulls.get(key)
        if task is None:
            task = asyncio.ensure_future(self._pull_logged(ref, auth))
            self._pulls[key] = task
            task.add_done_callback(_retrieve)
            task.add_done_callback(lambda t, k=key: self._pulls.pop(k, None) if self._pulls.get(k) is t else None)
        else:
            log.info("image=%s is being pulled already: waiting for that pull", ref.string())
        return await asyncio.shield(task)

    async def _pull_logged(self, ref: "reference.Reference", auth: Auth | None) -> "Image":
        try:
            return await self._pull(ref, auth)
        except asyncio.CancelledError:
            raise
        except Exception as e:
            log.warning("pull of image=%s failed: %s", ref.string(), e)
            raise

    async def _pull(self, ref: "reference.Reference", auth: Auth | None) -> "Image":
        name = ref.string()
        started = time.monotonic()
        log.info("pulling image=%s platform=%s", name, self.platform)
        resolved = await self.client.resolve_image(ref, auth, self.platform)
        manifest = self._parse_manifest(name, resolved)
        content = self.store.content
        config_desc = manifest["config"]
        layers = manifest.get("layers") or []
        progress = _Progress(name)
        for d in [config_desc, *layers]:
            if not content.has(d["digest"]):
                progress.expect(d["digest"], int(d.get("size") or 0))
        progress.start()
        try:
            await self._fetch(ref, config_desc, auth, progress)
            config_bytes = content.read(config_desc["digest"])
            config = self._parse_config(name, config_bytes)
            diff_ids = list((config.get("rootfs") or {}).get("diff_ids") or [])
            if len(diff_ids) != len(layers):
                raise RegistryError(f"image {name}: its config lists {len(diff_ids)} layer diff_ids for "
                                    f"{len(layers)} layers")
            sem = asyncio.Semaphore(self.max_concurrent_downloads)

            async def one(desc: dict) -> None:
                async with sem:
                    await self._fetch(ref, desc, auth, progress)
            results = await asyncio.gather(*(one(d) for d in layers), return_exceptions=True)
            errors = [r for r in results if isinstance(r, BaseException)]
            if errors:
                raise next((e for e in errors if isinstance(e, RegistryError)), errors[0])
        finally:
            await progress.stop()
        fetched = sum(progress.done.values())
        if progress.total:
            log.info("fetched image=%s bytes=%d (%s) in %.2fs", name, fetched, _mib(fetched),
                     time.monotonic() - started)
        await self.store.snapshots.ensure([d["digest"] for d in layers], diff_ids)
        names = [ref.string()] if ref.tag and not ref.digest else []
        repo_digest = f"{ref.repository}@{resolved.top_digest}"
        image = await asyncio.to_thread(self.store.add, resolved.manifest, config_bytes, names=names,
                                        repo_digest=repo_digest, index=resolved.index)
        log.info("pulled image=%s id=%s repo_digest=%s in %.2fs", name, image.id, repo_digest,
                 time.monotonic() - started)
        return image

    @staticmethod
    def _parse_manifest(name: str, resolved: Resolved) -> dict:
        try:
            doc = json.loads(resolved.manifest)
        except ValueError:
            raise RegistryError(f"image {name}: manifest {resolved.digest} is not JSON") from None
        if resolved.media_type in INDEX_TYPES or not isinstance(doc, dict) or \
                not isinstance(doc.get("config"), dict) or not isinstance(doc.get("layers", []), list):
            raise RegistryError(f"image {name}: manifest {resolved.digest} is not an image manifest")
        for d in [doc["config"], *doc.get("layers", [])]:
            if not isinstance(d, dict) or not str(d.get("digest", "")).startswith("sha256:"):
                raise RegistryError(f"image {name}: manifest {resolved.digest} has a descriptor without a "
                                    f"sha256 digest")
        return doc

    @staticmethod
    def _parse_config(name: str, data: bytes) -> dict:
        try:
            doc = json.loads(data)
        except ValueError:
            raise RegistryError(f"image {name}: its config is not JSON") from None
        if not isinstance(doc, dict):
            raise RegistryError(f"image {name}: its config is not a JSON object")
        return doc

    async def _fetch(self, ref: "reference.Reference", desc: dict, auth: Auth | None, progress: _Progress) -> None:
        """Make blob desc present in the content store (shared with any concurrent fetch of it)."""
        digest = desc["digest"]
        if self.store.content.has(digest):
            return
        task = self._blobs.get(digest)
        if task is None:
            task = asyncio.ensure_future(self._download(ref, desc, auth, progress.update))
            self._blobs[digest] = task
            task.add_done_callback(_retrieve)
            task.add_done_callback(lambda t: self._blobs.pop(digest, None) if self._blobs.get(digest) is t else None)
        await asyncio.shield(task)

    async def _download(self, ref: "reference.Reference", desc: dict, auth: Auth | None,
                        update: Callable[[str, int, int | None], None]) -> None:
        digest, size = desc["digest"], desc.get("size")
        size = int(size) if size is not None else None
        content = self.store.content
        tmp = Path(content.ingest_path(digest))
        async with content.lock(digest):  # other writers of this ingest file in this process
            for attempt in range(2):
                if content.has(digest):
                    return
                resumed = tmp.exists() and tmp.stat().st_size > 0
                await self.client.fetch_blob(ref, digest, size, tmp, auth,
                                             lambda done, total: update(digest, done, total))
                try:
                    await asyncio.to_thread(content.commit, digest, tmp, size)
                    return
                except DigestMismatch as e:
                    # commit removed the file; a resumed partial may have been stale: start over once
                    if attempt == 0 and resumed:
                        log.warning("blob %s failed verification after resuming; downloading it again", digest)
                        update(digest, 0, size)
                        continue
                    raise RegistryError(f"blob {digest} of {ref.repository}: {e}") from None


__all__ = ["Puller", "MAX_CONCURRENT_DOWNLOADS"]
