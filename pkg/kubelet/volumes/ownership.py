"""fsGroup ownership, as upstream's volume.SetVolumeOwnership: every file and directory of the volume
gets the pod's fsGroup as its group and group permissions (rw, or r for read-only volumes such
as configMap and secret payloads; directories also x and setgid). Symlinks are not followed."""
from __future__ import annotations

import os
import stat
from pathlib import Path

RW_MASK, RO_MASK, EXEC_MASK = 0o660, 0o440, 0o110


def set_volume_ownership(root: Path, fs_group: int | None, readonly: bool) -> None:
    if fs_group is None:
        return
    _own(Path(root), fs_group, readonly)
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            _own(Path(dirpath) / name, fs_group, readonly)


def _own(path: Path, fs_group: int, readonly: bool) -> None:
    st = os.lstat(path)
    if stat.S_ISLNK(st.st_mode):
        return
    os.lchown(path, -1, fs_group)
    mask = RO_MASK if readonly else RW_MASK
    if stat.S_ISDIR(st.st_mode):
        mask |= stat.S_ISGID | EXEC_MASK
    os.chmod(path, stat.S_IMODE(st.st_mode) | mask)
