"""kubelab.cni.cnijson: the plugin's JSON, byte for byte what the json module reads and writes, and a
plugin exec that never imports json (or re) on its success path."""
import json
import subprocess
import sys

import pytest

from kubelab.cni import cnijson, launcher

SAMPLES = [
    {"cniVersion": "1.0.0", "interfaces": [{"name": "cni0", "mac": "aa:bb", "sandbox": "/run/netns/\u00e9"}],
     "ips": [{"interface": 2, "address": "10.0.0.2/24", "gateway": "10.0.0.1"}], "routes": [{"dst": "0.0.0.0/0"}],
     "dns": {}},
    [], {}, [1, -7, 2.5, -0.0, 1e300, float("inf"), -float("inf"), True, False, None, "tab\t \"quoted\" \\ \u2603"], {"a": {"b": [[], {}]}},
    {1: "int key", True: "bool key"}, "plain",
]


@pytest.mark.parametrize("obj", SAMPLES)
@pytest.mark.parametrize("indent,separators", [(None, None), (4, None), (None, (",", ":"))])
def test_dumps_matches_json(obj, indent, separators) -> None:
    assert cnijson.dumps(obj, indent, separators) == json.dumps(obj, indent=indent, separators=separators)


@pytest.mark.parametrize("obj", SAMPLES)
def test_loads_matches_json(obj) -> None:
    text = json.dumps(obj)
    assert cnijson.loads(text) == json.loads(text)
    assert cnijson.loads(f" \n\t{text}\r\n ".encode()) == json.loads(text)


@pytest.mark.parametrize("bad", ["", "   ", "{", "[1,]", "{} x", "nul", '"open', '{"a" 1}', "1 2", "\x00"])
def test_loads_errors_are_jsons(bad) -> None:
    with pytest.raises(ValueError) as theirs:
        json.loads(bad)
    with pytest.raises(json.JSONDecodeError) as ours:
        cnijson.loads(bad)
    assert str(ours.value) == str(theirs.value)


def test_unencodable_raises_like_json() -> None:
    with pytest.raises(TypeError, match="not JSON serializable"):
        cnijson.dumps({"x": object()})


def test_plugin_modules_do_not_import_json_or_re(tmp_path) -> None:
    """The launcher's own loading (python -S, the package from its directory), then the plugin's
    modules and a JSON round trip: none of the costly modules they avoid gets imported."""
    text = launcher.script()
    text = text[:text.index("from kubelab.cni.main import main")] + (
        "from kubelab.cni import bridge, cnijson, main, ipam, netlink, spec\n"
        "cnijson.loads(cnijson.dumps({'a': [1, 2.5, None]}, 4))\n"
        "print(' '.join(m for m in ('json', 're', 'socket', 'contextlib', 'typing') if m in sys.modules))\n")
    script = tmp_path / "probe"
    script.write_text(text)
    out = subprocess.run([sys.executable, "-S", str(script)], capture_output=True, text=True, check=True).stdout
    assert out.strip() == ""
