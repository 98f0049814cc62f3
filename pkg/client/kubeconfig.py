"""Kubeconfig and in-cluster configuration: where the API server is and how to authenticate.

`load_kubeconfig(path, context)` reads a kubeconfig (the `kubectl` YAML format) and returns a
`ClientConfig`; `in_cluster_config()` builds one from the service-account files a pod sees.
`ClientConfig.ssl_context()` turns the TLS settings into an `ssl.SSLContext`.

Precedence follows client-go: `*-data` fields win over their file forms; a `tokenFile` is re-read
(at most once a minute) and its last successfully read value wins over `token`. Relative file
paths in a kubeconfig are resolved against the kubeconfig's own directory.
"""
from __future__ import annotations

import base64
import binascii
import logging
import os
import ssl
import tempfile
import time
from dataclasses import dataclass, field
from typing import Any

import yaml

log = logging.getLogger(__name__)

SERVICE_ACCOUNT_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"
TOKEN_FILE_REREAD_SECONDS = 60.0


class ConfigError(Exception):
    """The kubeconfig (or in-cluster environment) is missing or invalid."""


@dataclass
class ClientConfig:
    """Everything the REST client needs to reach and authenticate to one API server.

    PEM data fields are bytes; file fields are absolute paths. `namespace` is the context's
    default namespace ("default" when unset).
    """

    server: str
    certificate_authority: str | None = None
    certificate_authority_data: bytes | None = None
    client_certificate: str | None = None
    client_certificate_data: bytes | None = None
    client_key: str | None = None
    client_key_data: bytes | None = None
    token: str | None = None
    token_file: str | None = None
    username: str | None = None
    password: str | None = None
    insecure_skip_tls_verify: bool = False
    tls_server_name: str | None = None
    namespace: str = "default"
    context: str | None = None
    cluster: str | None = None
    user: str | None = None
    _token_cache: tuple[float, str] | None = field(default=None, init=False, repr=False, compare=False)

    # -- authentication -------------------------------------------------------------

    def bearer_token(self) -> str | None:
        """The bearer token to send, re-reading `token_file` at most once a minute."""
        if self.token_file:
            now = time.monotonic()
            cached = self._token_cache
            if cached is not None and now - cached[0] < TOKEN_FILE_REREAD_SECONDS:
                return cached[1]
            try:
                with open(self.token_file, encoding="utf-8") as f:
                    value = f.read().strip()
            except OSError as e:
                log.warning("cannot read token file %s: %s", self.token_file, e)
                value = ""
            if value:
                self._token_cache = (now, value)
                return value
            if cached is not None:
                return cached[1]
        return self.token or None

    def authorization_header(self) -> str | None:
        """The value of the Authorization header, or None when the user has no token or password."""
        token = self.bearer_token()
        if token:
            return f"Bearer {token}"
        if self.username is not None and self.password is not None:
            raw = f"{self.username}:{self.password}".encode()
            return "Basic " + base64.b64encode(raw).decode("ascii")
        return None

    # -- TLS ------------------------------------------------------------------------

    @property
    def is_https(self) -> bool:
        return self.server.lower().startswith("https://")

    def ssl_context(self) -> ssl.SSLContext | None:
        """An SSLContext for this server (None for plain http).

        The CA is loaded from memory; a client certificate given as data is written to a
        private temporary file only for the duration of `load_cert_chain` (ssl needs a path).
        """
        if not self.is_https:
            return None
        try:
            return self._build_ssl_context()
        except (ssl.SSLError, OSError) as e:
            raise ConfigError(f"unable to load TLS configuration for {self.server}: {e}") from e

    def _build_ssl_context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
        if self.insecure_skip_tls_verify:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        elif self.certificate_authority_data:
            try:
                ctx.load_verify_locations(cadata=self.certificate_authority_data.decode("ascii"))
            except UnicodeDecodeError:  # DER
                ctx.load_verify_locations(cadata=self.certificate_authority_data)
        elif self.certificate_authority:
            ctx.load_verify_locations(cafile=self.certificate_authority)
        cert_data = self.client_certificate_data
        key_data = self.client_key_data
        have_cert = cert_data is not None or bool(self.client_certificate)
        have_key = key_data is not None or bool(self.client_key)
        if have_cert or have_key:
            if not (have_cert and have_key):
                raise ConfigError("client-key-data or client-key must be specified together with "
                                  "client-certificate-data or client-certificate")
            if cert_data is None and key_data is None:
                ctx.load_cert_chain(self.client_certificate, self.client_key)
            else:
                if cert_data is None:
                    cert_data = _read_bytes(self.client_certificate or "", "client-certificate")
                if key_data is None:
                    key_data = _read_bytes(self.client_key or "", "client-key")
                _load_cert_chain_from_memory(ctx, cert_data, key_data)
        return ctx


def _read_bytes(path: str, what: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as e:
        raise ConfigError(f"unable to read {what} {path}: {e.strerror or e}") from e


def _load_cert_chain_from_memory(ctx: ssl.SSLContext, cert: bytes, key: bytes) -> None:
    """ssl can only load a certificate chain from files: write both PEMs to one 0600 temp file."""
    fd, path = tempfile.mkstemp(prefix="kubelab-client-", suffix=".pem")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(cert.rstrip(b"\n") + b"\n" + key)
        ctx.load_cert_chain(path)
    finally:
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass


# -- kubeconfig ------------------------------------------------------------------------


def default_kubeconfig_paths() -> list[str]:
    """$KUBECONFIG (a path list) or ~/.kube/config."""
    env = os.environ.get("KUBECONFIG", "")
    paths = [p for p in env.split(os.pathsep) if p]
    if paths:
        return paths
    return [os.path.join(os.path.expanduser("~"), ".kube", "config")]


def _named(items: Any, kind: str, source: str) -> dict[str, dict]:
    out: dict[str, dict] = {}
    if items is None:
        return out
    if not isinstance(items, list):
        raise ConfigError(f"error loading config file {source!r}: {kind} must be a list")
    for entry in items:
        if not isinstance(entry, dict) or not entry.get("name"):
            raise ConfigError(f"error loading config file {source!r}: each entry of {kind} needs a name")
        out[str(entry["name"])] = entry
    return out


def _merge_files(paths: list[str]) -> tuple[dict, dict[str, tuple[dict, str]], dict[str, tuple[dict, str]],
                                             dict[str, tuple[dict, str]]]:
    """Merge kubeconfig files the clientcmd way: the first file to define a name wins."""
    current: str | None = None
    clusters: dict[str, tuple[dict, str]] = {}
    users: dict[str, tuple[dict, str]] = {}
    contexts: dict[str, tuple[dict, str]] = {}
    loaded = 0
    for path in paths:
        try:
            with open(path, encoding="utf-8") as f:
                doc = yaml.safe_load(f)
        except FileNotFoundError:
            if len(paths) == 1:
                raise ConfigError(f"stat {path}: no such file or directory") from None
            continue
        except yaml.YAMLError as e:
            raise ConfigError(f"error loading config file {path!r}: {e}") from e
        loaded += 1
        if doc is None:
            continue
        if not isinstance(doc, dict):
            raise ConfigError(f"error loading config file {path!r}: not a kubeconfig mapping")
        base = os.path.dirname(os.path.abspath(path))
        if current is None and doc.get("current-context"):
            current = str(doc["current-context"])
        for src, dst in (("clusters", clusters), ("users", users), ("contexts", contexts)):
            for name, entry in _named(doc.get(src), src, path).items():
                dst.setdefault(name, (entry, base))
    if loaded == 0:
        raise ConfigError("invalid configuration: no configuration has been provided")
    return {"current-context": current}, clusters, users, contexts


def _resolve(path: str | None, base: str) -> str | None:
    if not path:
        return None
    path = os.path.expanduser(str(path))
    return path if os.path.isabs(path) else os.path.join(base, path)


def _b64(value: Any, name: str) -> bytes | None:
    if value in (None, ""):
        return None
    try:
        return base64.b64decode(str(value), validate=False)
    except (binascii.Error, ValueError) as e:
        raise ConfigError(f"illegal base64 data in {name}: {e}") from e


def load_kubeconfig(path: str | list[str] | None = None, context: str | None = None) -> ClientConfig:
    """Load a kubeconfig into a ClientConfig.

    `path` is a file, a list of files (merged, first definition wins), or None for $KUBECONFIG /
    ~/.kube/config. `context` selects a named context instead of current-context.
    """
    if path is None:
        paths = default_kubeconfig_paths()
    elif isinstance(path, (list, tuple)):
        paths = [str(p) for p in path]
    else:
        paths = [str(path)]
    top, clusters, users, contexts = _merge_files(paths)
    ctx_name = context or top["current-context"]
    if not ctx_name:
        if not contexts and not clusters:
            raise ConfigError("invalid configuration: no configuration has been provided")
        raise ConfigError("invalid configuration: current-context is not set and no context was given")
    if ctx_name not in contexts:
        raise ConfigError(f'context "{ctx_name}" does not exist')
    ctx_entry = contexts[ctx_name][0].get("context") or {}
    cluster_name = ctx_entry.get("cluster")
    user_name = ctx_entry.get("user")
    if not cluster_name or cluster_name not in clusters:
        raise ConfigError(f'invalid configuration: context "{ctx_name}" refers to cluster '
                          f'"{cluster_name or ""}" which does not exist')
    cluster_entry, cluster_base = clusters[cluster_name]
    cluster = cluster_entry.get("cluster") or {}
    user: dict = {}
    user_base = cluster_base
    if user_name:
        if user_name not in users:
            raise ConfigError(f'invalid configuration: context "{ctx_name}" refers to user '
                              f'"{user_name}" which does not exist')
        user_entry, user_base = users[user_name]
        user = user_entry.get("user") or {}
    server = str(cluster.get("server") or "").rstrip("/")
    if not server:
        raise ConfigError(f'invalid configuration: no server found for cluster "{cluster_name}"')
    if "://" not in server:
        server = "https://" + server
    cfg = ClientConfig(
        server=server,
        certificate_authority=_resolve(cluster.get("certificate-authority"), cluster_base),
        certificate_authority_data=_b64(cluster.get("certificate-authority-data"),
                                        "certificate-authority-data"),
        client_certificate=_resolve(user.get("client-certificate"), user_base),
        client_certificate_data=_b64(user.get("client-certificate-data"), "client-certificate-data"),
        client_key=_resolve(user.get("client-key"), user_base),
        client_key_data=_b64(user.get("client-key-data"), "client-key-data"),
        token=(str(user["token"]) if user.get("token") else None),
        token_file=_resolve(user.get("tokenFile"), user_base),
        username=user.get("username"),
        password=user.get("password"),
        insecure_skip_tls_verify=bool(cluster.get("insecure-skip-tls-verify", False)),
        tls_server_name=cluster.get("tls-server-name") or None,
        namespace=str(ctx_entry.get("namespace") or "default"),
        context=ctx_name,
        cluster=cluster_name,
        user=user_name,
    )
    return cfg


def in_cluster_config(sa_dir: str = SERVICE_ACCOUNT_DIR) -> ClientConfig:
    """Configuration for a process running in a pod: KUBERNETES_SERVICE_HOST/PORT plus the
    mounted service-account token, CA and namespace."""
    host = os.environ.get("KUBERNETES_SERVICE_HOST", "")
    port = os.environ.get("KUBERNETES_SERVICE_PORT", "")
    if not host or not port:
        raise ConfigError("unable to load in-cluster configuration, KUBERNETES_SERVICE_HOST and "
                          "KUBERNETES_SERVICE_PORT must be defined")
    token_file = os.path.join(sa_dir, "token")
    if not os.path.exists(token_file):
        raise ConfigError(f"open {token_file}: no such file or directory")
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    ca_file = os.path.join(sa_dir, "ca.crt")
    namespace = "default"
    try:
        with open(os.path.join(sa_dir, "namespace"), encoding="utf-8") as f:
            namespace = f.read().strip() or "default"
    except OSError:
        pass
    return ClientConfig(
        server=f"https://{host}:{port}",
        certificate_authority=ca_file if os.path.exists(ca_file) else None,
        token_file=token_file,
        namespace=namespace,
        context="in-cluster",
    )
