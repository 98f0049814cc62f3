"""Overlay snapshots: one unpacked layer per chain ID under root/<chainid hex>/fs, used as overlay lower dirs.

A snapshot is unpacked into root/.tmp-<pid>-<rand>/fs and renamed into place only when complete and its
diff ID checked, so a crash leaves either a whole snapshot or a tmp dir that the next open sweeps.
Chain IDs as in the OCI image spec: ChainID(L0) = DiffID(L0), ChainID(L0..n) = sha256(ChainID(L0..n-1)
+ " " + DiffID(Ln)).
"""
from __future__ import annotations

import asyncio
import hashlib
import json
import os
import re
import shutil
from pathlib import Path

from kubelab import proc
from kubelab import mounts
from kubelab.cri.fsutil import disk_usage
from kubelab.cri.image.content import ContentStore, check_digest, sweep_tmp, tmp_name
from kubelab.cri.image.unpack import LayerError, unpack_layer

# mount(2) takes its options in one page; past this the lower dirs are given relative to the snapshot root
_MAX_MOUNT_DATA = 4000


def chain_ids(diff_ids: list[str]) -> list[str]:
    out: list[str] = []
    for d in diff_ids:
        check_digest(d)
        out.append(d if not out else "sha256:" + hashlib.sha256(f"{out[-1]} {d}".encode()).hexdigest())
    return out


def _mountinfo_targets() -> set[str]:
    targets = set()
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            if len(fields) > 4:
                # mountinfo escapes space, tab, newline and backslash as \ooo
                targets.add(re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), fields[4]))
    return targets


def is_mounted(target: Path) -> bool:
    return os.path.realpath(target) in _mountinfo_targets()


class Snapshotter:
    def __init__(self, root: Path, content: ContentStore) -> None:
        self.root = Path(root)
        self.content = content
        self.root.mkdir(parents=True, exist_ok=True)
        self._locks: dict[str, asyncio.Lock] = {}
        sweep_tmp(self.root)

    def chain_ids(self, diff_ids: list[str]) -> list[str]:
        return chain_ids(diff_ids)

    def dir(self, chain_id: str) -> Path:
        return self.root / check_digest(chain_id)

    def fs(self, chain_id: str) -> Path:
        return self.dir(chain_id) / "fs"

    def has(self, chain_id: str) -> bool:
        return (self.dir(chain_id) / "meta.json").is_file()

    def list(self) -> list[str]:
        return sorted("sha256:" + e.name for e in os.scandir(self.root)
                      if len(e.name) == 64 and ".tmp-" not in e.name)

    async def ensure(self, layer_digests: list[str], diff_ids: list[str]) -> list[Path]:
        """Make sure every layer is unpacked; return the lower dirs, top-most first (overlay order).
        Each layer's uncompressed digest must equal its diff ID (LayerError otherwise)."""
        if len(layer_digests) != len(diff_ids):
            raise LayerError(f"image has {len(layer_digests)} layers but {len(diff_ids)} diff IDs")
        cids = chain_ids(diff_ids)
        for i, (layer, diff_id, cid) in enumerate(zip(layer_digests, diff_ids, cids)):
            if self.has(cid):
                continue
            lock = self._locks.setdefault(cid, asyncio.Lock())
            async with lock:
                if not self.has(cid):
                    await asyncio.to_thread(self._unpack, layer, diff_id, cid, cids[i - 1] if i else None)
        return [self.fs(c) for c in reversed(cids)]

    def _unpack(self, layer: str, diff_id: str, cid: str, parent: str | None) -> None:
        if not self.content.has(layer):
            raise LayerError(f"layer {layer}: blob is not in the content store")
        tmp = self.root / tmp_name()
        try:
            (tmp / "fs").mkdir(parents=True)
            got = unpack_layer(self.content.path(layer), tmp / "fs", label=layer)
            if got != diff_id:
                raise LayerError(f"layer {layer}: uncompressed digest {got} does not match the diff ID "
                                 f"{diff_id} of the image config")
            size, inodes = disk_usage(tmp / "fs")
            meta = {"chain_id": cid, "parent": parent, "diff_id": diff_id, "layer": layer,
                    "size": size, "inodes": inodes}
            (tmp / "meta.json").write_text(json.dumps(meta))
            try:
                os.rename(tmp, self.dir(cid))
            except OSError:
                if not self.has(cid):  # lost a race with another writer: theirs is as good
                    raise
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)

    def meta(self, chain_id: str) -> dict:
        try:
            return json.loads((self.dir(chain_id) / "meta.json").read_text())
        except (FileNotFoundError, ValueError):
            return {}

    def usage(self) -> tuple[int, int]:
        """(bytes, inodes) of all snapshots, from the figures recorded when each was made."""
        total = inodes = 0
        for cid in self.list():
            m = self.meta(cid)
            total += int(m.get("size", 0))
            inodes += int(m.get("inodes", 0))
        return total, inodes

    def remove(self, chain_id: str) -> None:
        """Remove one snapshot (idempotent): renamed to a tmp name first, so a crash never leaves half."""
        d = self.dir(chain_id)
        if not d.exists():
            return
        tmp = self.root / tmp_name("rm")
        os.rename(d, tmp)
        shutil.rmtree(tmp, ignore_errors=True)

    def remove_unused(self, keep_chain_ids: set[str] | list[str]) -> list[str]:
        """Remove every snapshot whose chain ID is not in keep_chain_ids; return the removed ones."""
        keep = set(keep_chain_ids)
        removed = []
        for cid in self.list():
            if cid not in keep:
                self.remove(cid)
                removed.append(cid)
        return removed

    async def mount_overlay(self, lowers: list[Path], upper: Path | None, work: Path | None,
                            target: Path) -> None:
        """Mount an overlay of lowers (top-most first) with upper/work on target. Without upper the mount
        is read-only (a single lower is then bind-mounted read-only)."""
        if not lowers:
            raise ValueError("an overlay needs at least one lower dir")
        target = Path(target)
        target.mkdir(parents=True, exist_ok=True)
        if upper is None:
            if len(lowers) == 1:
                await proc.run(["mount", "--bind", "-o", "ro", str(lowers[0]), str(target)])
                await proc.run(["mount", "-o", "remount,bind,ro", str(target)])
                return
            await proc.run(["mount", "-t", "overlay", "overlay", "-o",
                            "lowerdir=" + ":".join(str(p) for p in lowers), str(target)])
            return
        assert work is not None, "an overlay with an upper dir needs a work dir"
        Path(upper).mkdir(parents=True, exist_ok=True)
        Path(work).mkdir(parents=True, exist_ok=True)
        tail = f",upperdir={upper},workdir={work}"
        opts = "lowerdir=" + ":".join(str(p) for p in lowers) + tail
        cwd = None
        if len(opts) > _MAX_MOUNT_DATA and all(Path(p).parent.parent == self.root for p in lowers):
            # the kernel resolves relative lower dirs against the mounting process's cwd (as containerd does)
            opts = "lowerdir=" + ":".join(f"{Path(p).parent.name}/fs" for p in lowers) + tail
            cwd = str(self.root)
        if len(opts) > _MAX_MOUNT_DATA:
            raise ValueError(f"too many layers to mount ({len(lowers)})")
        if cwd is None:
            mounts.mount("overlay", str(target), "overlay", 0, opts)     # a syscall, no process
        else:
            await proc.run(["mount", "-t", "overlay", "overlay", "-o", opts, str(target)], cwd=cwd)

    async def unmount(self, target: Path) -> None:
        """Unmount target (idempotent); a busy mount is detached lazily."""
        target = Path(target)
        for _ in range(5):
            if not target.exists() or not is_mounted(target):
                return
            try:
                await proc.run(["umount", str(target)])
            except proc.CommandError as e:
                if "busy" in str(e).lower():
                    await proc.run(["umount", "-l", str(target)], check=False)
                elif not is_mounted(target):
                    return
                else:
                    raise
