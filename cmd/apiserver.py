"""kubelab-apiserver: flags -> config -> wiring -> run."""
from __future__ import annotations

import argparse
import asyncio
import signal
import sys

from kubelab.apiserver.kubeletproxy import DEFAULT_ADDRESS_TYPES
from kubelab.apiserver.server import APIServer, Config, load_tokens
from kubelab import logs


def parse(argv: list[str] | None = None) -> Config:
    p = argparse.ArgumentParser(prog="kubelab-apiserver", description="The kubelab API server.")
    p.add_argument("--etcd-servers", required=True, help="comma-separated etcd client URLs")
    p.add_argument("--bind-address", default="0.0.0.0")
    p.add_argument("--secure-port", type=int, default=6443)
    p.add_argument("--advertise-address", default="127.0.0.1")
    p.add_argument("--tls-cert-file")
    p.add_argument("--tls-private-key-file")
    p.add_argument("--client-ca-file")
    p.add_argument("--token-auth-file")
    p.add_argument("--service-cluster-ip-range", default="10.96.0.0/12")
    p.add_argument("--service-node-port-range", default="30000-32767")
    p.add_argument("--anonymous-auth", default="false", choices=["true", "false"])
    p.add_argument("--kubelet-client-certificate", help="client certificate the apiserver presents to kubelets")
    p.add_argument("--kubelet-client-key", help="its private key")
    p.add_argument("--kubelet-certificate-authority",
                   help="CA file to verify the kubelets' serving certificates (unverified without it)")
    p.add_argument("--kubelet-preferred-address-types", default=",".join(DEFAULT_ADDRESS_TYPES),
                   help="node address types to reach kubelets at, first found wins")
    p.add_argument("--kubelet-port", type=int, default=10250,
                   help="kubelet port when a node reports no status.daemonEndpoints.kubeletEndpoint.Port")
    p.add_argument("-v", "--v", type=int, default=0, dest="verbosity")
    a = p.parse_args(argv)
    if bool(a.tls_cert_file) != bool(a.tls_private_key_file):
        p.error("--tls-cert-file and --tls-private-key-file go together")
    if bool(a.kubelet_client_certificate) != bool(a.kubelet_client_key):
        p.error("--kubelet-client-certificate and --kubelet-client-key go together")
    types = tuple(t.strip() for t in a.kubelet_preferred_address_types.split(",") if t.strip())
    bad = [t for t in types if t not in ("Hostname", "InternalIP", "ExternalIP", "InternalDNS", "ExternalDNS")]
    if bad or not types:
        p.error(f"--kubelet-preferred-address-types: unknown address type {bad[0] if bad else '(none)'}")
    for flag in ("kubelet_client_certificate", "kubelet_client_key", "kubelet_certificate_authority"):
        path = getattr(a, flag)
        if path:
            try:
                open(path).close()
            except OSError as e:
                p.error(f"--{flag.replace('_', '-')}: {e.strerror}: {path}")
    logs.setup("apiserver", a.verbosity)
    cfg = Config(etcd_servers=a.etcd_servers.split(","), bind_address=a.bind_address, secure_port=a.secure_port,
                 advertise_address=a.advertise_address, tls_cert_file=a.tls_cert_file,
                 tls_private_key_file=a.tls_private_key_file, client_ca_file=a.client_ca_file,
                 token_auth_file=a.token_auth_file, service_cluster_ip_range=a.service_cluster_ip_range,
                 service_node_port_range=a.service_node_port_range, anonymous_auth=a.anonymous_auth == "true",
                 kubelet_client_certificate=a.kubelet_client_certificate, kubelet_client_key=a.kubelet_client_key,
                 kubelet_certificate_authority=a.kubelet_certificate_authority,
                 kubelet_preferred_address_types=types, kubelet_port=a.kubelet_port)
    if a.token_auth_file:
        try:
            cfg.tokens = load_tokens(a.token_auth_file)
        except OSError as e:
            p.error(f"--token-auth-file: {e.strerror}: {a.token_auth_file}")
    return cfg


async def run(cfg: Config) -> None:
    server = APIServer(cfg)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
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
        print(f"kubelab-apiserver: {e}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
