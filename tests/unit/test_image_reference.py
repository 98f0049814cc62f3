"""Image reference normalisation, as distribution/reference (ParseDockerRef) does it."""
from __future__ import annotations

import pytest

from kubelab.cri.image.reference import InvalidReference, Reference, parse

D = "sha256:" + "ab" * 32

NORMALISED = [
    # input, string(), familiar(), domain, path, tag, digest
    ("nginx", "docker.io/library/nginx:latest", "nginx:latest", "docker.io", "library/nginx", "latest", None),
    ("nginx:1.25", "docker.io/library/nginx:1.25", "nginx:1.25", "docker.io", "library/nginx", "1.25", None),
    ("library/nginx", "docker.io/library/nginx:latest", "nginx:latest", "docker.io", "library/nginx", "latest", None),
    ("docker.io/nginx", "docker.io/library/nginx:latest", "nginx:latest", "docker.io", "library/nginx", "latest", None),
    ("index.docker.io/library/busybox:1", "docker.io/library/busybox:1", "busybox:1", "docker.io", "library/busybox", "1", None),
    ("user/app", "docker.io/user/app:latest", "user/app:latest", "docker.io", "user/app", "latest", None),
    ("a/b/c:v1", "docker.io/a/b/c:v1", "a/b/c:v1", "docker.io", "a/b/c", "v1", None),
    ("docker.io/library/a/b", "docker.io/library/a/b:latest", "library/a/b:latest", "docker.io", "library/a/b", "latest", None),
    ("localhost/x", "localhost/x:latest", "localhost/x:latest", "localhost", "x", "latest", None),
    ("localhost:5000/x/y:2", "localhost:5000/x/y:2", "localhost:5000/x/y:2", "localhost:5000", "x/y", "2", None),
    ("127.0.0.1:5000/app", "127.0.0.1:5000/app:latest", "127.0.0.1:5000/app:latest", "127.0.0.1:5000", "app", "latest", None),
    ("registry.k8s.io/pause:3.9", "registry.k8s.io/pause:3.9", "registry.k8s.io/pause:3.9", "registry.k8s.io", "pause", "3.9", None),
    ("[::1]:5000/app:v", "[::1]:5000/app:v", "[::1]:5000/app:v", "[::1]:5000", "app", "v", None),
    ("Example.com/app", "Example.com/app:latest", "Example.com/app:latest", "Example.com", "app", "latest", None),
    ("foo_bar/a__b/c-d--e.f", "docker.io/foo_bar/a__b/c-d--e.f:latest", "foo_bar/a__b/c-d--e.f:latest",
     "docker.io", "foo_bar/a__b/c-d--e.f", "latest", None),
    ("nginx:Tag_1.x-y", "docker.io/library/nginx:Tag_1.x-y", "nginx:Tag_1.x-y", "docker.io", "library/nginx", "Tag_1.x-y", None),
    (f"nginx@{D}", f"docker.io/library/nginx@{D}", f"nginx@{D}", "docker.io", "library/nginx", None, D),
    # tag and digest: the digest wins, as in ParseDockerRef
    (f"nginx:1.25@{D}", f"docker.io/library/nginx@{D}", f"nginx@{D}", "docker.io", "library/nginx", None, D),
    (f"localhost:5000/x@{D}", f"localhost:5000/x@{D}", f"localhost:5000/x@{D}", "localhost:5000", "x", None, D),
]


@pytest.mark.parametrize("name,string,familiar,domain,path,tag,digest", NORMALISED)
def test_normalisation(name, string, familiar, domain, path, tag, digest):
    r = parse(name)
    assert r == Reference(domain, path, tag, digest)
    assert r.string() == string
    assert r.familiar() == familiar
    assert r.repository == f"{domain}/{path}"
    # the normalised form is a fixed point
    assert parse(string) == r


INVALID = [
    ("", "empty"),
    ("Nginx", "must be lowercase"),
    ("docker.io/Library/nginx", "must be lowercase"),
    ("a" * 64, "64-byte hexadecimal"),
    ("nginx:", "invalid reference format"),
    (":latest", "invalid reference format"),
    ("nginx@sha256:abc", "invalid reference format"),
    ("nginx@md5:" + "a" * 32, "unsupported digest algorithm"),
    ("nginx@sha256:" + "a" * 63 + "g", "invalid reference format"),
    ("nginx@sha256:" + "a" * 65, "invalid checksum digest format"),
    ("x//y", "invalid reference format"),
    ("-x", "invalid reference format"),
    ("x-/y", "invalid reference format"),
    ("a b", "invalid reference format"),
    ("nginx:-tag", "invalid reference format"),
    ("nginx:" + "a" * 129, "invalid reference format"),
    ("localhost:5000/" + "a" * 250, "more than 255 characters"),
    ("http://example.com/x", "invalid reference format"),
]


@pytest.mark.parametrize("name,why", INVALID)
def test_invalid(name, why):
    with pytest.raises(InvalidReference) as e:
        parse(name)
    assert why in str(e.value)
    assert "\n" not in str(e.value)


def test_name_only_and_helpers():
    r = parse("nginx", default_tag=False)
    assert r.tag is None and r.string() == "docker.io/library/nginx"
    assert parse("nginx:1").with_digest(D).string() == f"docker.io/library/nginx@{D}"
    assert parse(f"nginx@{D}").with_tag("2").string() == "docker.io/library/nginx:2"
    assert isinstance(InvalidReference("x"), ValueError)
