"""Generated Python for the CRI v1 protocol (package ``runtime.v1``, from proto/cri/api.proto).

``api_pb2`` holds the messages and enums, ``api_pb2_grpc`` the ``RuntimeService`` and
``ImageService`` stubs and servicer bases. Both are produced by
``python -m kubelab.cri.api.generate`` and committed; do not edit them by hand.
"""
