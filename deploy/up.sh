#!/usr/bin/env bash
# README command 1: install what is missing, then bring up the lab.
set -euo pipefail
top="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$top"
"$top/deploy/install.sh"
exec .venv/bin/kubelab up "$@"
