#!/usr/bin/env bash
# Create .venv and install sharpv-kernels with its test, benchmark and Hugging Face extras.
# On a machine without an NVIDIA GPU the CPU build of torch is installed first, so that
# the plain `torch` requirement does not pull gigabytes of CUDA packages.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
. .venv/bin/activate
python -m pip install -q --upgrade pip setuptools wheel
pins=()
if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
  python -c "import torch" 2>/dev/null || python -m pip install -q torch
else
  python -c "import torch" 2>/dev/null || python -m pip install -q torch==2.13.0   # CPU build
  [ "${SHARPV_UNPINNED:-0}" = 1 ] || pins=(-c scripts/constraints-cpu.txt)
fi
python -m pip install -q "${pins[@]}" -e ".[hf,test,bench]"
python -c "import torch, triton, sharpv_kernels; print('sharpv-kernels ready: torch', torch.__version__, 'triton', triton.__version__)"
