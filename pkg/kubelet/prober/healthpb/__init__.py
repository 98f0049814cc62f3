"""Generated Python for the gRPC Health Checking Protocol (package ``grpc.health.v1``, from
proto/health/health.proto).

``health_pb2`` holds ``HealthCheckRequest`` and ``HealthCheckResponse``, ``health_pb2_grpc`` the
``Health`` stub and servicer base. Both are produced by
``python -m kubelab.kubelet.prober.healthpb.generate`` and committed; do not edit them by hand.
"""
