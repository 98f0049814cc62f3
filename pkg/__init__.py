"""kubelab: a Kubernetes written in Python in which every part is real."""
