"""Node IPAM: pod CIDRs for Nodes from the cluster CIDR."""
