"""kubelab's CNI plugin `kubelab-bridge`: bridge + veth + host-local IPAM (CNI spec 1.0).

spec.py      the protocol: environment, config, versions, result conversion, error JSON
ipam.py      host-local IPAM with the reference plugin's on-disk layout and file lock
netlink.py   the rtnetlink calls the plugin makes (messages packed with struct, plain socket)
launcher.py  the kubelab-bridge script a lab's CNI bin dir holds (python -S, no finalization)
masq.py      ipMasq rules (the reference plugin's CNI-<hash> chains) via iptables-restore
bridge.py    ADD / DEL / CHECK
main.py      the executable: env + stdin -> stdout, exit code
"""
