#!/usr/bin/env bash
# lmms-eval lane: build a venv with lmms-eval from nothing (pinned by
# scripts/lane-lmms-constraints.txt), install this package into it without letting pip
# swap torch, then run tests_engines/lmms: --model_args parsing, the model in process on
# tiny random-weight LLaVA-OneVision and Qwen2.5-VL checkpoints, and `lmms-eval eval
# --model sharpv` offline on the CPU (SharpV, dense=true, method=uniform) on a 4-document
# local video QA task. Nothing is downloaded at run time.
#
# Usage: scripts/lane-lmms.sh [--fresh]     (--fresh: delete the venv first)
# Env:   LMMS_VENV (default .venv-lmms in $SHARPV_VENVS when set, else in the checkout),
#        PYTHON (default python3.11 or python3),
#        SHARPV_LANE_STEP=build|test (one half; .ci/run builds lanes in the background)
# From nothing this took 8 min 46 s here on 2026-12-06 (venv 6 min 21 s, tests 2 min 20 s) on
# a 2-core machine shared with other work (load average about 5); the venv is about 7 GB.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV="${LMMS_VENV:-${SHARPV_VENVS:-.}/.venv-lmms}"
CONSTRAINTS="scripts/lane-lmms-constraints.txt"
PY="${PYTHON:-$(command -v python3.11 || command -v python3)}"
STEP="${SHARPV_LANE_STEP:-all}"
start=$(date +%s)

if [[ "${1:-}" == "--fresh" ]]; then
    rm -rf "$VENV"
fi

# a venv built from other pins is rebuilt (LMMS_VENV may point outside the clone to reuse it)
stamp="$(sha256sum "$CONSTRAINTS" | cut -c1-64)"
if [[ "$STEP" != test ]]; then
if [[ ! -x "$VENV/bin/lmms-eval" || "$(cat "$VENV/.lane-lmms-pins" 2>/dev/null)" != "$stamp" ]]; then
    echo "lane-lmms: building $VENV with $PY"
    rm -rf "$VENV"
    "$PY" -m venv "$VENV"
    pip=("$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -c "$CONSTRAINTS")
    # torch first, at the pinned release (see the constraints file for why 2.14.1)
    "${pip[@]}" torch
    "${pip[@]}" lmms-eval torchvision pytest
    echo "$stamp" > "$VENV/.lane-lmms-pins"
fi

# this package, editable (its entry points register the lmms-eval model); the constraints
# pin torch, so pip cannot replace the CPU build
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -c "$CONSTRAINTS" \
    -e ".[hf]"
"$VENV/bin/python" - <<'EOF'
import importlib.metadata as md
import torch
from lmms_eval.models import get_model
from sharpv.engines.lmms_eval import SharpVLMM
assert get_model("sharpv") is SharpVLMM, "the lmms_eval.models entry point is not registered"
print(
    f"lane-lmms: torch {torch.__version__}, lmms-eval {md.version('lmms_eval')}, "
    f"transformers {md.version('transformers')}: model 'sharpv' registered"
)
EOF
echo "lane-lmms: venv ready after $(( $(date +%s) - start )) s"
fi
[[ "$STEP" != build ]] || exit 0

export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
"$VENV/bin/python" -m pytest tests_engines/lmms -q -p no:cacheprovider
echo "lane-lmms: done after $(( $(date +%s) - start )) s"
