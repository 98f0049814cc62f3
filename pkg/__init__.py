"""kubelab: a Kubernetes written in Python in which every part is real."""

__version__ = "0.1.0"
