#!/usr/bin/env bash
# The installed size of avips_jax with its dependencies: a fresh venv, `pip install <target>`
# pinned by constraints.txt, then the size of its site-packages and the number of distributions.
# Usage: bash scripts/installed_size.sh [pip target, default "." (the CPU install)]
#   e.g.  bash scripts/installed_size.sh ".[mjcf]"
set -euo pipefail
cd "$(dirname "$0")/.."
TARGET="${1:-.}"
PY="${PYTHON:-python3.11}"
command -v "$PY" >/dev/null 2>&1 || PY=python3
TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT
"$PY" -m venv "$TMP/venv"
"$TMP/venv/bin/python" -m pip install -q --upgrade pip
"$TMP/venv/bin/python" -m pip install -q -c constraints.txt "$TARGET"
SITE="$("$TMP/venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
MB="$(du -sm "$SITE" | cut -f1)"
N="$("$TMP/venv/bin/python" -m pip list --format=freeze | wc -l)"
echo "pip install $TARGET: $MB MB in $N distributions ($("$TMP/venv/bin/python" --version))"
