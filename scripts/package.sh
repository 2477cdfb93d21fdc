#!/usr/bin/env bash
# Package the Chalice app for AWS and lint the result:
#   bash scripts/package.sh [STAGE] [OUT_DIR]     (defaults: dev, .dtq/package/STAGE)
# `chalice package` takes the Lambda runtime from the Python that runs it, and cfn-lint
# flags python3.11 as deprecated (E2533), so this runs both from a throwaway venv of a
# Python that Lambda supports (DTQ_LAMBDA_PYTHON, default 3.12; found on PATH or under
# pyenv). Writes OUT_DIR/sam.json (CloudFormation with the SAM transform) and
# OUT_DIR/deployment.zip; deploy them with `aws cloudformation package/deploy`.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

STAGE=${1:-dev}
OUT=${2:-.dtq/package/$STAGE}
PYVER=${DTQ_LAMBDA_PYTHON:-3.12}
VENV=.dtq/package-venv-$PYVER

find_python() {
    local candidate
    if [ -n "${LAMBDA_PYTHON:-}" ]; then echo "$LAMBDA_PYTHON"; return; fi
    # pyenv's shims exist on PATH even when they refuse to run, hence the test run.
    for candidate in "python$PYVER" "${PYENV_ROOT:-$HOME/.pyenv}"/versions/"$PYVER".*/bin/python"$PYVER"; do
        if "$candidate" -c "" >/dev/null 2>&1; then command -v "$candidate"; return; fi
    done
    echo "package.sh: error: Python $PYVER not found (install it, or set LAMBDA_PYTHON)" >&2
    exit 1
}

# One packaging at a time (tests and CI may overlap): they share the venv and chalice's
# cache of deployment packages.
mkdir -p .dtq
exec 9>.dtq/package.lock
flock 9

# The venv is keyed by what goes into it, so a changed requirements.txt rebuilds it.
stamp=$(sha256sum < requirements.txt | cut -c1-16)
if [ ! -f "$VENV/.stamp-$stamp" ]; then
    rm -rf "$VENV"
    "$(find_python)" -m venv "$VENV"
    pip=("$VENV/bin/python" -m pip install --quiet --disable-pip-version-check)
    "${pip[@]}" --upgrade pip
    # The app's own requirements too: chalice imports app.py to find its routes.
    "${pip[@]}" -r requirements.txt "cfn-lint>=1.20,<2"
    touch "$VENV/.stamp-$stamp"
fi

# chalice needs a region to render ARNs; any will do for packaging.
export AWS_DEFAULT_REGION=${AWS_DEFAULT_REGION:-us-east-1}
rm -rf "$OUT"
"$VENV/bin/chalice" package --stage "$STAGE" "$OUT"
"$VENV/bin/cfn-lint" --format parseable -- "$OUT/sam.json"
runtime=$(grep -o '"Runtime": *"[^"]*"' "$OUT/sam.json" | head -1)
echo "package: $OUT/sam.json ($runtime) passes cfn-lint"
