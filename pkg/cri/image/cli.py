"""`kubelab images ...`: build images from Debian packages, import archives into a kubelab-cri root, list.

    kubelab images build NAME [-o FILE] [--cache-dir DIR]
    kubelab images import FILE [--root DIR] [--base-name REPO]
    kubelab images list [--root DIR]
"""
from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

from kubelab.proc import CommandError
from kubelab.cri.image.archive import ArchiveError, import_archive
from kubelab.cri.image.build import DEFAULT_CACHE, IMAGES, BuildError, build
from kubelab.cri.image.content import DigestMismatch, InvalidDigest
from kubelab.cri.image.reference import InvalidReference, parse
from kubelab.cri.image.store import ImageError, ImageStore
from kubelab.cri.image.unpack import LayerError

DEFAULT_ROOT = Path("/var/lib/kubelab-cri")
_ERRORS = (BuildError, ArchiveError, ImageError, LayerError, CommandError, DigestMismatch, InvalidDigest,
           InvalidReference, OSError)


def _human(n: int) -> str:
    size = float(n)
    for unit in ("B", "kB", "MB", "GB"):
        if size < 1000 or unit == "GB":
            return f"{size:.0f}{unit}" if unit == "B" else f"{size:.3g}{unit}"
        size /= 1000
    return f"{n}B"  # pragma: no cover


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="kubelab images", description="Build, import and list container images.")
    sub = p.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("build", help="build a small image from Debian packages into an OCI layout tar")
    b.add_argument("name", choices=IMAGES)
    b.add_argument("-o", "--output", type=Path, help="the archive to write (default ./NAME.tar)")
    b.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE, help=f"package and image cache ({DEFAULT_CACHE})")
    i = sub.add_parser("import", help="import an OCI layout (tar or dir) or a docker save archive")
    i.add_argument("file", type=Path)
    i.add_argument("--root", type=Path, default=DEFAULT_ROOT, help=f"kubelab-cri root dir ({DEFAULT_ROOT})")
    i.add_argument("--base-name", help="repository for entries named only by a tag (e.g. docker.io/library/app)")
    ls = sub.add_parser("list", help="list the images of a kubelab-cri root dir")
    ls.add_argument("--root", type=Path, default=DEFAULT_ROOT, help=f"kubelab-cri root dir ({DEFAULT_ROOT})")
    return p


def images_main(argv: list[str]) -> int:
    """Run `kubelab images ARGV`; returns the exit status (errors are one line on stderr)."""
    try:
        a = _parser().parse_args(argv)
    except SystemExit as e:
        return int(e.code or 0) if not isinstance(e.code, str) else 2
    try:
        if a.cmd == "build":
            out = a.output or Path(f"{a.name}.tar")
            path = asyncio.run(build(a.name, out, a.cache_dir))
            print(f"built {a.name}: {path}")
        elif a.cmd == "import":
            if a.base_name:
                parse(a.base_name, default_tag=False)
            store = ImageStore(a.root)
            images = asyncio.run(import_archive(store, a.file, base_name=a.base_name))
            for img in images:
                names = ", ".join(img.repo_tags) or "<untagged>"
                print(f"imported {names} {img.id}")
        else:
            if not a.root.is_dir():
                print(f"kubelab images: {a.root}: no such directory (not a kubelab-cri root)", file=sys.stderr)
                return 1
            store = ImageStore(a.root)
            rows = [("IMAGE", "TAG", "IMAGE ID", "SIZE")]
            for img in store.list():
                short = img.id.split(":", 1)[1][:13]
                tags = img.repo_tags or [""]
                for t in tags:
                    repo, _, tag = t.rpartition(":") if t else ("<none>", "", "<none>")
                    rows.append((repo, tag, short, _human(img.size)))
            widths = [max(len(r[c]) for r in rows) for c in range(3)]
            for r in rows:
                print("   ".join(r[c].ljust(widths[c]) for c in range(3)) + "   " + r[3])
        return 0
    except KeyboardInterrupt:
        print("kubelab images: interrupted", file=sys.stderr)
        return 130
    except _ERRORS as e:
        msg = str(e) or type(e).__name__
        if isinstance(e, OSError) and e.filename and e.strerror:
            msg = f"{e.filename}: {e.strerror}"
        print(f"kubelab images {a.cmd}: {msg}", file=sys.stderr)
        return 1
