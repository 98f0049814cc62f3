"""Two small per-namespace controllers, as upstream's:

- serviceaccount-controller: every active namespace has the ServiceAccount "default" (recreated
  if deleted);
- root-ca-certificate-publisher: every active namespace has the ConfigMap "kube-root-ca.crt"
  holding the cluster CA (--root-ca-file) under "ca.crt", kept equal to it.
"""
from __future__ import annotations

import logging
from typing import Any

from kubelab.client.informer import DeletedFinalStateUnknown, SharedInformerFactory
from kubelab.client.rest import ApiError, Client, is_already_exists, is_not_found
from kubelab.client.workqueue import WorkQueue, run_workers

log = logging.getLogger(__name__)

Obj = dict[str, Any]

SA_NAME = "serviceaccount-controller"
ROOT_CA_NAME = "root-ca-certificate-publisher"
ROOT_CA_CONFIGMAP = "kube-root-ca.crt"
ROOT_CA_ANNOTATION = "kubernetes.io/description"
ROOT_CA_DESCRIPTION = ("Contains a CA bundle that can be used to verify the kube-apiserver when using internal "
                       "endpoints such as the internal service IP or kubernetes.default.svc. No other usage is "
                       "guaranteed across distributions of Kubernetes clusters.")


def _ns_of(obj: Any) -> str:
    obj = obj.obj if isinstance(obj, DeletedFinalStateUnknown) else obj
    return obj["metadata"].get("namespace") or obj["metadata"]["name"]


class _PerNamespace:
    """A workqueue of namespace names fed by the namespace informer and one other informer."""

    def __init__(self, client: Client, factory: SharedInformerFactory, resource: tuple[str, str], name: str) -> None:
        self.client = client
        self.namespaces = factory.informer("v1", "namespaces")
        self.objects = factory.informer(*resource)
        self.queue = WorkQueue(name=name)

    def _enqueue(self, *objs: Any) -> None:
        self.queue.add(_ns_of(objs[-1]))

    def _active(self, ns: str) -> bool:
        n = self.namespaces.get(ns)
        return n is not None and not n["metadata"].get("deletionTimestamp") and \
            (n.get("status") or {}).get("phase", "Active") == "Active"

    async def sync(self, ns: str) -> None:
        raise NotImplementedError

    async def _sync_active(self, ns: str) -> None:
        if self._active(ns):
            await self.sync(ns)

    async def run(self, workers: int = 2) -> None:
        self.namespaces.add_event_handler(self._enqueue, self._enqueue, None)
        self.objects.add_event_handler(None, self._enqueue, self._enqueue)
        for inf in (self.namespaces, self.objects):
            if not await inf.wait_for_sync():
                return
        await run_workers(self.queue, self._sync_active, workers, log)


class ServiceAccountController(_PerNamespace):
    def __init__(self, client: Client, factory: SharedInformerFactory) -> None:
        super().__init__(client, factory, ("v1", "serviceaccounts"), "serviceaccount")

    async def sync(self, ns: str) -> None:
        if self.objects.get(f"{ns}/default") is not None:
            return
        try:
            await self.client.create("v1", "serviceaccounts", {"apiVersion": "v1", "kind": "ServiceAccount",
                                                               "metadata": {"name": "default", "namespace": ns}}, ns)
        except ApiError as e:
            if not (is_already_exists(e) or is_not_found(e) or e.code == 403):   # 403: the namespace is terminating
                raise


class RootCAPublisher(_PerNamespace):
    def __init__(self, client: Client, factory: SharedInformerFactory, ca_pem: str) -> None:
        super().__init__(client, factory, ("v1", "configmaps"), "root-ca-cert-publisher")
        self.ca = ca_pem

    def _enqueue(self, *objs: Any) -> None:
        obj = objs[-1]
        obj = obj.obj if isinstance(obj, DeletedFinalStateUnknown) else obj
        if obj["metadata"].get("namespace") and obj["metadata"]["name"] != ROOT_CA_CONFIGMAP:
            return          # another ConfigMap
        self.queue.add(_ns_of(obj))

    async def sync(self, ns: str) -> None:
        cm = self.objects.get(f"{ns}/{ROOT_CA_CONFIGMAP}")
        want = {"ca.crt": self.ca}
        try:
            if cm is None:
                await self.client.create("v1", "configmaps", {
                    "apiVersion": "v1", "kind": "ConfigMap",
                    "metadata": {"name": ROOT_CA_CONFIGMAP, "namespace": ns,
                                 "annotations": {ROOT_CA_ANNOTATION: ROOT_CA_DESCRIPTION}},
                    "data": want}, ns)
            elif cm.get("data") != want:
                await self.client.update("v1", "configmaps", dict(cm, data=want), ns)
        except ApiError as e:
            if not (is_already_exists(e) or is_not_found(e) or e.code == 403):
                raise
