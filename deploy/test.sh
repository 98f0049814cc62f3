#!/usr/bin/env bash
# README command 2: install what is missing, then run the whole test suite.
set -euo pipefail
top="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$top"
"$top/deploy/install.sh"
# pytest, not `python -m pytest`: the latter puts the repo root on sys.path, where cmd/ would
# shadow the standard library's cmd module (which pdb imports)
exec .venv/bin/pytest -q -p no:cacheprovider "$@"
