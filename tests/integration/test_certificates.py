"""CertificateSigningRequests end to end with the real kubectl: a bootstrap token's node client
request is approved automatically and signed by the cluster CA; an admin's request waits for
`kubectl certificate approve`, then is signed with the usages and lifetime it asked for; a request
its signer's rules refuse fails with SignerValidationFailure; a denied one is never signed."""
from __future__ import annotations

import asyncio
import base64
import datetime as dt
import json
import time

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from kubelab.client.kubeconfig import ClientConfig
from kubelab.client.rest import Client
from kubelab.pki import certs
from polling import wait

pytestmark = pytest.mark.integration


def csr_pem(cn: str, orgs: tuple[str, ...]) -> str:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, o) for o in orgs] +
                     [x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    req = x509.CertificateSigningRequestBuilder().subject_name(name).sign(key, hashes.SHA256())
    return base64.b64encode(req.public_bytes(serialization.Encoding.PEM)).decode()


def body(name: str, request: str, signer: str, usages: list[str], expiration: int | None = None) -> dict:
    spec = {"request": request, "signerName": signer, "usages": usages}
    if expiration:
        spec["expirationSeconds"] = expiration
    return {"apiVersion": "certificates.k8s.io/v1", "kind": "CertificateSigningRequest", "metadata": {"name": name},
            "spec": spec}


def test_csr_approval_and_signing(control_plane, kubectl, hollow_cluster, tmp_path):
    pki = control_plane.tmp / "pki"
    ca = x509.load_pem_x509_certificate((pki / "ca.crt").read_bytes())
    suffix = str(int(time.time() * 1000) % 10**8)
    client_usages = ["digital signature", "key encipherment", "client auth"]
    # a bootstrap token's identity: a client certificate in the system:bootstrappers group
    cert, key = certs.issue((pki / "ca.crt").read_bytes(), (pki / "ca.key").read_bytes(), "system:bootstrap:abcdef",
                            orgs=("system:bootstrappers",), client=True)
    (tmp_path / "boot.crt").write_bytes(cert)
    (tmp_path / "boot.key").write_bytes(key)
    cm_args = ("--cluster-signing-cert-file", str(pki / "ca.crt"), "--cluster-signing-key-file", str(pki / "ca.key"))
    with hollow_cluster("csrsigning,csrapproving,csrcleaner", nodes=1, cm_args=cm_args):
        async def bootstrap():
            cfg = ClientConfig(server=control_plane.url, certificate_authority=str(pki / "ca.crt"),
                               client_certificate=str(tmp_path / "boot.crt"), client_key=str(tmp_path / "boot.key"))
            async with Client(cfg, component="bootstrap-test") as c:
                return await c.create("certificates.k8s.io/v1", "certificatesigningrequests",
                                      body(f"node-{suffix}", csr_pem("system:node:n1", ("system:nodes",)),
                                           "kubernetes.io/kube-apiserver-client-kubelet", client_usages))
        created = asyncio.run(bootstrap())
        # the requester is the authenticated user, not what the body says
        assert created["spec"]["username"] == "system:bootstrap:abcdef"
        assert "system:bootstrappers" in created["spec"]["groups"]

        def issued(name):
            def f():
                o = kubectl.json("get", "csr", name)
                return o if (o.get("status") or {}).get("certificate") else None
            return f
        o = wait(issued(f"node-{suffix}"), 30, "the bootstrap request signed")
        appr = next(x for x in o["status"]["conditions"] if x["type"] == "Approved")
        assert appr["reason"] == "AutoApproved"
        leaf = x509.load_pem_x509_certificate(base64.b64decode(o["status"]["certificate"]))
        assert leaf.issuer == ca.subject
        assert leaf.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "system:node:n1"
        assert ExtendedKeyUsageOID.CLIENT_AUTH in leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        ca.public_key().verify(leaf.signature, leaf.tbs_certificate_bytes, ec.ECDSA(leaf.signature_hash_algorithm))

        # an admin's client certificate request waits for a human
        kubectl("create", "-f", "-", input=json.dumps(
            body(f"alice-{suffix}", csr_pem("alice", ("devs",)), "kubernetes.io/kube-apiserver-client",
                 client_usages, expiration=3600)))
        time.sleep(1.5)
        o = kubectl.json("get", "csr", f"alice-{suffix}")
        assert not (o.get("status") or {}).get("conditions") and not (o.get("status") or {}).get("certificate")
        assert "Pending" in kubectl("get", "csr", f"alice-{suffix}")
        kubectl("certificate", "approve", f"alice-{suffix}")
        o = wait(issued(f"alice-{suffix}"), 30, "alice's request signed")
        leaf = x509.load_pem_x509_certificate(base64.b64decode(o["status"]["certificate"]))
        life = leaf.not_valid_after_utc - leaf.not_valid_before_utc
        assert dt.timedelta(minutes=64) <= life <= dt.timedelta(minutes=66)      # 1 h, backdated 5 min
        assert "Approved,Issued" in kubectl("get", "csr", f"alice-{suffix}")

        # a node client request from the wrong organization fails its signer's rules
        kubectl("create", "-f", "-", input=json.dumps(
            body(f"bad-{suffix}", csr_pem("system:node:n2", ("wrong",)), "kubernetes.io/kube-apiserver-client-kubelet",
                 client_usages)))
        kubectl("certificate", "approve", f"bad-{suffix}")

        def failed():
            o = kubectl.json("get", "csr", f"bad-{suffix}")
            return next((x for x in (o.get("status") or {}).get("conditions") or [] if x["type"] == "Failed"), None)
        cond = wait(failed, 30, "the bad request failed")
        assert cond["reason"] == "SignerValidationFailure" and "system:nodes" in cond["message"]

        # denied: never signed
        kubectl("create", "-f", "-", input=json.dumps(
            body(f"deny-{suffix}", csr_pem("bob", ()), "kubernetes.io/kube-apiserver-client", client_usages)))
        kubectl("certificate", "deny", f"deny-{suffix}")
        time.sleep(1.5)
        o = kubectl.json("get", "csr", f"deny-{suffix}")
        assert not o["status"].get("certificate") and "Denied" in kubectl("get", "csr", f"deny-{suffix}")
