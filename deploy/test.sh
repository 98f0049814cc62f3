#!/usr/bin/env bash
# README command 2: install what is missing, then run the whole test suite.
set -euo pipefail
top="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$top"
"$top/deploy/install.sh"
exec .venv/bin/python -m pytest -q -p no:cacheprovider "$@"
