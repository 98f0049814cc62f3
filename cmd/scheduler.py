"""kubelab-scheduler: flags (+ KubeSchedulerConfiguration) -> profiles -> leader election -> Scheduler."""
from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys

from kubelab import logs
from kubelab.cliflags import add_leader_election, leader_election_config

log = logging.getLogger("kubelab.scheduler")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="kubelab-scheduler", description="kubelab's kube-scheduler: binds pods to nodes.")
    p.add_argument("--kubeconfig", default="", help="kubeconfig with the API server and credentials")
    p.add_argument("--config", default="", help="a KubeSchedulerConfiguration file (kubescheduler.config.k8s.io/v1)")
    add_leader_election(p, "kube-scheduler")
    p.add_argument("--bind-address", default="0.0.0.0", help="address of the HTTPS health and metrics server")
    p.add_argument("--secure-port", type=int, default=10259, help="its port (0: no server)")
    p.add_argument("--cert-dir", default="", help="where its self-signed certificate goes (default: a temp dir)")
    p.add_argument("-v", "--v", type=int, default=0, dest="verbosity")
    return p


async def run(a: argparse.Namespace, cfg) -> int:
    from kubelab.client.events import EventRecorder
    from kubelab.client.healthz import SecureServer
    from kubelab.client.informer import SharedInformerFactory
    from kubelab.client.leaderelection import run_until_stopped
    from kubelab.client.rest import Client
    from kubelab.scheduler.config import build_profiles
    from kubelab.scheduler.scheduler import Scheduler

    # bindings are sent concurrently: 16 in flight keeps the pool (and its TLS handshakes) small
    client = Client.from_kubeconfig(a.kubeconfig or None, component="kube-scheduler", max_inflight=16)
    leading = asyncio.Event()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    srv = None
    profiles = build_profiles(cfg, client)

    async def lead() -> None:
        leading.set()
        factory = SharedInformerFactory(client)
        recorder = EventRecorder(client, component="default-scheduler")
        sched = Scheduler(client, factory, profiles, recorder=recorder)
        factory.start()
        log.info("scheduling profiles=%s", ",".join(profiles))
        try:
            await sched.run()
        finally:
            await factory.shutdown()
            await recorder.shutdown()

    try:
        if a.secure_port:
            srv = SecureServer("kube-scheduler", a.bind_address, a.secure_port, a.cert_dir, leading.is_set)
            await srv.start()
        lost = await run_until_stopped(client, leader_election_config(a), lead, stop)
    finally:
        if srv is not None:
            await srv.stop()
        await client.close()
    if lost:
        log.error("leaderelection lost")
        return 1
    return 0


def main(argv: list[str] | None = None) -> None:
    from kubelab.client.kubeconfig import ConfigError as KubeConfigError
    from kubelab.scheduler.config import ConfigError, SchedulerConfig, build_profiles, load_config
    p = build_parser()
    a = p.parse_args(argv)
    logs.setup("scheduler", a.verbosity)
    try:
        cfg = load_config(a.config) if a.config else SchedulerConfig()
        build_profiles(cfg, None)          # the whole configuration is checked before anything starts
    except ConfigError as e:
        print(f"kubelab-scheduler: {e}", file=sys.stderr)
        sys.exit(1)
    try:
        rc = asyncio.run(run(a, cfg))
    except (OSError, KubeConfigError, ValueError) as e:
        print(f"kubelab-scheduler: {e}", file=sys.stderr)
        sys.exit(1)
    sys.exit(rc)


if __name__ == "__main__":
    main()
