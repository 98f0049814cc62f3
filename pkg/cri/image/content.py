"""The content-addressed blob store: root/blobs/sha256/<hex>, partial downloads in root/ingest/<hex>.

A blob only appears under blobs/ by an atomic rename after its sha256 has been checked, so a crash or a
kill at any point leaves either the whole verified blob or nothing. Temporary files carry the writer's
pid (".tmp-<pid>-<rand>") and are swept when the store is opened if that process is gone; partial
ingest files are kept so a download can resume (their bytes are verified at commit like any other).
"""
from __future__ import annotations

import asyncio
import hashlib
import os
import re
import secrets
import shutil
import time
from pathlib import Path

_HEX_RE = re.compile(r"^[a-f0-9]{64}$")
CHUNK = 1 << 20
# partial downloads nobody resumed for this long are dropped when the store is opened
INGEST_MAX_AGE = 24 * 3600


class DigestMismatch(Exception):
    """The bytes do not hash to the digest they were committed under."""


class InvalidDigest(ValueError):
    """Not a "sha256:<64 hex>" digest."""


def check_digest(digest: str) -> str:
    """Return the hex part of a "sha256:<hex>" digest, or raise InvalidDigest."""
    algo, sep, hexpart = (digest or "").partition(":")
    if algo != "sha256" or not sep or not _HEX_RE.match(hexpart):
        raise InvalidDigest(f"unsupported or malformed digest {digest!r} (only sha256:<64 hex> is accepted)")
    return hexpart


def sha256_bytes(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            h.update(chunk)
    return "sha256:" + h.hexdigest()


def tmp_name(prefix: str = "") -> str:
    """A temporary name that the sweeper can attribute to this process."""
    return f"{prefix}.tmp-{os.getpid()}-{secrets.token_hex(6)}"


def _owner_alive(name: str) -> bool:
    m = re.search(r"\.tmp-(\d+)-", name)
    if not m:
        return False
    pid = int(m.group(1))
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def sweep_tmp(directory: Path, prefix: str = "") -> list[Path]:
    """Remove "<prefix>*.tmp-<pid>-*" entries of `directory` whose process is gone. Returns what was removed."""
    removed = []
    try:
        entries = list(os.scandir(directory))
    except FileNotFoundError:
        return removed
    for e in entries:
        if e.name.startswith(prefix) and ".tmp-" in e.name and not _owner_alive(e.name):
            p = Path(e.path)
            if e.is_dir(follow_symlinks=False):
                shutil.rmtree(p, ignore_errors=True)
            else:
                p.unlink(missing_ok=True)
            removed.append(p)
    return removed


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class ContentStore:
    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.blobs = self.root / "blobs" / "sha256"
        self.ingest = self.root / "ingest"
        self.blobs.mkdir(parents=True, exist_ok=True)
        self.ingest.mkdir(parents=True, exist_ok=True)
        self._locks: dict[str, asyncio.Lock] = {}
        self.sweep()

    def sweep(self) -> list[Path]:
        """Drop leftovers of crashed writers: tmp files of dead processes, partial ingests of blobs that
        are already committed, junk names, and partials older than INGEST_MAX_AGE."""
        removed = sweep_tmp(self.ingest) + sweep_tmp(self.blobs)
        now = time.time()
        for e in list(os.scandir(self.ingest)):
            if ".tmp-" in e.name:
                continue
            p = Path(e.path)
            stale = (not _HEX_RE.match(e.name) or not e.is_file(follow_symlinks=False)
                     or (self.blobs / e.name).exists() or now - e.stat(follow_symlinks=False).st_mtime > INGEST_MAX_AGE)
            if stale:
                if e.is_dir(follow_symlinks=False):
                    shutil.rmtree(p, ignore_errors=True)
                else:
                    p.unlink(missing_ok=True)
                removed.append(p)
        return removed

    def path(self, digest: str) -> Path:
        return self.blobs / check_digest(digest)

    def has(self, digest: str) -> bool:
        return self.path(digest).is_file()

    def read(self, digest: str) -> bytes:
        try:
            return self.path(digest).read_bytes()
        except FileNotFoundError:
            raise FileNotFoundError(f"blob {digest} is not in the content store") from None

    def size(self, digest: str) -> int:
        try:
            return self.path(digest).stat().st_size
        except FileNotFoundError:
            raise FileNotFoundError(f"blob {digest} is not in the content store") from None

    def list(self) -> list[str]:
        return sorted("sha256:" + e.name for e in os.scandir(self.blobs) if _HEX_RE.match(e.name))

    def lock(self, digest: str) -> asyncio.Lock:
        """An asyncio lock per digest, for writers that share ingest_path(digest) in one process."""
        lk = self._locks.get(digest)
        if lk is None:
            lk = self._locks[digest] = asyncio.Lock()
        return lk

    def ingest_path(self, digest: str) -> Path:
        """Where a download of `digest` is written; it may already hold a prefix from an earlier try."""
        return self.ingest / check_digest(digest)

    def new_tmp(self) -> Path:
        """A fresh temporary file path in the ingest dir (for content whose digest is not known yet)."""
        return self.ingest / tmp_name()

    def write_bytes(self, data: bytes, expected: str | None = None) -> str:
        """Store data; return its digest. With `expected`, a mismatch raises DigestMismatch."""
        digest = sha256_bytes(data)
        if expected is not None:
            check_digest(expected)
            if expected != digest:
                raise DigestMismatch(f"content digest mismatch: expected {expected}, got {digest}")
        if self.has(digest):
            return digest
        tmp = self.new_tmp()
        try:
            with open(tmp, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.rename(tmp, self.path(digest))
        finally:
            tmp.unlink(missing_ok=True)
        fsync_dir(self.blobs)
        return digest

    def commit(self, digest: str, tmp: Path, size: int | None = None) -> None:
        """Verify that the file tmp hashes to digest (and has `size` bytes if given), then move it into
        place. On a mismatch tmp is deleted and DigestMismatch raised."""
        check_digest(digest)
        tmp = Path(tmp)
        try:
            if size is not None:
                actual_size = tmp.stat().st_size
                if actual_size != size:
                    raise DigestMismatch(f"content size mismatch for {digest}: expected {size} bytes, "
                                         f"got {actual_size}")
            actual = sha256_file(tmp)
            if actual != digest:
                raise DigestMismatch(f"content digest mismatch: expected {digest}, got {actual}")
            with open(tmp, "rb+") as f:
                os.fsync(f.fileno())
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        if self.has(digest):
            tmp.unlink(missing_ok=True)
            return
        os.rename(tmp, self.path(digest))
        fsync_dir(self.blobs)

    def commit_unknown(self, tmp: Path) -> str:
        """Commit a file whose digest is computed here (a trusted local source); return the digest."""
        digest = sha256_file(tmp)
        self.commit(digest, tmp)
        return digest

    def delete(self, digest: str) -> None:
        """Remove a blob (idempotent)."""
        self.path(digest).unlink(missing_ok=True)

    def usage(self) -> tuple[int, int]:
        """(bytes, files) taken by committed blobs."""
        total = n = 0
        for e in os.scandir(self.blobs):
            if _HEX_RE.match(e.name):
                total += e.stat(follow_symlinks=False).st_blocks * 512
                n += 1
        return total, n
