#!/usr/bin/env bash
# CI lane: the integration-level tests on one transformers release, in a venv built from nothing.
#
#   bash scripts/lane-transformers.sh VERSION      # a VERSION with scripts/constraints-tf-VERSION.txt
#
# Builds .venv-tf-VERSION (in $SHARPV_VENVS when set, else in the checkout; removed first
# unless SHARPV_LANE_KEEP=1), installs the CPU build
# of torch, then this package with its hf and test extras under the pins of
# scripts/constraints-cpu.txt, except the transformers stack (transformers, tokenizers,
# huggingface_hub, safetensors), which comes from scripts/constraints-tf-VERSION.txt, and
# runs pytest on the tests that depend on transformers (scripts/integration-tests.txt; the
# kernel tests do not, they stay in the main lane). Exits non-zero when the install or any test fails.
# SHARPV_LANE_STEP=build|test runs one half (.ci/run builds the lanes' venvs in the
# background while the core lane runs, then tests them one at a time).
set -euo pipefail
cd "$(dirname "$0")/.."
VERSION=${1:?usage: scripts/lane-transformers.sh TRANSFORMERS_VERSION}
PINS=scripts/constraints-tf-$VERSION.txt
[ -f "$PINS" ] || { echo "no $PINS: transformers $VERSION is not a tested lane" >&2; exit 2; }
VENV=${SHARPV_VENVS:-.}/.venv-tf-$VERSION
PY=${PYTHON:-python3}
mapfile -t TESTS < <(grep -v -e '^#' -e '^$' scripts/integration-tests.txt)
STEP=${SHARPV_LANE_STEP:-all}
start=$(date +%s)
if [ "$STEP" != test ]; then
[ "${SHARPV_LANE_KEEP:-0}" = 1 ] || rm -rf "$VENV"
[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
constraints=$(mktemp)
trap 'rm -f "$constraints"' EXIT
grep -v -E '^(transformers|tokenizers|huggingface_hub|safetensors)==' scripts/constraints-cpu.txt \
  >"$constraints"
cat "$PINS" >>"$constraints"
log=$VENV/install.log
install() {
  "$VENV/bin/python" -m pip install -q --upgrade pip setuptools wheel
  "$VENV/bin/python" -c "import torch" 2>/dev/null \
    || "$VENV/bin/python" -m pip install -q torch==2.13.0   # CPU build, before anything pulls torch
  "$VENV/bin/python" -m pip install -q -c "$constraints" -e ".[hf,test]"
}
if ! install >"$log" 2>&1; then
  tail -n 40 "$log" >&2
  echo "lane transformers $VERSION: install failed (full log: $log)" >&2
  exit 2
fi
echo "lane transformers $VERSION: venv ready in $(( $(date +%s) - start )) s"
fi
[ "$STEP" != build ] || exit 0
got=$("$VENV/bin/python" -c "import transformers; print(transformers.__version__)")
[ "$got" = "$VERSION" ] || { echo "lane wanted transformers $VERSION, got $got" >&2; exit 2; }
status=0
"$VENV/bin/python" -m pytest -q -p no:cacheprovider "${TESTS[@]}" || status=$?
echo "lane transformers $VERSION: exit $status after $(( $(date +%s) - start )) s"
exit $status
