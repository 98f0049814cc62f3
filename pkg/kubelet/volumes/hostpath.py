"""hostPath type checks, as upstream's hostPath volume plugin (pkg/volume/hostpath checkType):
DirectoryOrCreate makes the directory (0755) and FileOrCreate the file (0644) when missing; the
other types only check, with upstream's messages (`hostPath type check failed: <path> is not a
directory`, ...). An empty type checks nothing."""
from __future__ import annotations

import os
import stat

TYPES = ("", "DirectoryOrCreate", "Directory", "FileOrCreate", "File", "Socket", "CharDevice", "BlockDevice")


class HostPathError(Exception):
    """A failed type check (upstream's message)."""


def _mode(path: str) -> int | None:
    try:
        return os.stat(path).st_mode
    except OSError:
        return None


def check_type(path: str, path_type: str | None) -> None:
    """Check (and for the *OrCreate types make) `path` as hostPath type `path_type` asks."""
    t = path_type or ""
    mode = _mode(path)
    if t == "":
        return
    if t == "DirectoryOrCreate":
        if mode is None:
            try:
                os.makedirs(path, 0o755, exist_ok=True)
            except OSError as e:
                raise HostPathError(f"mkdir {path}: {e.strerror}") from None
            return
        t = "Directory"
    if t == "FileOrCreate":
        if mode is None:
            try:
                fd = os.open(path, os.O_CREAT | os.O_RDONLY, 0o644)
                os.close(fd)
            except OSError as e:
                raise HostPathError(f"open {path}: {e.strerror}") from None
            return
        t = "File"
    checks = {
        "Directory": (stat.S_ISDIR, "a directory"),
        "File": (stat.S_ISREG, "a file"),
        "Socket": (stat.S_ISSOCK, "a socket file"),
        "CharDevice": (stat.S_ISCHR, "a character device"),
        "BlockDevice": (stat.S_ISBLK, "a block device"),
    }
    if t not in checks:
        raise HostPathError(f"{path_type} is an invalid volume type")
    test, what = checks[t]
    if mode is None or not test(mode):
        raise HostPathError(f"hostPath type check failed: {path} is not {what}")
