"""The certificate controllers' rules (signer validation, auto-approval, cleanup), from upstream's
csrsigning/csrapproving/csrcleaner cases."""
from __future__ import annotations

import base64
import ipaddress

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from kubelab.controller.certificates import csr as c

CLIENT_USAGES = ["digital signature", "key encipherment", "client auth"]


def request(cn, orgs=(), dns=(), ips=()):
    key = ec.generate_private_key(ec.SECP256R1())
    b = x509.CertificateSigningRequestBuilder().subject_name(x509.Name(
        [x509.NameAttribute(NameOID.ORGANIZATION_NAME, o) for o in orgs] + [x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
    sans = [x509.DNSName(d) for d in dns] + [x509.IPAddress(ipaddress.ip_address(i)) for i in ips]
    if sans:
        b = b.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    return base64.b64encode(b.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)).decode()


def obj(req, signer, usages, username="u", groups=()):
    return {"metadata": {"name": "x"}, "spec": {"request": req, "signerName": signer, "usages": usages,
                                                "username": username, "groups": list(groups)}}


@pytest.mark.parametrize("cn,orgs,dns,signer,usages,ok", [
    ("system:node:a", ("system:nodes",), (), c.KUBELET_CLIENT, CLIENT_USAGES, True),
    ("system:node:a", ("other",), (), c.KUBELET_CLIENT, CLIENT_USAGES, False),
    ("a", ("system:nodes",), (), c.KUBELET_CLIENT, CLIENT_USAGES, False),
    ("system:node:a", ("system:nodes",), ("a.example",), c.KUBELET_CLIENT, CLIENT_USAGES, False),
    ("system:node:a", ("system:nodes",), (), c.KUBELET_CLIENT, CLIENT_USAGES + ["server auth"], False),
    ("system:node:a", ("system:nodes",), ("a.example",), c.KUBELET_SERVING,
     ["digital signature", "key encipherment", "server auth"], True),
    ("system:node:a", ("system:nodes",), (), c.KUBELET_SERVING, ["server auth"], False),     # no SANs
    ("anyone", (), (), c.CLIENT, CLIENT_USAGES, True),
    ("anyone", (), (), c.CLIENT, ["server auth"], False),
    ("anyone", (), (), "kubernetes.io/legacy-unknown", CLIENT_USAGES, False),
])
def test_signer_rules(cn, orgs, dns, signer, usages, ok):
    o = obj(request(cn, orgs, dns), signer, usages)
    assert (c.validate_for_signer(o, c.parse_request(o)) is None) == ok


def test_auto_approval_and_states():
    req = request("system:node:a", ("system:nodes",))
    boot = obj(req, c.KUBELET_CLIENT, CLIENT_USAGES, "system:bootstrap:x", ("system:bootstrappers",))
    assert c.should_auto_approve(boot, c.parse_request(boot))
    self_renew = obj(req, c.KUBELET_CLIENT, CLIENT_USAGES, "system:node:a")
    assert c.should_auto_approve(self_renew, c.parse_request(self_renew))
    other = obj(req, c.KUBELET_CLIENT, CLIENT_USAGES, "system:node:b")
    assert not c.should_auto_approve(other, c.parse_request(other))
    assert c.state(other) == "pending" and c.cleanup_after(other) == 86400
    other["status"] = {"conditions": [{"type": "Approved", "status": "True"}]}
    assert c.state(other) == "approved" and c.cleanup_after(other) == 3600
    other["status"]["certificate"] = "x"
    assert c.state(other) == "issued"


def test_garbage_request_is_refused():
    with pytest.raises(c.CSRError):
        c.parse_request(obj(base64.b64encode(b"not a csr").decode(), c.CLIENT, CLIENT_USAGES))
