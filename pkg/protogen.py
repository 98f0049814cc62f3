"""Compile a directory of .proto files into committed Python modules, and check they are current.

One mechanism for every generated package of this project (``kubelab.api.pb`` from
``proto/k8s``, ``kubelab.cri.api`` from ``proto/cri``): protoc from the pinned grpcio-tools
runs with ``-I proto``, so a proto ``proto/<subdir>/x.proto`` is known as ``<subdir>/x.proto``
and the modules protoc writes import each other as ``from <subdir> import x_pb2``. Those
lines are rewritten to import from the Python package the modules are committed in.

A package's ``generate.py`` declares a :class:`ProtoSet` and calls :func:`main`.
"""
from __future__ import annotations

import argparse
import asyncio
import os
import re
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from kubelab.proc import CommandError, Result, run

REPO_ROOT = Path(__file__).resolve().parent.parent
PROTO_ROOT = REPO_ROOT / "proto"

_GENERATED_SUFFIXES = ("_pb2.py", "_pb2_grpc.py")


@dataclass(frozen=True)
class ProtoSet:
    """The protos under ``proto_root/subdir`` compiled into the Python package ``package``
    whose directory is ``out_dir``; with ``grpc`` also the ``*_pb2_grpc`` service stubs."""

    subdir: str
    package: str
    out_dir: Path
    grpc: bool = False
    proto_root: Path = PROTO_ROOT

    def sources(self) -> list[Path]:
        """The .proto files, sorted so generation is deterministic."""
        return sorted((self.proto_root / self.subdir).glob("*.proto"))

    def fix_imports(self, source: str) -> str:
        """Point protoc's ``from <subdir> import x_pb2`` lines at ``package``."""
        pattern = re.compile(rf"^from {re.escape(self.subdir)} import (\w+_pb2) as ", re.MULTILINE)
        return pattern.sub(rf"from {self.package} import \1 as ", source)


def _grpc_tools_include() -> str:
    try:
        import grpc_tools
    except ImportError:
        raise RuntimeError("grpcio-tools is not installed (pip install 'kubelab[test]')") from None

    return os.path.join(os.path.dirname(grpc_tools.__file__), "_proto")


def _run_blocking(args: list[str], cwd: str) -> Result:
    """kubelab.proc.run from synchronous code, also when an event loop is already running
    in this thread (then the command runs on a loop of its own in a worker thread)."""
    def once() -> Result:
        return asyncio.run(run(args, cwd=cwd, timeout=300, check=False))

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return once()
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(once).result()


def _generated(directory: Path) -> list[Path]:
    return sorted(p for p in directory.glob("*.py") if p.name.endswith(_GENERATED_SUFFIXES))


def generate(protos: ProtoSet, out_dir: Path | None = None) -> list[Path]:
    """Compile ``protos`` into ``out_dir`` (default: its package directory); return the files written."""
    sources = protos.sources()
    if not sources:
        raise RuntimeError(f"no .proto files under {protos.proto_root / protos.subdir}")
    out_dir = protos.out_dir if out_dir is None else out_dir
    out_dir.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    with tempfile.TemporaryDirectory() as tmp:
        args = [
            sys.executable, "-m", "grpc_tools.protoc",
            f"-I{protos.proto_root}", f"-I{_grpc_tools_include()}",
            f"--python_out={tmp}",
            *([f"--grpc_python_out={tmp}"] if protos.grpc else []),
            *[str(p.relative_to(protos.proto_root)) for p in sources],
        ]
        try:
            res = _run_blocking(args, cwd=str(protos.proto_root))
        except CommandError as e:
            raise RuntimeError(f"protoc could not run: {e}") from None
        stderr = "; ".join(res.stderr.decode(errors="replace").split("\n")).strip("; ")
        if res.returncode != 0 or stderr:
            raise RuntimeError(f"protoc failed ({res.returncode}): {stderr}")
        for src in _generated(Path(tmp) / protos.subdir):
            dest = out_dir / src.name
            dest.write_text(protos.fix_imports(src.read_text()))
            written.append(dest)
    return written


def stale_files(protos: ProtoSet) -> list[str]:
    """Names of committed modules that differ from a fresh generation (or are missing or extra)."""
    with tempfile.TemporaryDirectory() as tmp:
        fresh = {p.name: p.read_bytes() for p in generate(protos, Path(tmp))}
    committed = {p.name: p.read_bytes() for p in _generated(protos.out_dir)}
    names = sorted(set(fresh) | set(committed))
    return [n for n in names if fresh.get(n) != committed.get(n)]


def main(protos: ProtoSet, argv: list[str] | None = None, *, prog: str, description: str) -> int:
    """The command line of a package's ``generate`` module: regenerate, or ``--check`` (exit 1 if stale)."""
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument("--check", action="store_true",
                        help="only report whether the committed modules are current")
    args = parser.parse_args(argv)
    try:
        if args.check:
            stale = stale_files(protos)
            for name in stale:
                print(f"out of date: {name} (run {prog})")
            return 1 if stale else 0
        for path in generate(protos):
            print(f"wrote {path.relative_to(protos.proto_root.parent)}")
    except RuntimeError as e:
        print(f"{prog}: {e}", file=sys.stderr)
        return 1
    return 0
