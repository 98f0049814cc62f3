"""Unpack one image layer (a tar diff, gzip/bzip2/xz or plain) into a directory used as an overlay lower.

OCI whiteouts become overlayfs whiteouts, as containerd's overlay snapshotter does: `.wh.NAME` turns
into a 0/0 character device NAME and `.wh..wh..opq` into the xattr trusted.overlay.opaque=y on its
directory, so the lower dirs of an image compose in one overlay mount.

Safety: the destination is a directory only this process writes. Entry names are split into
components; absolute names and any ".." are refused. Every directory on the way is opened relative to
its parent with O_NOFOLLOW; a symlink met on the way (made by an earlier entry of this layer) is
followed inside the layer root only (an absolute target is taken relative to the root, as in the
container; a relative one that climbs above the root is refused). The last component is never
followed: an existing entry is removed and the new one created with O_EXCL|O_NOFOLLOW. So nothing is
ever written outside `dest`. Device nodes are skipped; trusted.* xattrs from the archive are dropped
(only the whiteout conversion writes trusted.overlay.*).
"""
from __future__ import annotations

import bz2
import errno
import gzip
import hashlib
import logging
import lzma
import os
import shutil
import stat
import tarfile
import zlib
from pathlib import Path
from typing import BinaryIO

log = logging.getLogger("kubelab.cri.image")

WHITEOUT_PREFIX = ".wh."
WHITEOUT_META_PREFIX = ".wh..wh."
WHITEOUT_OPAQUE = ".wh..wh..opq"
OPAQUE_XATTR = "trusted.overlay.opaque"
MAX_SYMLINK_HOPS = 40
_ALLOWED_XATTR_PREFIXES = ("user.", "security.capability")
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


class LayerError(Exception):
    """A layer cannot be unpacked; the message names the layer and the entry."""


class _HashingReader:
    """A read-only stream that hashes what passes through it (the uncompressed tar = the diff ID)."""

    def __init__(self, f: BinaryIO) -> None:
        self.f = f
        self.h = hashlib.sha256()

    def read(self, n: int = -1) -> bytes:
        data = self.f.read(n)
        self.h.update(data)
        return data

    def drain(self) -> None:
        while self.read(1 << 20):
            pass

    def digest(self) -> str:
        return "sha256:" + self.h.hexdigest()


def _label(blob: Path) -> str:
    blob = Path(blob)
    return f"sha256:{blob.name}" if blob.parent.name == "sha256" else blob.name


def _decompressor(raw: BinaryIO, label: str) -> BinaryIO:
    magic = raw.read(6)
    raw.seek(0)
    if magic[:2] == b"\x1f\x8b":
        return gzip.GzipFile(fileobj=raw, mode="rb")  # type: ignore[return-value]
    if magic[:4] == b"\x28\xb5\x2f\xfd":
        raise LayerError(f"layer {label}: zstd-compressed layers are not supported "
                         "(the Python standard library has no zstd decoder)")
    if magic[:3] == b"BZh":
        return bz2.BZ2File(raw)  # type: ignore[return-value]
    if magic == b"\xfd7zXZ\x00":
        return lzma.LZMAFile(raw)  # type: ignore[return-value]
    return raw


def unpack_layer(blob: Path, dest: Path, *, label: str | None = None) -> str:
    """Unpack the layer file `blob` into the (new or empty) directory `dest`. Returns the diff ID
    ("sha256:" of the uncompressed tar) so the caller can check it against the image config.
    Raises LayerError with a one-line message naming the layer and the offending entry."""
    label = label or _label(blob)
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    with open(blob, "rb") as raw:
        stream = _decompressor(raw, label)
        reader = _HashingReader(stream)
        ex = _Extractor(dest, label)
        try:
            with tarfile.open(fileobj=reader, mode="r|", encoding="utf-8", errors="surrogateescape") as tf:
                for member in tf:
                    ex.extract(tf, member)
            reader.drain()
            ex.finish()
        except LayerError:
            raise
        except (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile, lzma.LZMAError) as e:
            raise LayerError(f"layer {label}: corrupt or truncated archive: {e or type(e).__name__}") from None
        except OSError as e:
            if e.errno is None:  # decompressor errors without errno (bz2 "Invalid data stream")
                raise LayerError(f"layer {label}: corrupt or truncated archive: {e}") from None
            raise LayerError(f"layer {label}: {e.strerror or e}") from None
        finally:
            ex.close()
    return reader.digest()


class _Extractor:
    def __init__(self, dest: Path, label: str) -> None:
        self.dest = dest
        self.label = label
        self.rootfd = os.open(dest, _DIR_FLAGS)
        self.dir_times: list[tuple[list[str], int]] = []
        self.skipped_devices = 0
        self.root = os.geteuid() == 0

    def close(self) -> None:
        if self.rootfd >= 0:
            os.close(self.rootfd)
            self.rootfd = -1

    def fail(self, name: str, why: str) -> LayerError:
        return LayerError(f'layer {self.label}: entry "{name}" {why}')

    # ---- paths ----
    def split(self, name: str) -> list[str]:
        if name.startswith("/"):
            raise self.fail(name, "escapes the root (absolute path)")
        parts = [p for p in name.split("/") if p not in ("", ".")]
        if ".." in parts:
            raise self.fail(name, "escapes the root")
        return parts

    def open_dir(self, parts: list[str], name: str, create: bool) -> tuple[int, list[str]]:
        """Open the directory `parts` (relative to the root), following symlinks only inside the root.
        Returns (fd, real component names). Missing directories are made (0755) when create is set."""
        fds = [os.dup(self.rootfd)]
        names: list[str] = []
        todo = list(parts)
        hops = 0
        try:
            while todo:
                comp = todo.pop(0)
                if comp in ("", "."):
                    continue
                if comp == "..":
                    if len(fds) == 1:
                        raise self.fail(name, "escapes the root through a symlink")
                    os.close(fds.pop())
                    names.pop()
                    continue
                cur = fds[-1]
                try:
                    st = os.stat(comp, dir_fd=cur, follow_symlinks=False)
                except FileNotFoundError:
                    if not create:
                        raise self.fail(name, f'refers to "{"/".join(names + [comp])}" which is not in the layer') from None
                    os.mkdir(comp, 0o755, dir_fd=cur)
                    st = os.stat(comp, dir_fd=cur, follow_symlinks=False)
                if stat.S_ISLNK(st.st_mode):
                    hops += 1
                    if hops > MAX_SYMLINK_HOPS:
                        raise self.fail(name, "has too many levels of symbolic links")
                    target = os.readlink(comp, dir_fd=cur)
                    if target.startswith("/"):
                        for fd in fds[1:]:
                            os.close(fd)
                        del fds[1:]
                        names.clear()
                    todo[:0] = target.split("/")
                    continue
                if not stat.S_ISDIR(st.st_mode):
                    raise self.fail(name, f'has a parent "{"/".join(names + [comp])}" that is not a directory')
                fds.append(os.open(comp, _DIR_FLAGS, dir_fd=cur))
                names.append(comp)
            result = fds.pop()
            return result, names
        finally:
            for fd in fds:
                os.close(fd)

    def remove_existing(self, pfd: int, base: str, keep_dir: bool = False) -> os.stat_result | None:
        try:
            st = os.stat(base, dir_fd=pfd, follow_symlinks=False)
        except FileNotFoundError:
            return None
        if stat.S_ISDIR(st.st_mode):
            if keep_dir:
                return st
            shutil.rmtree(base, dir_fd=pfd)
        else:
            os.unlink(base, dir_fd=pfd)
        return None

    # ---- metadata ----
    def chown(self, target: int | str, m: tarfile.TarInfo, pfd: int | None = None, link: bool = False) -> None:
        try:
            if pfd is None:
                os.chown(target, m.uid, m.gid)
            else:
                os.chown(target, m.uid, m.gid, dir_fd=pfd, follow_symlinks=not link)
        except PermissionError:
            if self.root:
                raise

    def xattrs(self, fd: int, m: tarfile.TarInfo) -> None:
        for key, value in (m.pax_headers or {}).items():
            if not key.startswith("SCHILY.xattr."):
                continue
            attr = key[len("SCHILY.xattr."):]
            if not attr.startswith(_ALLOWED_XATTR_PREFIXES):
                continue
            try:
                os.setxattr(fd, attr, value.encode("utf-8", "surrogateescape"))
            except OSError as e:
                if e.errno not in (errno.EOPNOTSUPP, errno.EPERM, errno.EINVAL, errno.ENOTSUP):
                    raise

    @staticmethod
    def mtime_ns(m: tarfile.TarInfo) -> int:
        return int(float(m.mtime) * 1_000_000_000)

    def apply_fd(self, fd: int, m: tarfile.TarInfo, times: bool = True) -> None:
        self.chown(fd, m)
        os.fchmod(fd, m.mode & 0o7777)
        self.xattrs(fd, m)
        if times:
            t = self.mtime_ns(m)
            os.utime(fd, ns=(t, t))

    # ---- entries ----
    def extract(self, tf: tarfile.TarFile, m: tarfile.TarInfo) -> None:
        name = m.name
        parts = self.split(name)
        if not parts:
            if m.isdir():
                self.apply_fd(self.rootfd, m, times=False)
                self.dir_times.append(([], self.mtime_ns(m)))
            return
        base = parts[-1]
        if m.ischr() or m.isblk():
            self.skipped_devices += 1
            log.debug("layer %s: skipping device node %s", self.label, name)
            return
        pfd, pnames = self.open_dir(parts[:-1], name, create=True)
        try:
            if base.startswith(WHITEOUT_PREFIX):
                self.whiteout(pfd, base, name)
            elif m.isdir():
                st = self.remove_existing(pfd, base, keep_dir=True)
                if st is None:
                    os.mkdir(base, 0o700, dir_fd=pfd)
                fd = os.open(base, _DIR_FLAGS, dir_fd=pfd)
                try:
                    self.apply_fd(fd, m, times=False)
                finally:
                    os.close(fd)
                self.dir_times.append((pnames + [base], self.mtime_ns(m)))
            elif m.isreg():
                self.remove_existing(pfd, base)
                fd = os.open(base, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600,
                             dir_fd=pfd)
                try:
                    src = tf.extractfile(m)
                    if src is not None:
                        with os.fdopen(os.dup(fd), "wb", closefd=True) as out:
                            shutil.copyfileobj(src, out, 1 << 20)
                    self.apply_fd(fd, m)
                finally:
                    os.close(fd)
            elif m.issym():
                self.remove_existing(pfd, base)
                os.symlink(m.linkname, base, dir_fd=pfd)
                self.chown(base, m, pfd, link=True)
                t = self.mtime_ns(m)
                os.utime(base, ns=(t, t), dir_fd=pfd, follow_symlinks=False)
            elif m.islnk():
                self.hardlink(pfd, base, m)
            elif m.isfifo():
                self.remove_existing(pfd, base)
                os.mkfifo(base, 0o600, dir_fd=pfd)
                fd = os.open(base, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=pfd)
                try:
                    self.apply_fd(fd, m)
                finally:
                    os.close(fd)
            else:
                log.debug("layer %s: skipping entry %s of type %r", self.label, name, m.type)
        finally:
            os.close(pfd)

    def whiteout(self, pfd: int, base: str, name: str) -> None:
        if base == WHITEOUT_OPAQUE:
            os.setxattr(pfd, OPAQUE_XATTR, b"y")
            return
        if base.startswith(WHITEOUT_META_PREFIX):
            return  # other aufs metadata (.wh..wh.plnk, .wh..wh.aufs): nothing to make
        target = base[len(WHITEOUT_PREFIX):]
        if target in ("", ".", ".."):
            raise self.fail(name, "is an invalid whiteout")
        self.remove_existing(pfd, target)
        os.mknod(target, stat.S_IFCHR | 0o600, os.makedev(0, 0), dir_fd=pfd)

    def hardlink(self, pfd: int, base: str, m: tarfile.TarInfo) -> None:
        tparts = self.split_link(m)
        tfd, _ = self.open_dir(tparts[:-1], m.name, create=False)
        try:
            tbase = tparts[-1]
            try:
                tst = os.stat(tbase, dir_fd=tfd, follow_symlinks=False)
            except FileNotFoundError:
                raise self.fail(m.name, f'is a hard link to "{m.linkname}" which is not in the layer') from None
            if stat.S_ISDIR(tst.st_mode):
                raise self.fail(m.name, f'is a hard link to the directory "{m.linkname}"')
            try:
                cur = os.stat(base, dir_fd=pfd, follow_symlinks=False)
                if (cur.st_dev, cur.st_ino) == (tst.st_dev, tst.st_ino):
                    return
            except FileNotFoundError:
                pass
            self.remove_existing(pfd, base)
            os.link(tbase, base, src_dir_fd=tfd, dst_dir_fd=pfd, follow_symlinks=False)
        finally:
            os.close(tfd)

    def split_link(self, m: tarfile.TarInfo) -> list[str]:
        target = m.linkname
        if target.startswith("/"):
            raise self.fail(m.name, f'is a hard link to "{target}" which escapes the root (absolute path)')
        parts = [p for p in target.split("/") if p not in ("", ".")]
        if ".." in parts:
            raise self.fail(m.name, f'is a hard link to "{target}" which escapes the root')
        if not parts:
            raise self.fail(m.name, "is a hard link to the layer root")
        return parts

    def open_nofollow(self, names: list[str]) -> int | None:
        """Open a directory by real names without following any symlink (None if it changed since)."""
        fd = os.dup(self.rootfd)
        try:
            for comp in names:
                nfd = os.open(comp, _DIR_FLAGS, dir_fd=fd)
                os.close(fd)
                fd = nfd
        except OSError:
            os.close(fd)
            return None
        return fd

    def finish(self) -> None:
        """Directory mtimes last (their children changed them), deepest first."""
        for names, t in reversed(self.dir_times):
            fd = self.open_nofollow(names)
            if fd is None:
                continue
            try:
                os.utime(fd, ns=(t, t))
            finally:
                os.close(fd)
