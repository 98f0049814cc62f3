"""kube-proxy's iptables mode: rules.py (pure rule generation), runner.py (the iptables binaries),
proxier.py (syncs)."""
