"""Upstream's AtomicWriter (pkg/volume/util/atomic_writer.go): the payload of a configMap, secret,
downwardAPI or projected volume is written into a fresh timestamped directory
(`..2006_01_02_15_04_05.<random>`, mode 0755), then the `..data` symlink is swapped to it through
a rename of `..data_tmp`, so readers see the old payload or the new one, never a mix. Each
top-level path of the payload is a user-visible symlink `<name> -> ..data/<name>`; paths that left
the payload lose theirs, and the previous timestamped directory is removed.

    changed = AtomicWriter(volume_dir).write({"key": FileProjection(b"value", 0o644)})
"""
from __future__ import annotations

import os
import posixpath
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

MAX_PATH_LENGTH = 4096
MAX_FILE_NAME_LENGTH = 255
DATA_DIR_NAME = "..data"
NEW_DATA_DIR_NAME = "..data_tmp"


@dataclass(frozen=True)
class FileProjection:
    data: bytes
    mode: int = 0o644


class PayloadError(ValueError):
    """An invalid payload path (upstream's message)."""


def validate_path(target: str) -> None:
    """validatePath: relative, no `..` element, not starting with `..`, within the length limits."""
    if target == "":
        raise PayloadError(f'invalid path: must not be empty: ""')
    if target.startswith("/"):
        raise PayloadError(f"invalid path: must be relative path: {target}")
    if len(target) > MAX_PATH_LENGTH:
        raise PayloadError(f"invalid path: must be less than or equal to {MAX_PATH_LENGTH} characters")
    items = target.split("/")
    for item in items:
        if item == "..":
            raise PayloadError(f"invalid path: must not contain '..': {target}")
        if len(item) > MAX_FILE_NAME_LENGTH:
            raise PayloadError(f"invalid path: filenames must be less than or equal to {MAX_FILE_NAME_LENGTH} "
                               "characters")
    if items[0].startswith("..") and len(items[0]) > 2:
        raise PayloadError(f"invalid path: must not start with '..': {target}")


def validate_payload(payload: dict[str, FileProjection]) -> dict[str, FileProjection]:
    """validatePayload: every path checked, then cleaned (path.Clean)."""
    out: dict[str, FileProjection] = {}
    for k, v in payload.items():
        validate_path(k)
        out[posixpath.normpath(k)] = v
    return out


def _files_under(root: Path) -> dict[str, Path]:
    out: dict[str, Path] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for f in filenames:
            p = Path(dirpath) / f
            out[str(p.relative_to(root))] = p
        for d in dirnames:
            p = Path(dirpath) / d
            out[str(p.relative_to(root))] = p
    return out


class AtomicWriter:
    """Writes payloads into `target_dir` (which must exist) as upstream's AtomicWriter."""

    def __init__(self, target_dir: Path) -> None:
        self.target_dir = Path(target_dir)

    def current_dir(self) -> Path | None:
        link = self.target_dir / DATA_DIR_NAME
        try:
            return self.target_dir / os.readlink(link)
        except OSError:
            return None

    def read(self) -> dict[str, FileProjection]:
        """The payload currently visible (paths relative to the volume)."""
        cur = self.current_dir()
        if cur is None or not cur.is_dir():
            return {}
        out = {}
        for rel, p in _files_under(cur).items():
            if p.is_file() and not p.is_symlink():
                out[rel] = FileProjection(p.read_bytes(), p.stat().st_mode & 0o7777)
        return out

    def _should_write(self, payload: dict[str, FileProjection], cur: Path | None, perms_hook: bool) -> bool:
        if cur is None or not cur.is_dir():
            return True
        old = self.read()
        if set(old) != set(payload):
            return True
        if perms_hook:      # modes are the hook's business then: compare contents only, as upstream
            return any(old[k].data != v.data for k, v in payload.items())
        return any(old[k] != v for k, v in payload.items())

    def write(self, payload: dict[str, FileProjection], set_perms: Callable[[Path], None] | None = None) -> bool:
        """Make `payload` the volume's content; False when it already was (nothing written).
        `set_perms` is called on the new timestamped directory before the swap (upstream's hook,
        used for fsGroup ownership)."""
        clean = validate_payload(payload)
        cur = self.current_dir()
        if not self._should_write(clean, cur, set_perms is not None):
            # still make sure the user-visible links exist (a crash between swap and links)
            self._create_user_visible(clean)
            return False
        old_paths = set(_files_under(cur)) if cur is not None and cur.is_dir() else set()
        ts_dir = Path(tempfile.mkdtemp(prefix=time.strftime("..%Y_%m_%d_%H_%M_%S.", time.gmtime()),
                                       dir=self.target_dir))
        try:
            os.chmod(ts_dir, 0o755)
            for rel, fp in clean.items():
                dest = ts_dir / rel
                dest.parent.mkdir(parents=True, exist_ok=True)
                fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, fp.mode & 0o7777)
                with os.fdopen(fd, "wb") as f:
                    f.write(fp.data)
                os.chmod(dest, fp.mode & 0o7777)
            if set_perms is not None:
                set_perms(ts_dir)
            tmp_link = self.target_dir / NEW_DATA_DIR_NAME
            try:
                tmp_link.unlink()
            except FileNotFoundError:
                pass
            os.symlink(ts_dir.name, tmp_link)
            os.rename(tmp_link, self.target_dir / DATA_DIR_NAME)
        except BaseException:
            shutil.rmtree(ts_dir, ignore_errors=True)
            raise
        self._create_user_visible(clean)
        new_top = {k.split("/")[0] for k in clean}
        for rel in old_paths:
            top = rel.split("/")[0]
            if "/" not in rel and top not in new_top:
                try:
                    os.unlink(self.target_dir / top)
                except FileNotFoundError:
                    pass
        if cur is not None and cur.parent == self.target_dir and cur.name.startswith(".."):
            shutil.rmtree(cur, ignore_errors=True)
        return True

    def _create_user_visible(self, payload: dict[str, FileProjection]) -> None:
        for top in sorted({k.split("/")[0] for k in payload}):
            link = self.target_dir / top
            want = posixpath.join(DATA_DIR_NAME, top)
            try:
                if os.readlink(link) == want:
                    continue
                os.unlink(link)
            except FileNotFoundError:
                pass
            except OSError:          # a file or directory in the way
                if link.is_dir() and not link.is_symlink():
                    shutil.rmtree(link)
                else:
                    link.unlink()
            os.symlink(want, link)
