#!/usr/bin/env bash
# Check the Bicep templates under infra/ without a Bicep compiler, which cannot
# be installed here: two independent parsers from PyPI (pycep-parser and the
# tree-sitter Bicep grammar) check the syntax, and scripts/check-bicep.py checks
# module wiring, parameters, API versions and role ids on the parsed form.
#
# Usage: scripts/check-bicep.sh [infra-dir]
# The parsers are installed once into .tools/bicep-venv (ignored by git).
set -euo pipefail

repo_root=$(cd "$(dirname "$0")/.." && pwd)
venv="$repo_root/.tools/bicep-venv"
# Pinned so a parser release cannot change what CI accepts.
requirements=(pycep-parser==0.7.1 tree-sitter==0.26.1 tree-sitter-bicep==1.1.0)
stamp="$venv/.installed"

if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "${requirements[*]}" ]; then
    echo "check-bicep.sh: installing ${requirements[*]} into $venv" >&2
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check "${requirements[@]}"
    echo "${requirements[*]}" > "$stamp"
fi

exec "$venv/bin/python" "$repo_root/scripts/check-bicep.py" "${1:-$repo_root/infra}"
