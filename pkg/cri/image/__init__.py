"""Images for kubelab-cri: references, the content store, layer unpacking, overlay snapshots, the image
index, archives (OCI layout, docker save) and images built from Debian packages."""
