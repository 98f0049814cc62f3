"""Regenerate the ``*_pb2`` modules of this package from ``proto/k8s/*.proto``.

Usage::

    python -m kubelab.api.pb.generate           # rewrite the committed modules
    python -m kubelab.api.pb.generate --check   # exit 1 if they are out of date

protoc (from grpcio-tools) emits ``from k8s import x_pb2`` for imports between the
proto files; those lines are rewritten to ``from kubelab.api.pb import x_pb2`` so the
modules import as part of this package.
"""
from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

PACKAGE = "kubelab.api.pb"
PB_DIR = Path(__file__).resolve().parent
REPO_ROOT = PB_DIR.parents[2]
PROTO_ROOT = REPO_ROOT / "proto"
PROTO_SUBDIR = "k8s"

_IMPORT_RE = re.compile(rf"^from {PROTO_SUBDIR} import (\w+_pb2) as ", re.MULTILINE)


def proto_files(proto_root: Path = PROTO_ROOT) -> list[Path]:
    """The .proto sources, sorted so generation is deterministic."""
    return sorted((proto_root / PROTO_SUBDIR).glob("*.proto"))


def _grpc_tools_include() -> str:
    import grpc_tools

    return os.path.join(os.path.dirname(grpc_tools.__file__), "_proto")


def _fix_imports(source: str) -> str:
    return _IMPORT_RE.sub(rf"from {PACKAGE} import \1 as ", source)


def generate(out_dir: Path, proto_root: Path = PROTO_ROOT) -> list[Path]:
    """Compile every proto under ``proto_root/k8s`` into ``out_dir``; return the written files."""
    protos = proto_files(proto_root)
    if not protos:
        raise RuntimeError(f"no .proto files under {proto_root / PROTO_SUBDIR}")
    out_dir.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [
            sys.executable, "-m", "grpc_tools.protoc",
            f"-I{proto_root}", f"-I{_grpc_tools_include()}",
            f"--python_out={tmp}",
            *[str(p.relative_to(proto_root)) for p in protos],
        ]
        proc = subprocess.run(cmd, cwd=proto_root, capture_output=True, text=True)
        if proc.returncode != 0 or proc.stderr.strip():
            raise RuntimeError(f"protoc failed ({proc.returncode}): {proc.stderr.strip()}")
        for src in sorted((Path(tmp) / PROTO_SUBDIR).glob("*_pb2.py")):
            dest = out_dir / src.name
            dest.write_text(_fix_imports(src.read_text()))
            written.append(dest)
    return written


def stale_files(pb_dir: Path = PB_DIR, proto_root: Path = PROTO_ROOT) -> list[str]:
    """Names of committed modules that differ from a fresh generation (or are missing/extra)."""
    with tempfile.TemporaryDirectory() as tmp:
        fresh = {p.name: p.read_bytes() for p in generate(Path(tmp), proto_root)}
    committed = {p.name: p.read_bytes() for p in pb_dir.glob("*_pb2.py")}
    names = sorted(set(fresh) | set(committed))
    return [n for n in names if fresh.get(n) != committed.get(n)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m kubelab.api.pb.generate", description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only report whether the committed modules are current")
    args = parser.parse_args(argv)
    if args.check:
        stale = stale_files()
        for name in stale:
            print(f"out of date: {name}")
        return 1 if stale else 0
    for path in generate(PB_DIR):
        print(f"wrote {path.relative_to(REPO_ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
