"""Regenerate ``health_pb2`` and ``health_pb2_grpc`` of this package from ``proto/health/health.proto``.

Usage::

    python -m kubelab.kubelet.prober.healthpb.generate           # rewrite the committed modules
    python -m kubelab.kubelet.prober.healthpb.generate --check   # exit 1 if they are out of date

The gRPC module protoc writes imports ``from health import health_pb2``; that line is rewritten
to ``from kubelab.kubelet.prober.healthpb import health_pb2`` (see :mod:`kubelab.protogen`).
"""
from __future__ import annotations

import sys
from pathlib import Path

from kubelab import protogen

PROTOS = protogen.ProtoSet(subdir="health", package="kubelab.kubelet.prober.healthpb",
                           out_dir=Path(__file__).resolve().parent, grpc=True)


def generate(out_dir: Path | None = None) -> list[Path]:
    """Compile proto/health into ``out_dir`` (default: this package); return the written files."""
    return protogen.generate(PROTOS, out_dir)


def stale_files() -> list[str]:
    """Names of committed modules that differ from a fresh generation (or are missing/extra)."""
    return protogen.stale_files(PROTOS)


def main(argv: list[str] | None = None) -> int:
    return protogen.main(PROTOS, argv, prog="python -m kubelab.kubelet.prober.healthpb.generate",
                         description=__doc__.splitlines()[0])


if __name__ == "__main__":
    sys.exit(main())
