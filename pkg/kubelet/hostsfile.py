"""The kubelet-managed /etc/hosts of a pod's containers (upstream kubelet_pods.go: ensureHostsFile).

A pod with an IP gets `<pod dir>/etc-hosts` mounted at /etc/hosts in every container that does not
mount something there itself: localhost entries, the pod's IPs under its hostname (and FQDN when
spec.subdomain is set), then spec.hostAliases. A hostNetwork pod gets the node's own hosts file
with the aliases appended instead. The file is rewritten before each container starts.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable

Obj = dict[str, Any]

ETC_HOSTS = "/etc/hosts"
MANAGED_HEADER = "# Kubernetes-managed hosts file.\n"
MANAGED_HEADER_HOST_NETWORK = "# Kubernetes-managed hosts file (host network).\n"


def pod_hostname(pod: Obj, cluster_domain: str) -> tuple[str, str]:
    """(hostname, domain): spec.hostname or the pod's name cut to 63 characters, and
    `<subdomain>.<namespace>.svc.<cluster domain>` when spec.subdomain is set (upstream
    GeneratePodHostNameAndDomain)."""
    spec = pod.get("spec") or {}
    meta = pod.get("metadata") or {}
    hostname = (spec.get("hostname") or meta.get("name", ""))[:63].rstrip("-.")
    domain = ""
    if spec.get("subdomain"):
        domain = f"{spec['subdomain']}.{meta.get('namespace', 'default')}.svc.{cluster_domain}"
    return hostname, domain


def _aliases(pod: Obj) -> str:
    aliases = (pod.get("spec") or {}).get("hostAliases") or []
    if not aliases:
        return ""
    lines = ["", "# Entries added by HostAliases."]
    lines += [f"{a.get('ip', '')}\t" + "\t".join(a.get("hostnames") or []) for a in aliases]
    return "\n".join(lines) + "\n"


def managed_hosts(pod: Obj, pod_ips: Iterable[str], cluster_domain: str) -> str:
    """The hosts file of a pod in its own network namespace."""
    hostname, domain = pod_hostname(pod, cluster_domain)
    out = [MANAGED_HEADER,
           "127.0.0.1\tlocalhost\n",
           "::1\tlocalhost ip6-localhost ip6-loopback\n",
           "fe00::0\tip6-localnet\n",
           "fe00::0\tip6-mcastprefix\n",
           "fe00::1\tip6-allnodes\n",
           "fe00::2\tip6-allrouters\n"]
    for ip in pod_ips:
        out.append(f"{ip}\t{hostname}.{domain}\t{hostname}\n" if domain else f"{ip}\t{hostname}\n")
    out.append(_aliases(pod))
    return "".join(out)


def host_network_hosts(pod: Obj, node_hosts: str) -> str:
    """The hosts file of a hostNetwork pod: the node's, with the pod's aliases appended."""
    if node_hosts and not node_hosts.endswith("\n"):
        node_hosts += "\n"
    return MANAGED_HEADER_HOST_NETWORK + node_hosts + _aliases(pod)


def mounts_etc_hosts(container: Obj) -> bool:
    """Whether the container mounts a volume at /etc/hosts itself (then the kubelet does not)."""
    return any(vm.get("mountPath") == ETC_HOSTS for vm in container.get("volumeMounts") or [])


def write_hosts_file(path: Path, pod: Obj, pod_ips: list[str], cluster_domain: str,
                     node_hosts_path: Path = Path(ETC_HOSTS)) -> None:
    """Write the pod's hosts file to `path`, in place (the pod's running containers bind-mount it)."""
    if (pod.get("spec") or {}).get("hostNetwork"):
        try:
            node_hosts = node_hosts_path.read_text()
        except OSError:
            node_hosts = ""
        text = host_network_hosts(pod, node_hosts)
    else:
        text = managed_hosts(pod, pod_ips, cluster_domain)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(0o644)
