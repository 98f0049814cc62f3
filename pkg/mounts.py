"""mount(2) and umount2(2) called directly: a pod start makes several mounts, and forking a
`mount` process for each costs milliseconds that a syscall does not."""
from __future__ import annotations

import ctypes
import errno
import os

MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 0x1, 0x2, 0x4, 0x8
MS_REMOUNT, MS_BIND, MS_PRIVATE = 0x20, 0x1000, 1 << 18
MNT_DETACH = 2
PAGE = os.sysconf("SC_PAGE_SIZE")

_libc = ctypes.CDLL(None, use_errno=True)
_libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p]
_libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]


def mount(source: str, target: str, fstype: str | None, flags: int = 0, data: str | None = None) -> None:
    """mount(2); raises OSError naming the target."""
    d = data.encode() if data is not None else None
    if d is not None and len(d) >= PAGE:
        raise OSError(errno.E2BIG, f"mount options longer than a page ({len(d)} bytes)", target)
    if _libc.mount(source.encode(), str(target).encode(), fstype.encode() if fstype else None, flags, d) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"mount {fstype or 'bind'} {source} on {target}: {os.strerror(err)}", str(target))


def umount(target: str, detach: bool = True) -> bool:
    """umount2(2); False if nothing was mounted there (or it does not exist)."""
    if _libc.umount2(str(target).encode(), MNT_DETACH if detach else 0) != 0:
        err = ctypes.get_errno()
        if err in (errno.EINVAL, errno.ENOENT):
            return False
        raise OSError(err, f"umount {target}: {os.strerror(err)}", str(target))
    return True
