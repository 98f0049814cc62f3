"""Generated protobuf modules for the Kubernetes wire types (from proto/k8s/*.proto).

The ``*_pb2`` modules here are produced by ``python -m kubelab.api.pb.generate``
and committed; do not edit them by hand. ``kubelab.api.protobuf`` decodes request
bodies with them.
"""
