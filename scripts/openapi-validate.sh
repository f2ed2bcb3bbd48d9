#!/usr/bin/env bash
# Validates an OpenAPI document with openapi-spec-validator from PyPI.
#
# Usage: scripts/openapi-validate.sh FILE
#
# The validator is installed on first use into a virtual environment at .tools/openapi-venv
# (ignored by git); later runs reuse it. Exits 0 when the document is valid, 1 with the
# validator's report when it is not, and 2 when python3 is missing.
set -euo pipefail

VALIDATOR_VERSION="0.7.1"

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$repo_root/.tools/openapi-venv"
document="${1:?usage: scripts/openapi-validate.sh FILE}"

if ! command -v python3 >/dev/null 2>&1; then
    echo "python3 is not installed; it is needed to validate the OpenAPI document" >&2
    exit 2
fi

if [ ! -x "$venv/bin/openapi-spec-validator" ] ||
    ! "$venv/bin/python" -m pip show openapi-spec-validator 2>/dev/null | grep -q "^Version: $VALIDATOR_VERSION\$"; then
    python3 -m venv "$venv" >&2
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
        "openapi-spec-validator==$VALIDATOR_VERSION" >&2
fi

"$venv/bin/openapi-spec-validator" "$document"
