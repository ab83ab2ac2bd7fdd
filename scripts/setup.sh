#!/usr/bin/env bash
# Create .venv and install sharpv-kernels (editable) with its test, benchmark and Hugging Face
# extras. On a machine without an NVIDIA GPU the CPU build of torch is installed first, so that
# the plain `torch` requirement does not pull gigabytes of CUDA packages.
#
# Quick when nothing changed: the install is skipped when .venv/.sharpv-setup-stamp holds the
# hash of what it depends on (setup.py, pyproject.toml, the CPU constraints, the GPU/CPU
# choice, SHARPV_UNPINNED and this folder) and the distribution is installed. Sources need no
# reinstall (editable install). Delete the stamp (or set SHARPV_REINSTALL=1) to force one.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
STAMP=.venv/.sharpv-setup-stamp

if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
  gpu=1
else
  gpu=0
fi
key=$( { cat setup.py pyproject.toml scripts/constraints-cpu.txt
         echo "gpu=$gpu unpinned=${SHARPV_UNPINNED:-0} dir=$PWD"; } | sha256sum | cut -d' ' -f1 )

if [ "${SHARPV_REINSTALL:-0}" != 1 ] && [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$key" ] \
   && .venv/bin/python -c "import importlib.metadata as m; m.version('sharpv-kernels')" 2>/dev/null; then
  echo "sharpv-kernels ready (.venv unchanged; SHARPV_REINSTALL=1 reinstalls)"
  exit 0
fi

[ -x .venv/bin/python ] || "$PY" -m venv .venv
. .venv/bin/activate
rm -f "$STAMP"
python -m pip install -q --upgrade pip setuptools wheel
pins=()
if [ "$gpu" = 1 ]; then
  python -c "import torch" 2>/dev/null || python -m pip install -q torch
else
  python -c "import torch" 2>/dev/null || python -m pip install -q torch==2.13.0   # CPU build
  [ "${SHARPV_UNPINNED:-0}" = 1 ] || pins=(-c scripts/constraints-cpu.txt)
fi
python -m pip install -q "${pins[@]}" -e ".[hf,test,bench]"
python -c "import torch, triton, sharpv_kernels; print('sharpv-kernels ready: torch', torch.__version__, 'triton', triton.__version__)"
# build the native CPU kernel now rather than on the first CPU call (about a second)
python -c "from sharpv_kernels.ops.visual_prune.native import native_unavailable_reason as r; why = r(); print('native CPU kernel:', why or 'built')"
echo "$key" > "$STAMP"
