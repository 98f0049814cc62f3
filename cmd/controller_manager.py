"""kubelab-controller-manager: flags -> ControllerOptions -> leader election -> the selected controllers."""
from __future__ import annotations

import argparse
import asyncio
import ipaddress
import logging
import signal
import sys
import tempfile
from pathlib import Path

from kubelab import logs

log = logging.getLogger("kubelab.controller-manager")


def _duration(text: str) -> float:
    from kubelab.api.duration import parse_duration
    try:
        return parse_duration(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _bool(text: str) -> bool:
    if text.lower() in ("true", "1", "yes"):
        return True
    if text.lower() in ("false", "0", "no"):
        return False
    raise argparse.ArgumentTypeError(f"invalid boolean {text!r}")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="kubelab-controller-manager",
                                description="kubelab's kube-controller-manager: the cluster's control loops.")
    p.add_argument("--kubeconfig", default="", help="kubeconfig with the API server and credentials")
    p.add_argument("--controllers", default="*",
                   help="comma-separated controllers to enable: '*' all on by default, 'foo' enables foo, "
                        "'-foo' disables foo")
    p.add_argument("--allocate-node-cidrs", type=_bool, nargs="?", const=True, default=False,
                   help="allocate pod CIDRs to nodes from --cluster-cidr")
    p.add_argument("--cluster-cidr", default="", help="CIDR range of the pods (comma-separated for dual stack)")
    p.add_argument("--node-cidr-mask-size", type=int, default=0, help="mask size of a node's pod CIDR (single stack)")
    p.add_argument("--node-cidr-mask-size-ipv4", type=int, default=0, help="mask size of a node's IPv4 pod CIDR")
    p.add_argument("--node-cidr-mask-size-ipv6", type=int, default=0, help="mask size of a node's IPv6 pod CIDR")
    p.add_argument("--service-cluster-ip-range", default="",
                   help="CIDR of the Services' cluster IPs (kept out of the node CIDRs)")
    p.add_argument("--leader-elect", type=_bool, nargs="?", const=True, default=True,
                   help="elect a leader before running the control loops")
    p.add_argument("--leader-elect-lease-duration", type=_duration, default=15.0)
    p.add_argument("--leader-elect-renew-deadline", type=_duration, default=10.0)
    p.add_argument("--leader-elect-retry-period", type=_duration, default=2.0)
    p.add_argument("--leader-elect-resource-name", default="kube-controller-manager")
    p.add_argument("--leader-elect-resource-namespace", default="kube-system")
    p.add_argument("--bind-address", default="0.0.0.0", help="address of the HTTPS health and metrics server")
    p.add_argument("--secure-port", type=int, default=10257, help="its port (0: no server)")
    p.add_argument("--cert-dir", default="", help="where its self-signed certificate goes (default: a temp dir)")
    p.add_argument("-v", "--v", type=int, default=0, dest="verbosity")
    return p


def parse(argv: list[str] | None) -> tuple[argparse.Namespace, object, list]:
    from kubelab.controller.manager import ControllerOptions, SelectionError, select
    p = build_parser()
    a = p.parse_args(argv)
    cidrs = [c.strip() for c in a.cluster_cidr.split(",") if c.strip()]
    for c in cidrs:
        try:
            ipaddress.ip_network(c, strict=False)
        except ValueError:
            p.error(f"--cluster-cidr: invalid CIDR {c!r}")
    svc = [c.strip() for c in a.service_cluster_ip_range.split(",") if c.strip()]
    for c in svc:
        try:
            ipaddress.ip_network(c, strict=False)
        except ValueError:
            p.error(f"--service-cluster-ip-range: invalid CIDR {c!r}")
    if a.node_cidr_mask_size and (a.node_cidr_mask_size_ipv4 or a.node_cidr_mask_size_ipv6):
        p.error("usage of --node-cidr-mask-size is not allowed with --node-cidr-mask-size-ipv4 or "
                "--node-cidr-mask-size-ipv6")
    if a.allocate_node_cidrs and not cidrs:
        p.error("--allocate-node-cidrs needs --cluster-cidr")
    v4 = a.node_cidr_mask_size_ipv4 or a.node_cidr_mask_size or 24
    v6 = a.node_cidr_mask_size_ipv6 or a.node_cidr_mask_size or 64
    opts = ControllerOptions(allocate_node_cidrs=a.allocate_node_cidrs, cluster_cidrs=cidrs,
                             node_cidr_mask_size_ipv4=v4, node_cidr_mask_size_ipv6=v6, service_cidrs=svc)
    if a.allocate_node_cidrs:
        from kubelab.controller.nodeipam.cidrset import CIDRSet, CIDRSetError
        for c in cidrs:
            try:
                CIDRSet(c, v6 if ":" in c else v4)
            except CIDRSetError as e:
                p.error(f"--cluster-cidr {c}: {e}")
    try:
        specs = select([c.strip() for c in a.controllers.split(",") if c.strip()])
    except SelectionError as e:
        p.error(f"--controllers: {e}")
    return a, opts, specs


async def _serve(a: argparse.Namespace, ready) -> tuple[object, tempfile.TemporaryDirectory | None]:
    import ssl

    from prometheus_client import REGISTRY

    from kubelab.client.healthz import health_app, metrics_app, serve
    from kubelab.pki import certs
    tmp = None
    cert_dir = Path(a.cert_dir) if a.cert_dir else None
    if cert_dir is None:
        tmp = tempfile.TemporaryDirectory(prefix="kubelab-cm-")
        cert_dir = Path(tmp.name)
    crt, key = cert_dir / "kube-controller-manager.crt", cert_dir / "kube-controller-manager.key"
    if not crt.exists():
        ca, ca_key = certs.make_ca(cn="kube-controller-manager-ca")
        c, k = certs.issue(ca, ca_key, "kube-controller-manager", sans=("localhost", "127.0.0.1"), server=True)
        certs.write(crt, c + ca, 0o644)
        certs.write(key, k)
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(str(crt), str(key))
    app = metrics_app(REGISTRY, health_app(ready, not_ready_message="not leading or informers not synced"))
    runner = await serve(app, a.bind_address, a.secure_port, ctx)
    return runner, tmp


async def run(a: argparse.Namespace, opts, specs) -> int:
    from kubelab.client.informer import SharedInformerFactory
    from kubelab.client.leaderelection import LeaderElectionConfig, LeaderElector
    from kubelab.client.rest import Client
    from kubelab.controller.manager import ControllerContext, run_controllers

    client = Client.from_kubeconfig(a.kubeconfig or None, component="kube-controller-manager")
    leading = asyncio.Event()
    runner = tmp = None
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    lost = False

    async def lead() -> None:
        leading.set()
        log.info("running controllers=%s", ",".join(s.name for s in specs))
        await run_controllers(ControllerContext(client, SharedInformerFactory(client), opts), specs)

    try:
        if a.secure_port:
            runner, tmp = await _serve(a, lambda: leading.is_set())
        if a.leader_elect:
            cfg = LeaderElectionConfig(name=a.leader_elect_resource_name, namespace=a.leader_elect_resource_namespace,
                                       lease_duration=a.leader_elect_lease_duration,
                                       renew_deadline=a.leader_elect_renew_deadline,
                                       retry_period=a.leader_elect_retry_period, release_on_cancel=True)
            elector = LeaderElector(client, cfg, on_started_leading=lead)
            work = asyncio.create_task(elector.run())
        else:
            elector = None
            work = asyncio.create_task(lead())
        stopping = asyncio.create_task(stop.wait())
        done, _ = await asyncio.wait({work, stopping}, return_when=asyncio.FIRST_COMPLETED)
        if work in done:
            lost = not stop.is_set()
            work.result()
        else:
            if elector is not None:
                elector.stop()
                try:
                    await asyncio.wait_for(asyncio.shield(work), 10)
                except asyncio.TimeoutError:
                    work.cancel()
            else:
                work.cancel()
            await asyncio.gather(work, return_exceptions=True)
        stopping.cancel()
    finally:
        if runner is not None:
            await runner.cleanup()
        if tmp is not None:
            tmp.cleanup()
        await client.close()
    if lost:
        log.error("leaderelection lost")
        return 1
    return 0


def main(argv: list[str] | None = None) -> None:
    from kubelab.client.kubeconfig import ConfigError
    a, opts, specs = parse(argv)
    logs.setup("controller-manager", a.verbosity)
    try:
        rc = asyncio.run(run(a, opts, specs))
    except (OSError, ConfigError, ValueError) as e:
        print(f"kubelab-controller-manager: {e}", file=sys.stderr)
        sys.exit(1)
    sys.exit(rc)


if __name__ == "__main__":
    main()
