"""Maps the source tree onto the import names: pkg/ is `kubelab`, cmd/ is `kubelab.cmd`."""
from setuptools import find_packages, setup

packages = ["kubelab"] + [f"kubelab.{p}" for p in find_packages("pkg")] + ["kubelab.cmd"]
package_dir = {"kubelab": "pkg", "kubelab.cmd": "cmd"}
setup(packages=packages, package_dir=package_dir)
