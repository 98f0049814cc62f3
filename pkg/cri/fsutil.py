"""Small file-tree helpers shared by the image store and the runtime."""
from __future__ import annotations

import os
from pathlib import Path


def disk_usage(path: Path) -> tuple[int, int]:
    """(bytes in blocks, inodes) of the tree below path, as du counts them: hard links once, files
    that vanish or cannot be read while walking skipped, path itself left out."""
    seen: set[tuple[int, int]] = set()
    total = inodes = 0
    for dirpath, dirnames, filenames in os.walk(path):
        for n in dirnames + filenames:
            try:
                st = os.lstat(os.path.join(dirpath, n))
            except OSError:
                continue
            key = (st.st_dev, st.st_ino)
            if key in seen:
                continue
            seen.add(key)
            total += st.st_blocks * 512
            inodes += 1
    return total, inodes
