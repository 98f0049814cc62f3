"""kubelab-kubelet's image garbage collection flags: upstream's names, defaults and errors."""
import subprocess
import sys
from pathlib import Path

import pytest

KUBELET = str(Path(sys.executable).parent / "kubelab-kubelet")


@pytest.mark.parametrize("args,message", [
    (["--image-gc-high-threshold", "101"],
     "invalid configuration: imageGCHighThresholdPercent (--image-gc-high-threshold) 101 must be between 0 and 100, "
     "inclusive"),
    (["--image-gc-low-threshold", "-1"],
     "invalid configuration: imageGCLowThresholdPercent (--image-gc-low-threshold) -1 must be between 0 and 100, "
     "inclusive"),
    (["--image-gc-high-threshold", "70", "--image-gc-low-threshold", "70"],
     "invalid configuration: imageGCLowThresholdPercent (--image-gc-low-threshold) 70 must be less than "
     "imageGCHighThresholdPercent (--image-gc-high-threshold) 70"),
    (["--minimum-image-ttl-duration", "soon"], "--minimum-image-ttl-duration"),
])
def test_bad_image_gc_flags_are_refused_before_anything_starts(args, message):
    r = subprocess.run([KUBELET, "--kubeconfig", "/nonexistent", *args], capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and message in r.stderr and "Traceback" not in r.stderr


def test_defaults_are_upstreams():
    from kubelab.cmd.kubelet import _image_gc_policy, build_parser
    a = build_parser().parse_args([])
    p = _image_gc_policy(a)
    assert (p.high_threshold_percent, p.low_threshold_percent, p.min_age) == (85, 80, 120.0)
    assert a.pod_infra_container_image == "registry.k8s.io/pause:3.9"
