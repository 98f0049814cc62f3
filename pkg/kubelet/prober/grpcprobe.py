"""grpc probes, as upstream's pkg/probe/grpc: the grpc.health.v1.Health/Check call of the gRPC
Health Checking Protocol, over plaintext HTTP/2 to ``<pod IP>:<port>``, asking about ``service``
("" for the server as a whole), with ``User-Agent: kube-probe/<major>.<minor>``.

Connecting and the call share timeoutSeconds. SERVING is success ("service healthy"); any other
status, a server without the health service, an error status or a timeout is a failure with
upstream's messages ("service unhealthy (responded with \\"NOT_SERVING\\")", "error: this server
does not implement the grpc health protocol (grpc.health.v1.Health): ...", "timeout: failed to
connect service \\"10.0.0.5:9000\\" within 1s: context deadline exceeded", "timeout: health rpc
did not complete within 1s", "error: health rpc probe failed: rpc error: code = NotFound desc = ...").
"""
from __future__ import annotations

import asyncio

import grpc

from kubelab.api.protobuf import go_duration

from .healthpb import health_pb2, health_pb2_grpc
from .httpprobe import user_agent
from .ports import join_host_port
from .results import Outcome, ProbeRun


def go_status_code(code: grpc.StatusCode) -> str:
    """The Go name of a status code: DEADLINE_EXCEEDED -> DeadlineExceeded."""
    return "".join(part.capitalize() for part in code.name.split("_")) if code.name != "OK" else "OK"


async def probe_grpc(host: str, service: str, port: int, timeout: float) -> ProbeRun:
    """One Health/Check call to host:port about ``service``, within ``timeout`` seconds."""
    addr = join_host_port(host, port)
    within = go_duration(int(timeout * 1e9))
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    options = [("grpc.primary_user_agent", user_agent("probe")), ("grpc.enable_retries", 0)]
    async with grpc.aio.insecure_channel(addr, options=options) as channel:
        try:
            async with asyncio.timeout_at(deadline):
                await channel.channel_ready()
        except TimeoutError:
            return ProbeRun(Outcome.FAILURE, f'timeout: failed to connect service "{addr}" within {within}: '
                                             "context deadline exceeded")
        stub = health_pb2_grpc.HealthStub(channel)
        try:
            resp = await stub.Check(health_pb2.HealthCheckRequest(service=service),
                                    timeout=max(deadline - loop.time(), 0.001))
        except grpc.aio.AioRpcError as e:
            code = e.code()
            if code == grpc.StatusCode.UNIMPLEMENTED:
                return ProbeRun(Outcome.FAILURE, "error: this server does not implement the grpc health "
                                                 f"protocol (grpc.health.v1.Health): {e.details() or ''}")
            if code == grpc.StatusCode.DEADLINE_EXCEEDED:
                return ProbeRun(Outcome.FAILURE, f"timeout: health rpc did not complete within {within}")
            return ProbeRun(Outcome.FAILURE, "error: health rpc probe failed: rpc error: code = "
                                             f"{go_status_code(code)} desc = {e.details() or ''}")
    if resp.status != health_pb2.HealthCheckResponse.SERVING:
        name = health_pb2.HealthCheckResponse.ServingStatus.Name(resp.status)
        return ProbeRun(Outcome.FAILURE, f'service unhealthy (responded with "{name}")')
    return ProbeRun(Outcome.SUCCESS, "service healthy")
