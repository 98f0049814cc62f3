"""The container runtime's parts: runc and conmon wrappers, pinned namespaces, CNI, cgroups, OCI specs,
and the RuntimeService that orchestrates them."""
