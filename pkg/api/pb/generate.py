"""Regenerate the ``*_pb2`` modules of this package from ``proto/k8s/*.proto``.

Usage::

    python -m kubelab.api.pb.generate           # rewrite the committed modules
    python -m kubelab.api.pb.generate --check   # exit 1 if they are out of date

protoc (from grpcio-tools) emits ``from k8s import x_pb2`` for imports between the
proto files; those lines are rewritten to ``from kubelab.api.pb import x_pb2`` so the
modules import as part of this package (see :mod:`kubelab.protogen`).
"""
from __future__ import annotations

import sys
from pathlib import Path

from kubelab import protogen

PACKAGE = "kubelab.api.pb"
PB_DIR = Path(__file__).resolve().parent
REPO_ROOT = protogen.REPO_ROOT
PROTO_ROOT = protogen.PROTO_ROOT
PROTO_SUBDIR = "k8s"

PROTOS = protogen.ProtoSet(subdir=PROTO_SUBDIR, package=PACKAGE, out_dir=PB_DIR)


def proto_files(proto_root: Path = PROTO_ROOT) -> list[Path]:
    """The .proto sources, sorted so generation is deterministic."""
    return protogen.ProtoSet(PROTO_SUBDIR, PACKAGE, PB_DIR, proto_root=proto_root).sources()


def generate(out_dir: Path, proto_root: Path = PROTO_ROOT) -> list[Path]:
    """Compile every proto under ``proto_root/k8s`` into ``out_dir``; return the written files."""
    return protogen.generate(protogen.ProtoSet(PROTO_SUBDIR, PACKAGE, PB_DIR, proto_root=proto_root), out_dir)


def stale_files(pb_dir: Path = PB_DIR, proto_root: Path = PROTO_ROOT) -> list[str]:
    """Names of committed modules that differ from a fresh generation (or are missing/extra)."""
    return protogen.stale_files(protogen.ProtoSet(PROTO_SUBDIR, PACKAGE, pb_dir, proto_root=proto_root))


def main(argv: list[str] | None = None) -> int:
    return protogen.main(PROTOS, argv, prog="python -m kubelab.api.pb.generate",
                         description=__doc__.splitlines()[0])


if __name__ == "__main__":
    sys.exit(main())
