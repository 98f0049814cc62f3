"""kube-proxy's IPVS mode: virtual servers over netlink, VIPs on kube-ipvs0, ipsets + iptables."""
