"""The kubelet-managed /etc/hosts (upstream kubelet_pods_test.go: TestManagedHostsFileContent,
TestNodeHostsFileContent)."""
from kubelab.kubelet.hostsfile import host_network_hosts, managed_hosts, mounts_etc_hosts, pod_hostname, \
    write_hosts_file


def pod(**spec):
    return {"metadata": {"name": "web-0", "namespace": "shop"}, "spec": spec}


LOCAL = ("# Kubernetes-managed hosts file.\n"
         "127.0.0.1\tlocalhost\n"
         "::1\tlocalhost ip6-localhost ip6-loopback\n"
         "fe00::0\tip6-localnet\n"
         "fe00::0\tip6-mcastprefix\n"
         "fe00::1\tip6-allnodes\n"
         "fe00::2\tip6-allrouters\n")


def test_pod_ips_under_the_hostname_then_aliases_one_line_per_ip():
    p = pod(hostAliases=[{"ip": "123.45.67.89", "hostnames": ["foo", "bar", "baz"]},
                         {"ip": "456.78.90.123", "hostnames": ["park", "doo", "boo"]}])
    assert managed_hosts(p, ["203.0.113.1", "fd00::6"], "cluster.local") == LOCAL + (
        "203.0.113.1\tweb-0\n"
        "fd00::6\tweb-0\n"
        "\n# Entries added by HostAliases.\n"
        "123.45.67.89\tfoo\tbar\tbaz\n"
        "456.78.90.123\tpark\tdoo\tboo\n")


def test_subdomain_gives_the_fqdn_and_hostname_overrides_the_name():
    p = pod(hostname="db", subdomain="backend")
    assert managed_hosts(p, ["10.244.1.5"], "k8s.test") == LOCAL + "10.244.1.5\tdb.backend.shop.svc.k8s.test\tdb\n"


def test_long_names_are_cut_to_63_without_a_trailing_dash():
    name = "a" * 62 + "-b"
    assert pod_hostname({"metadata": {"name": name, "namespace": "x"}, "spec": {}}, "cluster.local") == ("a" * 62, "")


def test_host_network_pods_get_the_node_file_with_aliases():
    p = pod(hostNetwork=True, hostAliases=[{"ip": "10.0.0.9", "hostnames": ["reg"]}])
    assert host_network_hosts(p, "127.0.0.1 localhost\n10.1.1.1 node1") == (
        "# Kubernetes-managed hosts file (host network).\n127.0.0.1 localhost\n10.1.1.1 node1\n"
        "\n# Entries added by HostAliases.\n10.0.0.9\treg\n")


def test_a_container_mounting_etc_hosts_keeps_its_own():
    assert mounts_etc_hosts({"volumeMounts": [{"name": "h", "mountPath": "/etc/hosts"}]})
    assert not mounts_etc_hosts({"volumeMounts": [{"name": "h", "mountPath": "/etc/hosts.d"}]})
    assert not mounts_etc_hosts({})


def test_write_rewrites_in_place(tmp_path):
    f = tmp_path / "pods" / "uid" / "etc-hosts"
    write_hosts_file(f, pod(), ["10.244.0.7"], "cluster.local")
    ino = f.stat().st_ino
    write_hosts_file(f, pod(hostAliases=[{"ip": "1.2.3.4", "hostnames": ["x"]}]), ["10.244.0.7"], "cluster.local")
    assert f.stat().st_ino == ino and f.read_text().endswith("1.2.3.4\tx\n") and oct(f.stat().st_mode & 0o777) == "0o644"
    node = tmp_path / "hosts"
    node.write_text("127.0.0.1 localhost\n")
    write_hosts_file(f, pod(hostNetwork=True), ["192.168.56.11"], "cluster.local", node_hosts_path=node)
    assert f.read_text() == "# Kubernetes-managed hosts file (host network).\n127.0.0.1 localhost\n"
