"""kubelab-cri: flags -> RuntimeConfig -> CRIServer -> serve until SIGTERM."""
from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from pathlib import Path

from kubelab import logs
from kubelab.cri.runtime.config import RuntimeConfig


def parse(argv: list[str] | None = None) -> RuntimeConfig:
    d = RuntimeConfig()
    p = argparse.ArgumentParser(prog="kubelab-cri", description="The kubelab container runtime: CRI v1 over "
                                                                "conmon and runc, images from OCI registries.")
    p.add_argument("--listen", default=d.listen, help="unix socket to serve CRI on")
    p.add_argument("--root", type=Path, default=d.root, help="persistent state: images, snapshots, records")
    p.add_argument("--runroot", type=Path, default=d.runroot, help="volatile state: bundles, runc, exits")
    p.add_argument("--netns-dir", type=Path, default=None, help="where pod network namespaces are pinned "
                                                                "(default <runroot>/netns)")
    p.add_argument("--cni-config-dir", type=Path, default=d.cni_config_dir)
    p.add_argument("--cni-plugin-dir", action="append", default=None,
                   help="directory of CNI plugins (repeatable or colon-separated; default /opt/cni/bin:/usr/lib/cni)")
    p.add_argument("--runtime", default=d.runtime, help="path of runc")
    p.add_argument("--conmon", default=d.conmon, help="path of conmon")
    p.add_argument("--cgroup-parent", default=d.cgroup_parent,
                   help="cgroup parent for sandboxes the kubelet gives none")
    p.add_argument("--stream-address", default=d.stream_address)
    p.add_argument("--stream-port", type=int, default=d.stream_port)
    p.add_argument("--registry-mirror", action="append", default=[], metavar="HOST=URL",
                   help="mirror for a registry host, e.g. docker.io=http://127.0.0.1:5000 (repeatable)")
    p.add_argument("--insecure-registry", action="append", default=[], metavar="HOST",
                   help="registry host reached over plain HTTP or unverified TLS (repeatable)")
    p.add_argument("-v", "--v", type=int, default=0, dest="verbosity")
    a = p.parse_args(argv)
    mirrors: dict[str, list[str]] = {}
    for m in a.registry_mirror:
        host, sep, url = m.partition("=")
        if not sep or not host or not url:
            p.error(f"--registry-mirror wants HOST=URL, got {m!r}")
        mirrors.setdefault(host, []).append(url)
    dirs = [Path(x) for arg in (a.cni_plugin_dir or []) for x in arg.split(":") if x] or d.cni_plugin_dirs
    logs.setup("cri", a.verbosity)
    return RuntimeConfig(root=a.root, runroot=a.runroot, listen=a.listen, netns_dir=a.netns_dir,
                         cni_config_dir=a.cni_config_dir, cni_plugin_dirs=dirs, runtime=a.runtime, conmon=a.conmon,
                         cgroup_parent=a.cgroup_parent, stream_address=a.stream_address, stream_port=a.stream_port,
                         registry_mirrors=mirrors, insecure_registries=set(a.insecure_registry))


async def run(cfg: RuntimeConfig) -> None:
    from kubelab.cri.server import CRIServer
    loop = asyncio.get_running_loop()
    if sys.version_info < (3, 12) and hasattr(asyncio, "PidfdChildWatcher"):
        # every pod start runs several commands: wait for them on pidfds, not a thread per child
        # (3.12 does this by itself)
        watcher = asyncio.PidfdChildWatcher()
        watcher.attach_loop(loop)
        asyncio.set_child_watcher(watcher)
    server = CRIServer(cfg)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await server.start()
    await stop.wait()
    await server.stop()


def main(argv: list[str] | None = None) -> None:
    cfg = parse(argv)
    try:
        asyncio.run(run(cfg))
    except OSError as e:
        print(f"kubelab-cri: {e}", file=sys.stderr)
        sys.exit(1)
