"""The kubelet's volumes: `VolumeManager` (setup, mounts, resync, teardown), `Mount`, `VolumeError`.
See manager.py; the AtomicWriter, payload builders, hostPath checks, tmpfs handling and the
service account token cache are in the sibling modules."""
from kubelab.kubelet.volumes.manager import Mount, VolumeError, VolumeManager

__all__ = ["Mount", "VolumeError", "VolumeManager"]
