"""kubelab-apiserver: flags -> config -> wiring -> run."""
from __future__ import annotations

import argparse
import asyncio
import signal
import sys

from kubelab.apiserver.kubeletproxy import DEFAULT_ADDRESS_TYPES
from kubelab.apiserver.server import APIServer, Config, load_tokens
from kubelab import logs
from kubelab.apiserver.admission import plugins_from_flags
from kubelab.apiserver.server import APIServer, Config, load_tokens
from kubelab.apiserver.serviceaccounts import (DEFAULT_ISSUER, JWKS_PATH, MAX_EXPIRATION, KeyFileError,
                                               ServiceAccountTokens, load_public_keys, load_signing_key)
from kubelab.cliflags import add_bool, duration


def _list(values: list[str] | None) -> list[str]:
    """A repeatable comma-separated flag (pflag's StringSlice)."""
    return [x.strip() for v in values or [] for x in v.split(",") if x.strip()]


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
    p.add_argument("--service-account-issuer", action="append", default=None,
                   help="identifier of the service account token issuer (repeatable; the first one signs)")
    p.add_argument("--service-account-key-file", action="append", default=None,
                   help="PEM file of keys that verify service account tokens (repeatable)")
    p.add_argument("--service-account-signing-key-file", help="the private key that signs service account tokens")
    p.add_argument("--service-account-max-token-expiration", type=duration, default=0.0,
                   help="the longest validity of a token TokenRequest issues")
    add_bool(p, "--service-account-extend-token-expiration", True,
             "pod-bound projected tokens of 3607 s live a year and warn after 3607 s")
    p.add_argument("--service-account-jwks-uri", default="", help="jwks_uri in the OIDC discovery document")
    p.add_argument("--api-audiences", action="append", default=None,
                   help="audiences of the API (default: the service account issuers)")
    p.add_argument("--enable-admission-plugins", action="append", default=None,
                   help="admission plugins to enable besides the default ones")
    p.add_argument("--disable-admission-plugins", action="append", default=None,
                   help="admission plugins to disable though on by default")
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
    try:
        cfg.admission_plugins = plugins_from_flags(_list(a.enable_admission_plugins), _list(a.disable_admission_plugins))
    except ValueError as e:
        p.error(str(e))
    cfg.service_accounts = _service_accounts(p, a)
    return cfg


def _service_accounts(p: argparse.ArgumentParser, a: argparse.Namespace) -> ServiceAccountTokens:
    """As kube-apiserver's options: keys from the files, audiences default to the issuers."""
    issuers = [i for i in (a.service_account_issuer or [DEFAULT_ISSUER]) if i]
    if not issuers:
        p.error("service-account-issuer is a required flag")
    if a.service_account_signing_key_file and not a.service_account_key_file:
        p.error("service-account-key-file is a required flag")
    max_exp = int(a.service_account_max_token_expiration)
    if max_exp and not 3600 <= max_exp <= MAX_EXPIRATION:
        p.error("the service-account-max-token-expiration must be between 1 hour and 2^32 seconds")
    try:
        public = [k for f in a.service_account_key_file or [] for k in load_public_keys(f)]
        signing = load_signing_key(a.service_account_signing_key_file) if a.service_account_signing_key_file \
            else None
    except KeyFileError as e:
        p.error(str(e))
    jwks_uri = a.service_account_jwks_uri or f"https://{a.advertise_address}:{a.secure_port}{JWKS_PATH}"
    return ServiceAccountTokens(issuers=issuers, public_keys=public, signing_key=signing,
                                api_audiences=_list(a.api_audiences), max_expiration=max_exp,
                                extend_expiration=a.service_account_extend_token_expiration, jwks_uri=jwks_uri)


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
