"""Pure part of the certificate controllers (upstream's pkg/controller/certificates): reading a
CertificateSigningRequest, checking it against its signer's rules, issuing the certificate, and
the decisions of the approver and the cleaner.

Signers served, as kube-controller-manager's csrsigning does with --cluster-signing-cert-file:
kubernetes.io/kube-apiserver-client (client certificates for any subject),
kubernetes.io/kube-apiserver-client-kubelet (a node's client certificate: O=system:nodes,
CN=system:node:<name>, no SANs, client usages) and kubernetes.io/kubelet-serving (a node's serving
certificate: the same subject, DNS/IP SANs only, server usages). kubernetes.io/legacy-unknown is
never signed, as upstream.
"""
from __future__ import annotations

import base64
import datetime as dt
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

Obj = dict[str, Any]

CLIENT = "kubernetes.io/kube-apiserver-client"
KUBELET_CLIENT = "kubernetes.io/kube-apiserver-client-kubelet"
KUBELET_SERVING = "kubernetes.io/kubelet-serving"
SIGNERS = (CLIENT, KUBELET_CLIENT, KUBELET_SERVING)
MIN_EXPIRATION = 600
BACKDATE = dt.timedelta(minutes=5)

_KU = {"digital signature", "key encipherment"}
CLIENT_USAGES = _KU | {"client auth"}
SERVING_USAGES = _KU | {"server auth"}


class CSRError(ValueError):
    pass


def condition(csr: Obj, ctype: str) -> Obj | None:
    for c in (csr.get("status") or {}).get("conditions") or []:
        if c.get("type") == ctype and c.get("status", "True") == "True":
            return c
    return None


def state(csr: Obj) -> str:
    """pending | approved | denied | failed | issued."""
    if condition(csr, "Failed"):
        return "failed"
    if condition(csr, "Denied"):
        return "denied"
    if condition(csr, "Approved"):
        return "issued" if (csr.get("status") or {}).get("certificate") else "approved"
    return "pending"


def parse_request(csr: Obj) -> x509.CertificateSigningRequest:
    raw = (csr.get("spec") or {}).get("request") or ""
    try:
        pem = base64.b64decode(raw)
        req = x509.load_pem_x509_csr(pem)
    except (ValueError, TypeError) as e:
        raise CSRError(f"unable to parse csr: {e}") from None
    if not req.is_signature_valid:
        raise CSRError("the certificate request's signature is invalid")
    return req


def _sans(req: x509.CertificateSigningRequest) -> x509.SubjectAlternativeName | None:
    try:
        return req.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return None


def _subject(req: x509.CertificateSigningRequest) -> tuple[str, list[str]]:
    cns = req.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    orgs = [a.value for a in req.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)]
    return (str(cns[0].value) if cns else ""), [str(o) for o in orgs]


def is_kubelet_client(req: x509.CertificateSigningRequest, usages: list[str]) -> str | None:
    """None when the request is a node client certificate request, else why not (upstream's
    ValidateKubeletClientCSR)."""
    cn, orgs = _subject(req)
    if orgs != ["system:nodes"]:
        return "subject organization is not system:nodes"
    if not cn.startswith("system:node:"):
        return 'subject common name does not begin with "system:node:"'
    sans = _sans(req)
    if sans is not None and len(list(sans)):
        return "DNS, email, IP or URI subjectAltNames are not allowed"
    extra = set(usages) - CLIENT_USAGES
    if extra or "client auth" not in usages:
        return f"usages did not match {sorted(CLIENT_USAGES)}"
    return None


def validate_for_signer(csr: Obj, req: x509.CertificateSigningRequest) -> str | None:
    """None when the signer may sign it; else the Failed condition's message."""
    spec = csr.get("spec") or {}
    signer = spec.get("signerName")
    usages = list(spec.get("usages") or [])
    if signer == KUBELET_CLIENT:
        why = is_kubelet_client(req, usages)
        return f"invalid kubelet client certificate request: {why}" if why else None
    if signer == KUBELET_SERVING:
        cn, orgs = _subject(req)
        if orgs != ["system:nodes"] or not cn.startswith("system:node:"):
            return "invalid kubelet serving certificate request: the subject must be O=system:nodes, " \
                   "CN=system:node:<name>"
        sans = _sans(req)
        if sans is None or not (sans.get_values_for_type(x509.DNSName) or sans.get_values_for_type(x509.IPAddress)):
            return "invalid kubelet serving certificate request: DNS or IP subjectAltNames are required"
        if sans.get_values_for_type(x509.RFC822Name) or sans.get_values_for_type(x509.UniformResourceIdentifier):
            return "invalid kubelet serving certificate request: email and URI subjectAltNames are not allowed"
        if set(usages) - SERVING_USAGES or "server auth" not in usages:
            return f"invalid usage for kubelet serving certificate: {usages}"
        return None
    if signer == CLIENT:
        if set(usages) - CLIENT_USAGES or "client auth" not in usages:
            return f"invalid usage for client certificate: {usages}"
        return None
    return f"unsupported signer {signer!r}"


def sign(csr: Obj, req: x509.CertificateSigningRequest, ca_cert_pem: bytes, ca_key_pem: bytes,
         max_duration: float, now: dt.datetime | None = None) -> bytes:
    """The issued certificate (PEM): subject, key and SANs from the request, the usages asked for,
    valid from 5 minutes ago for min(spec.expirationSeconds, max_duration), never past the CA."""
    ca = x509.load_pem_x509_certificate(ca_cert_pem)
    ca_key = serialization.load_pem_private_key(ca_key_pem, None)
    spec = csr.get("spec") or {}
    now = now or dt.datetime.now(dt.timezone.utc)
    duration = max_duration
    if spec.get("expirationSeconds"):
        duration = min(duration, max(MIN_EXPIRATION, int(spec["expirationSeconds"])))
    not_after = min(now + dt.timedelta(seconds=duration), ca.not_valid_after_utc)
    usages = set(spec.get("usages") or [])
    b = (x509.CertificateBuilder().subject_name(req.subject).issuer_name(ca.subject).public_key(req.public_key())
         .serial_number(x509.random_serial_number()).not_valid_before(now - BACKDATE).not_valid_after(not_after)
         .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
         .add_extension(x509.KeyUsage(digital_signature="digital signature" in usages,
                                      key_encipherment="key encipherment" in usages, content_commitment=False,
                                      data_encipherment=False, key_agreement=False, key_cert_sign=False,
                                      crl_sign=False, encipher_only=False, decipher_only=False), critical=True))
    ekus = [oid for name, oid in (("client auth", ExtendedKeyUsageOID.CLIENT_AUTH),
                                  ("server auth", ExtendedKeyUsageOID.SERVER_AUTH)) if name in usages]
    if ekus:
        b = b.add_extension(x509.ExtendedKeyUsage(ekus), critical=False)
    sans = _sans(req)
    if sans is not None and len(list(sans)):
        b = b.add_extension(sans, critical=False)
    return b.sign(ca_key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)


def should_auto_approve(csr: Obj, req: x509.CertificateSigningRequest) -> bool:
    """The csrapproving rule without RBAC: a node client certificate requested by a bootstrap token
    (group system:bootstrappers) or renewed by the node itself (username equals the subject)."""
    spec = csr.get("spec") or {}
    if spec.get("signerName") != KUBELET_CLIENT:
        return False
    if is_kubelet_client(req, list(spec.get("usages") or [])) is not None:
        return False
    cn, _ = _subject(req)
    return "system:bootstrappers" in (spec.get("groups") or []) or spec.get("username") == cn


def cleanup_after(csr: Obj) -> float:
    """Seconds after creation (or after the certificate expired) that the cleaner deletes a CSR:
    1 h once approved, denied, failed or issued; 24 h while pending (upstream's csrcleaner)."""
    return 3600.0 if state(csr) != "pending" else 86400.0
