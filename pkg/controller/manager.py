"""What kubelab-controller-manager runs: the registry of controllers, upstream's --controllers
selection, and one shared informer factory under one leader election.

A controller is registered with a name (upstream's, e.g. "node-ipam-controller", plus its short
aliases such as "nodeipam") and a starter `async def start(ctx) -> Awaitable | None`: it builds the
controller from the context and returns the coroutine that runs it (None when its flags leave it
off, as upstream's nodeipam without --allocate-node-cidrs).
"""
from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable

from kubelab.client.events import EventRecorder
from kubelab.client.informer import SharedInformerFactory
from kubelab.client.rest import Client

log = logging.getLogger(__name__)


@dataclass
class ControllerOptions:
    allocate_node_cidrs: bool = False
    cluster_cidrs: list[str] = field(default_factory=list)
    node_cidr_mask_size_ipv4: int = 24
    node_cidr_mask_size_ipv6: int = 64
    service_cidrs: list[str] = field(default_factory=list)
    concurrent_replicaset_syncs: int = 5
    concurrent_gc_syncs: int = 20
    concurrent_resource_quota_syncs: int = 5
    resource_quota_sync_period: float = 300.0
    horizontal_pod_autoscaler_sync_period: float = 15.0
    concurrent_endpoint_syncs: int = 5
    concurrent_namespace_syncs: int = 10
    concurrent_deployment_syncs: int = 5
    concurrent_daemonset_syncs: int = 2
    concurrent_statefulset_syncs: int = 5
    concurrent_job_syncs: int = 5
    concurrent_cron_job_syncs: int = 5
    concurrent_ttl_after_finished_syncs: int = 5
    root_ca_pem: str = ""
    cluster_signing_cert_pem: bytes = b""
    cluster_signing_key_pem: bytes = b""
    cluster_signing_duration: float = 365 * 86400.0
    node_monitor_period: float = 5.0
    node_monitor_grace_period: float = 40.0
    node_startup_grace_period: float = 60.0
    node_eviction_rate: float = 0.1
    secondary_node_eviction_rate: float = 0.01
    large_cluster_size_threshold: int = 50
    unhealthy_zone_threshold: float = 0.55
    terminated_pod_gc_threshold: int = 12500


@dataclass
class ControllerContext:
    client: Client
    factory: SharedInformerFactory
    options: ControllerOptions
    recorders: list[EventRecorder] = field(default_factory=list)

    def recorder(self, component: str) -> EventRecorder:
        r = EventRecorder(self.client, component=component)
        self.recorders.append(r)
        return r


Starter = Callable[[ControllerContext], Awaitable[Awaitable[Any] | None]]


@dataclass(frozen=True)
class ControllerSpec:
    name: str
    aliases: tuple[str, ...]
    start: Starter
    enabled_by_default: bool = True


async def _start_nodeipam(ctx: ControllerContext) -> Awaitable[Any] | None:
    o = ctx.options
    if not o.allocate_node_cidrs:
        log.info("node-ipam-controller is not started: --allocate-node-cidrs is false")
        return None
    from kubelab.controller.nodeipam.controller import NAME, NodeIPAMController
    masks = [o.node_cidr_mask_size_ipv6 if ":" in c else o.node_cidr_mask_size_ipv4 for c in o.cluster_cidrs]
    ctrl = NodeIPAMController(ctx.client, ctx.factory, cluster_cidrs=o.cluster_cidrs, node_mask_sizes=masks,
                              service_cidr=(o.service_cidrs or [None])[0],
                              secondary_service_cidr=(o.service_cidrs[1:] or [None])[0],
                              recorder=ctx.recorder(NAME))
    return ctrl.run()


async def _start_replicaset(ctx: ControllerContext) -> Awaitable[Any] | None:
    from kubelab.controller.replicaset.controller import NAME, ReplicaSetController
    ctrl = ReplicaSetController(ctx.client, ctx.factory, ctx.recorder(NAME))
    return ctrl.run(workers=ctx.options.concurrent_replicaset_syncs)


async def _start_daemonset(ctx: ControllerContext) -> Awaitable[Any] | None:
    from kubelab.controller.daemon.controller import NAME, DaemonSetController
    ctrl = DaemonSetController(ctx.client, ctx.factory, ctx.recorder(NAME))
    return ctrl.run(workers=ctx.options.concurrent_daemonset_syncs)


async def _start_statefulset(ctx: ControllerContext) -> Awaitable[Any] | None:
    from kubelab.controller.statefulset.controller import NAME, StatefulSetController
    ctrl = StatefulSetController(ctx.client, ctx.factory, ctx.recorder(NAME))
    return ctrl.run(workers=ctx.options.concurrent_statefulset_syncs)


async def _start_endpointslice(ctx: ControllerContext) -> Awaitable[Any] | None:
    from kubelab.controller.endpointslice.controller import EndpointSliceController
    return EndpointSliceController(ctx.client, ctx.factory).run()


async def _start_endpoints(ctx: ControllerContext) -> Awaitable[Any] | None:
    from kubelab.controller.endpoints.controller import EndpointsController
    return EndpointsController(ctx.client, ctx.factory).run(workers=ctx.options.concurrent_endpoint_syncs)


async def _start_disruption(ctx: ControllerContext) -> Awaitable[Any] | None:
    from kubelab.controller.disruption.controller import DisruptionController
    return DisruptionController(ctx.client, ctx.factory).run()


async def _start_resourcequota(ctx: ControllerContext) -> Awaitable[Any] | None:
    from kubelab.controller.resourcequota.controller import ResourceQuotaController
    return ResourceQuotaController(ctx.client, ctx.factory, resync_period=ctx.options.resource_quota_sync_period
                                   ).run(workers=ctx.options.concurrent_resource_quota_syncs)


async def _start_csrsigning(ctx: ControllerContext) -> Awaitable[Any] | None:
    o = ctx.options
    if not (o.cluster_signing_cert_pem and o.cluster_signing_key_pem):
        log.info("certificatesigningrequest-signing-controller is not started: no --cluster-signing-cert-file "
                 "and --cluster-signing-key-file")
        return None
    from kubelab.controller.certificates.controller import CSRSigningController
    return CSRSigningController(ctx.client, ctx.factory, o.cluster_signing_cert_pem, o.cluster_signing_key_pem,
                                o.cluster_signing_duration).run()


async def _start_csrapproving(ctx: ControllerContext) -> Awaitable[Any] | None:
    from kubelab.controller.certificates.controller import CSRApprovingController
    return CSRApprovingController(ctx.client, ctx.factory).run()


async def _start_csrcleaner(ctx: ControllerContext) -> Awaitable[Any] | None:
    from kubelab.controller.certificates.controller import CSRCleanerController
    return CSRCleanerController(ctx.client, ctx.factory).run(workers=1)


async def _start_hpa(ctx: ControllerContext) -> Awaitable[Any] | None:
    from kubelab.controller.podautoscaler.controller import NAME, HPAController
    return HPAController(ctx.client, ctx.factory, ctx.recorder(NAME),
                         sync_period=ctx.options.horizontal_pod_autoscaler_sync_period).run()


async def _start_serviceaccount(ctx: ControllerContext) -> Awaitable[Any] | None:
    from kubelab.controller.serviceaccount.controller import ServiceAccountController
    return ServiceAccountController(ctx.client, ctx.factory).run()


async def _start_root_ca(ctx: ControllerContext) -> Awaitable[Any] | None:
    if not ctx.options.root_ca_pem:
        log.info("root-ca-certificate-publisher-controller is not started: no --root-ca-file")
        return None
    from kubelab.controller.serviceaccount.controller import RootCAPublisher
    return RootCAPublisher(ctx.client, ctx.factory, ctx.options.root_ca_pem).run()


async def _start_garbagecollector(ctx: ControllerContext) -> Awaitable[Any] | None:
    from kubelab.controller.garbagecollector.controller import GarbageCollector
    gc = GarbageCollector(ctx.client, ctx.factory, workers=ctx.options.concurrent_gc_syncs)
    await gc.sync_monitors()         # informers for every deletable resource, before the factory starts
    return gc.run()


async def _start_namespace(ctx: ControllerContext) -> Awaitable[Any] | None:
    from kubelab.controller.namespace.controller import NamespaceController
    return NamespaceController(ctx.client, ctx.factory, workers=ctx.options.concurrent_namespace_syncs).run()


async def _start_deployment(ctx: ControllerContext) -> Awaitable[Any] | None:
    from kubelab.controller.deployment.controller import NAME, DeploymentController
    ctrl = DeploymentController(ctx.client, ctx.factory, ctx.recorder(NAME))
    return ctrl.run(workers=ctx.options.concurrent_deployment_syncs)


async def _start_job(ctx: ControllerContext) -> Awaitable[Any] | None:
    from kubelab.controller.job.controller import NAME, JobController
    ctrl = JobController(ctx.client, ctx.factory, ctx.recorder(NAME))
    return ctrl.run(workers=ctx.options.concurrent_job_syncs)


async def _start_cronjob(ctx: ControllerContext) -> Awaitable[Any] | None:
    from kubelab.controller.cronjob.controller import NAME, CronJobController
    ctrl = CronJobController(ctx.client, ctx.factory, ctx.recorder(NAME))
    return ctrl.run(workers=ctx.options.concurrent_cron_job_syncs)


async def _start_ttl_after_finished(ctx: ControllerContext) -> Awaitable[Any] | None:
    from kubelab.controller.ttlafterfinished.controller import TTLAfterFinishedController
    ctrl = TTLAfterFinishedController(ctx.client, ctx.factory)
    return ctrl.run(workers=ctx.options.concurrent_ttl_after_finished_syncs)


async def _start_nodelifecycle(ctx: ControllerContext) -> Awaitable[Any] | None:
    from kubelab.controller.nodelifecycle.controller import (EVENT_COMPONENT, NodeLifecycleController,
                                                             NodeLifecycleOptions)
    from kubelab.controller.nodelifecycle.zones import EvictionRates
    o = ctx.options
    opts = NodeLifecycleOptions(monitor_period=o.node_monitor_period, grace_period=o.node_monitor_grace_period,
                                startup_grace_period=o.node_startup_grace_period,
                                unhealthy_zone_threshold=o.unhealthy_zone_threshold,
                                rates=EvictionRates(o.node_eviction_rate, o.secondary_node_eviction_rate,
                                                    o.large_cluster_size_threshold))
    return NodeLifecycleController(ctx.client, ctx.factory, ctx.recorder(EVENT_COMPONENT), opts).run()


async def _start_taint_eviction(ctx: ControllerContext) -> Awaitable[Any] | None:
    from kubelab.controller.tainteviction.controller import NAME, TaintEvictionController
    return TaintEvictionController(ctx.client, ctx.factory, ctx.recorder(NAME)).run()


async def _start_podgc(ctx: ControllerContext) -> Awaitable[Any] | None:
    from kubelab.controller.podgc.controller import PodGCController
    return PodGCController(ctx.client, ctx.factory, ctx.options.terminated_pod_gc_threshold).run()


CONTROLLERS: list[ControllerSpec] = [
    ControllerSpec("node-ipam-controller", ("nodeipam",), _start_nodeipam),
    ControllerSpec("replicaset-controller", ("replicaset",), _start_replicaset),
    ControllerSpec("deployment-controller", ("deployment",), _start_deployment),
    ControllerSpec("garbage-collector-controller", ("garbagecollector",), _start_garbagecollector),
    ControllerSpec("namespace-controller", ("namespace",), _start_namespace),
    ControllerSpec("endpoints-controller", ("endpoint",), _start_endpoints),
    ControllerSpec("disruption-controller", ("disruption",), _start_disruption),
    ControllerSpec("resourcequota-controller", ("resourcequota",), _start_resourcequota),
    ControllerSpec("horizontal-pod-autoscaler-controller", ("horizontalpodautoscaling",), _start_hpa),
    ControllerSpec("certificatesigningrequest-signing-controller", ("csrsigning",), _start_csrsigning),
    ControllerSpec("certificatesigningrequest-approving-controller", ("csrapproving",), _start_csrapproving),
    ControllerSpec("certificatesigningrequest-cleaner-controller", ("csrcleaner",), _start_csrcleaner),
    ControllerSpec("daemonset-controller", ("daemonset",), _start_daemonset),
    ControllerSpec("statefulset-controller", ("statefulset",), _start_statefulset),
    ControllerSpec("endpointslice-controller", ("endpointslice",), _start_endpointslice),
    ControllerSpec("serviceaccount-controller", ("serviceaccount",), _start_serviceaccount),
    ControllerSpec("root-ca-certificate-publisher-controller", ("root-ca-cert-publisher",), _start_root_ca),
    ControllerSpec("job-controller", ("job",), _start_job),
    ControllerSpec("cronjob-controller", ("cronjob",), _start_cronjob),
    ControllerSpec("ttl-after-finished-controller", ("ttl-after-finished",), _start_ttl_after_finished),
    ControllerSpec("node-lifecycle-controller", ("nodelifecycle",), _start_nodelifecycle),
    ControllerSpec("taint-eviction-controller", (), _start_taint_eviction),
    ControllerSpec("pod-garbage-collector-controller", ("podgc",), _start_podgc),
]


class SelectionError(ValueError):
    pass


def select(requested: list[str]) -> list[ControllerSpec]:
    """Upstream's --controllers: '*' is every controller on by default, 'foo' enables foo, '-foo'
    disables it; names or aliases. Unknown names are an error."""
    by_name: dict[str, ControllerSpec] = {}
    for spec in CONTROLLERS:
        for n in (spec.name, *spec.aliases):
            by_name[n] = spec
    for item in requested:
        n = item[1:] if item.startswith("-") else item
        if n != "*" and n not in by_name:
            raise SelectionError(f'"{n}" is not in the list of known controllers')
    out = []
    for spec in CONTROLLERS:
        names = (spec.name, *spec.aliases)
        if any(f"-{n}" in requested for n in names):
            continue
        if any(n in requested for n in names) or ("*" in requested and spec.enabled_by_default):
            out.append(spec)
    return out


async def run_controllers(ctx: ControllerContext, specs: list[ControllerSpec]) -> None:
    """Start the selected controllers and the informers they asked for; run until cancelled."""
    runs: list[tuple[str, Awaitable[Any]]] = []
    for spec in specs:
        coro = await spec.start(ctx)
        if coro is not None:
            log.info("started controller=%s", spec.name)
            runs.append((spec.name, coro))
    ctx.factory.start()
    tasks = [asyncio.create_task(c, name=n) for n, c in runs]
    try:
        if tasks:
            await asyncio.gather(*tasks)
        else:
            await asyncio.Event().wait()
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await ctx.factory.shutdown()
        for r in ctx.recorders:
            await r.shutdown()
