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
if ! python -c "import torch" 2>/dev/null; then
  if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
    python -m pip install -q torch
  else
    python -m pip install -q torch==2.13.0   # CPU build
  fi
fi
python -m pip install -q -e ".[hf,test,bench]"
python -c "import torch, triton, sharpv_kernels; print('sharpv-kernels ready: torch', torch.__version__, 'triton', triton.__version__)"
