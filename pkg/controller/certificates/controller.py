"""The certificate controllers (upstream's csrsigning, csrapproving and csrcleaner), one workqueue
each over the shared CertificateSigningRequest informer (`csr.py` holds the rules):

* signing, with --cluster-signing-cert-file/--cluster-signing-key-file: an approved request for
  one of the three signers gets status.certificate, or the Failed condition (reason
  SignerValidationFailure) when its signer's rules refuse it;
* approving: node client certificate requests from bootstrap tokens or from the node itself get
  the Approved condition (reason AutoApproved) through the approval subresource;
* cleaning: requests are deleted an hour after they were decided, a day after they were made while
  still pending, and once their certificate has expired.
"""
from __future__ import annotations

import base64
import logging
import time
from typing import Any

from cryptography import x509

from kubelab.api.timefmt import now_rfc3339, parse_time
from kubelab.client.informer import DeletedFinalStateUnknown, SharedInformerFactory
from kubelab.client.rest import ApiError, Client, is_conflict, is_not_found
from kubelab.client.workqueue import WorkQueue, run_workers

from . import csr as c

log = logging.getLogger(__name__)

Obj = dict[str, Any]
API = "certificates.k8s.io/v1"


def _name(obj: Any) -> str:
    return (obj.obj if isinstance(obj, DeletedFinalStateUnknown) else obj)["metadata"]["name"]


class _CSRController:
    queue_name = ""

    def __init__(self, client: Client, factory: SharedInformerFactory) -> None:
        self.client = client
        self.csrs = factory.informer(API, "certificatesigningrequests")
        self.queue = WorkQueue(name=self.queue_name)

    def _enqueue(self, *objs: Any) -> None:
        self.queue.add(_name(objs[-1]))

    async def sync(self, name: str) -> float | None:
        raise NotImplementedError

    async def run(self, workers: int = 5) -> None:
        self.csrs.add_event_handler(self._enqueue, self._enqueue, None)
        if not await self.csrs.wait_for_sync():
            return
        await run_workers(self.queue, self.sync, workers, log)

    async def _write(self, obj: Obj, subresource: str) -> None:
        try:
            await self.client.update(API, "certificatesigningrequests", obj, subresource=subresource)
        except ApiError as e:
            if is_conflict(e):
                raise RuntimeError(f"csr {obj['metadata']['name']} changed meanwhile; retrying") from e
            if not is_not_found(e):
                raise


class CSRSigningController(_CSRController):
    queue_name = "certificate"

    def __init__(self, client: Client, factory: SharedInformerFactory, ca_cert_pem: bytes, ca_key_pem: bytes,
                 duration: float = 365 * 86400.0) -> None:
        super().__init__(client, factory)
        self.ca_cert_pem, self.ca_key_pem, self.duration = ca_cert_pem, ca_key_pem, duration

    async def sync(self, name: str) -> float | None:
        obj = self.csrs.get(name)
        if obj is None or c.state(obj) != "approved" or (obj.get("spec") or {}).get("signerName") not in c.SIGNERS:
            return None
        obj = dict(obj, status=dict(obj.get("status") or {}))
        try:
            req = c.parse_request(obj)
            why = c.validate_for_signer(obj, req)
        except c.CSRError as e:
            why = str(e)
        if why:
            now = now_rfc3339()
            obj["status"]["conditions"] = list(obj["status"].get("conditions") or []) + [
                {"type": "Failed", "status": "True", "reason": "SignerValidationFailure", "message": why,
                 "lastUpdateTime": now, "lastTransitionTime": now}]
            log.info("csr %s: not signed: %s", name, why)
        else:
            pem = c.sign(obj, req, self.ca_cert_pem, self.ca_key_pem, self.duration)
            obj["status"]["certificate"] = base64.b64encode(pem).decode()
            log.info("csr %s: signed for %s", name, obj["spec"]["signerName"])
        await self._write(obj, "status")
        return None


class CSRApprovingController(_CSRController):
    queue_name = "csrapproving"

    async def sync(self, name: str) -> float | None:
        obj = self.csrs.get(name)
        if obj is None or c.state(obj) != "pending":
            return None
        try:
            req = c.parse_request(obj)
        except c.CSRError:
            return None
        if not c.should_auto_approve(obj, req):
            return None
        now = now_rfc3339()
        obj = dict(obj, status=dict(obj.get("status") or {}))
        obj["status"]["conditions"] = list(obj["status"].get("conditions") or []) + [
            {"type": "Approved", "status": "True", "reason": "AutoApproved",
             "message": "Auto approving kubelet client certificate after SubjectAccessReview.",
             "lastUpdateTime": now, "lastTransitionTime": now}]
        await self._write(obj, "approval")
        return None


class CSRCleanerController(_CSRController):
    queue_name = "csrcleaner"

    async def sync(self, name: str) -> float | None:
        obj = self.csrs.get(name)
        if obj is None:
            return None
        due = (parse_time(obj["metadata"].get("creationTimestamp")) or time.time()) + c.cleanup_after(obj)
        cert = (obj.get("status") or {}).get("certificate")
        if cert:
            try:
                expiry = x509.load_pem_x509_certificate(base64.b64decode(cert)).not_valid_after_utc.timestamp()
                due = min(due, expiry)
            except ValueError:
                pass
        left = due - time.time()
        if left > 0:
            return left
        try:
            await self.client.delete(API, "certificatesigningrequests", None, name,
                                     preconditions={"uid": obj["metadata"]["uid"]})
            log.info("csr %s: cleaned up", name)
        except ApiError as e:
            if not (is_not_found(e) or is_conflict(e)):
                raise
        return None
