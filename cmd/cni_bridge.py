"""kubelab-bridge: the CNI bridge plugin executable (CNI spec 1.0). No logic here: see kubelab.cni."""
from __future__ import annotations

import sys


def main() -> None:
    from kubelab.cni.main import main as plugin_main
    sys.exit(plugin_main())


if __name__ == "__main__":
    main()
