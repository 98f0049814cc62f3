"""Kubeconfig parsing (data and file forms, contexts, merging), credentials, TLS, in-cluster config."""
import base64
import datetime as dt
import ipaddress
import os
import ssl
import tempfile

import pytest
import yaml
from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from kubelab.client.kubeconfig import ClientConfig, ConfigError, in_cluster_config, load_kubeconfig
from kubelab.client.rest import Client


# -- certificates ------------------------------------------------------------------------

def _name(cn: str, org: str | None = None) -> x509.Name:
    attrs = [x509.NameAttribute(NameOID.COMMON_NAME, cn)]
    if org:
        attrs.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, org))
    return x509.Name(attrs)


def _pem_key(key) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _issue(ca_key, ca_name, cn, *, server=False, org=None):
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.timezone.utc)
    b = (x509.CertificateBuilder().subject_name(_name(cn, org)).issuer_name(ca_name)
         .public_key(key.public_key()).serial_number(x509.random_serial_number())
         .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=1)))
    if server:
        b = b.add_extension(x509.SubjectAlternativeName(
            [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        b = b.add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
    else:
        b = b.add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
    cert = b.sign(ca_key, hashes.SHA256())
    return cert.public_bytes(serialization.Encoding.PEM), _pem_key(key)


@pytest.fixture(scope="module")
def pki():
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = _name("kubelab-test-ca")
    now = dt.datetime.now(dt.timezone.utc)
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .sign(ca_key, hashes.SHA256()))
    ca_pem = ca.public_bytes(serialization.Encoding.PEM)
    server_cert, server_key = _issue(ca_key, ca_name, "kube-apiserver", server=True)
    client_cert, client_key = _issue(ca_key, ca_name, "admin", org="system:masters")
    return {"ca": ca_pem, "server_cert": server_cert, "server_key": server_key,
            "client_cert": client_cert, "client_key": client_key}


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def write_kubeconfig(path, doc) -> str:
    path.write_text(yaml.safe_dump(doc))
    return str(path)


def two_context_doc(**user_extra):
    return {
        "apiVersion": "v1", "kind": "Config", "current-context": "admin@lab",
        "clusters": [
            {"name": "lab", "cluster": {"server": "https://192.168.56.10:6443",
                                        "certificate-authority-data": b64(b"CA PEM")}},
            {"name": "other", "cluster": {"server": "http://127.0.0.1:8080/", "insecure-skip-tls-verify": True}},
        ],
        "users": [
            {"name": "admin", "user": {"token": "abc.def", **user_extra}},
            {"name": "viewer", "user": {"username": "jane", "password": "s3cret"}},
        ],
        "contexts": [
            {"name": "admin@lab", "context": {"cluster": "lab", "user": "admin", "namespace": "kube-system"}},
            {"name": "viewer@other", "context": {"cluster": "other", "user": "viewer"}},
        ],
    }


# -- parsing -----------------------------------------------------------------------------

def test_current_context_with_data_fields(tmp_path):
    path = write_kubeconfig(tmp_path / "config", two_context_doc())
    cfg = load_kubeconfig(path)
    assert cfg.server == "https://192.168.56.10:6443"
    assert cfg.certificate_authority_data == b"CA PEM"
    assert cfg.namespace == "kube-system"
    assert (cfg.context, cfg.cluster, cfg.user) == ("admin@lab", "lab", "admin")
    assert cfg.authorization_header() == "Bearer abc.def"


def test_named_context_overrides_current_and_namespace_defaults(tmp_path):
    path = write_kubeconfig(tmp_path / "config", two_context_doc())
    cfg = load_kubeconfig(path, context="viewer@other")
    assert cfg.server == "http://127.0.0.1:8080"
    assert cfg.insecure_skip_tls_verify is True
    assert cfg.namespace == "default"
    assert cfg.authorization_header() == "Basic " + b64(b"jane:s3cret")
    assert cfg.ssl_context() is None, "plain http needs no TLS"


def test_missing_context_and_dangling_references_are_reported(tmp_path):
    doc = two_context_doc()
    path = write_kubeconfig(tmp_path / "config", doc)
    with pytest.raises(ConfigError, match='context "nope" does not exist'):
        load_kubeconfig(path, context="nope")
    doc["contexts"].append({"name": "broken", "context": {"cluster": "gone", "user": "admin"}})
    path = write_kubeconfig(tmp_path / "config2", doc)
    with pytest.raises(ConfigError, match='cluster "gone"'):
        load_kubeconfig(path, context="broken")
    del doc["current-context"]
    path = write_kubeconfig(tmp_path / "config3", doc)
    with pytest.raises(ConfigError, match="current-context"):
        load_kubeconfig(path)
    with pytest.raises(ConfigError, match="no such file"):
        load_kubeconfig(str(tmp_path / "absent"))


def test_file_forms_resolve_relative_to_the_kubeconfig(tmp_path, pki):
    d = tmp_path / "kube"
    (d / "pki").mkdir(parents=True)
    (d / "pki" / "ca.crt").write_bytes(pki["ca"])
    (d / "pki" / "admin.crt").write_bytes(pki["client_cert"])
    (d / "pki" / "admin.key").write_bytes(pki["client_key"])
    (d / "token").write_text("file-token\n")
    doc = {
        "current-context": "c",
        "clusters": [{"name": "k", "cluster": {"server": "https://127.0.0.1:6443",
                                               "certificate-authority": "pki/ca.crt"}}],
        "users": [{"name": "u", "user": {"client-certificate": "pki/admin.crt",
                                         "client-key": str(d / "pki" / "admin.key"),
                                         "tokenFile": "token"}}],
        "contexts": [{"name": "c", "context": {"cluster": "k", "user": "u"}}],
    }
    cfg = load_kubeconfig(write_kubeconfig(d / "config", doc))
    assert cfg.certificate_authority == str(d / "pki" / "ca.crt")
    assert cfg.client_certificate == str(d / "pki" / "admin.crt")
    assert cfg.client_key == str(d / "pki" / "admin.key")
    assert cfg.token_file == str(d / "token")
    assert cfg.bearer_token() == "file-token"
    ctx = cfg.ssl_context()
    assert ctx.verify_mode == ssl.CERT_REQUIRED and ctx.check_hostname
    assert any(c["subject"] == ((("commonName", "kubelab-test-ca"),),) for c in ctx.get_ca_certs())


def test_token_file_wins_over_token_and_last_good_value_is_kept(tmp_path):
    tf = tmp_path / "tok"
    tf.write_text("from-file")
    cfg = ClientConfig(server="https://x", token="inline", token_file=str(tf))
    assert cfg.bearer_token() == "from-file"
    tf.unlink()
    cfg._token_cache = (cfg._token_cache[0] - 3600, cfg._token_cache[1])   # force a re-read
    assert cfg.bearer_token() == "from-file", "an unreadable file keeps the last good token"
    assert ClientConfig(server="https://x", token="inline", token_file=str(tmp_path / "none")).bearer_token() == "inline"


def test_kubeconfig_env_path_list_merges_first_definition_wins(tmp_path, monkeypatch):
    a = {"current-context": "a", "clusters": [{"name": "k", "cluster": {"server": "https://first:6443"}}],
         "users": [], "contexts": [{"name": "a", "context": {"cluster": "k"}}]}
    b = {"current-context": "b", "clusters": [{"name": "k", "cluster": {"server": "https://second:6443"}},
                                              {"name": "k2", "cluster": {"server": "https://k2:6443"}}],
         "users": [{"name": "u", "user": {"token": "t2"}}],
         "contexts": [{"name": "b", "context": {"cluster": "k2", "user": "u", "namespace": "web"}}]}
    pa = write_kubeconfig(tmp_path / "a", a)
    pb = write_kubeconfig(tmp_path / "b", b)
    monkeypatch.setenv("KUBECONFIG", os.pathsep.join([pa, str(tmp_path / "missing"), pb]))
    cfg = load_kubeconfig()
    assert cfg.context == "a" and cfg.server == "https://first:6443"
    cfg = load_kubeconfig(context="b")
    assert cfg.server == "https://k2:6443" and cfg.namespace == "web" and cfg.bearer_token() == "t2"


def test_insecure_skip_tls_verify_disables_verification():
    cfg = ClientConfig(server="https://10.0.0.1:6443", insecure_skip_tls_verify=True)
    ctx = cfg.ssl_context()
    assert ctx.verify_mode == ssl.CERT_NONE and not ctx.check_hostname


def test_client_cert_data_uses_private_temp_file_that_is_removed(pki, tmp_path, monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    cfg = ClientConfig(server="https://127.0.0.1:6443", certificate_authority_data=pki["ca"],
                       client_certificate_data=pki["client_cert"], client_key_data=pki["client_key"])
    seen_modes = []
    real_load = ssl.SSLContext.load_cert_chain

    def spy(self, certfile, keyfile=None, password=None):
        seen_modes.append(os.stat(certfile).st_mode & 0o777)
        return real_load(self, certfile, keyfile, password)

    monkeypatch.setattr(ssl.SSLContext, "load_cert_chain", spy)
    cfg.ssl_context()
    assert seen_modes == [0o600]
    assert list(tmp_path.iterdir()) == [], "temporary key material must be removed"


def test_half_a_client_certificate_is_an_error(pki):
    cfg = ClientConfig(server="https://127.0.0.1:6443", client_certificate_data=pki["client_cert"])
    with pytest.raises(ConfigError, match="client-key"):
        cfg.ssl_context()


def test_in_cluster_config(tmp_path, monkeypatch, pki):
    (tmp_path / "token").write_text("sa-token")
    (tmp_path / "ca.crt").write_bytes(pki["ca"])
    (tmp_path / "namespace").write_text("team-a")
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.96.0.1")
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", "443")
    cfg = in_cluster_config(str(tmp_path))
    assert cfg.server == "https://10.96.0.1:443"
    assert cfg.namespace == "team-a"
    assert cfg.authorization_header() == "Bearer sa-token"
    assert cfg.certificate_authority == str(tmp_path / "ca.crt")
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "fd00::1")
    assert in_cluster_config(str(tmp_path)).server == "https://[fd00::1]:443"
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST")
    with pytest.raises(ConfigError, match="KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT must be defined"):
        in_cluster_config(str(tmp_path))


# -- end to end: mutual TLS with a kubeconfig ---------------------------------------------

async def test_client_from_kubeconfig_speaks_mutual_tls(tmp_path, pki):
    for name in ("ca", "server_cert", "server_key"):
        (tmp_path / name).write_bytes(pki[name])
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=str(tmp_path / "ca"))
    server_ctx.load_cert_chain(str(tmp_path / "server_cert"), str(tmp_path / "server_key"))
    server_ctx.verify_mode = ssl.CERT_REQUIRED
    seen = {}

    async def handler(request):
        peer = request.transport.get_extra_info("peercert")
        seen["cn"] = dict(x[0] for x in peer["subject"])["commonName"]
        return web.json_response({"kind": "Namespace", "metadata": {"name": request.match_info["name"]}})

    app = web.Application()
    app.router.add_get("/api/v1/namespaces/{name}", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=server_ctx)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]
    try:
        doc = {
            "current-context": "lab",
            "clusters": [{"name": "lab", "cluster": {"server": f"https://127.0.0.1:{port}",
                                                     "certificate-authority-data": b64(pki["ca"])}}],
            "users": [{"name": "admin", "user": {"client-certificate-data": b64(pki["client_cert"]),
                                                 "client-key-data": b64(pki["client_key"])}}],
            "contexts": [{"name": "lab", "context": {"cluster": "lab", "user": "admin"}}],
        }
        path = write_kubeconfig(tmp_path / "config", doc)
        async with Client.from_kubeconfig(path, component="test") as c:
            ns = await c.get("v1", "namespaces", name="kube-system")
        assert ns["metadata"]["name"] == "kube-system"
        assert seen["cn"] == "admin"

        # a CA that did not sign the server certificate is refused
        other_ca = ec.generate_private_key(ec.SECP256R1())
        wrong_pem, _ = _issue(other_ca, _name("other"), "x")
        doc["clusters"][0]["cluster"]["certificate-authority-data"] = b64(wrong_pem)
        path = write_kubeconfig(tmp_path / "config-bad", doc)
        async with Client.from_kubeconfig(path, component="test", max_retries=0) as c:
            with pytest.raises(Exception) as ei:
                await c.get("v1", "namespaces", name="kube-system")
        assert "certificate" in str(ei.value).lower()
    finally:
        await runner.cleanup()
