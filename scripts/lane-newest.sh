#!/usr/bin/env bash
# CI lane "newest": the newest transformers, torch and Triton that setup.py's declared ranges
# allow, resolved when the lane runs (no pins), in a venv built from nothing; then the
# integration-level tests (scripts/integration-tests.txt) and `sharpv demo`, on its synthetic
# clip and with --video on a generated file. A release inside the declared ranges is one users
# get from `pip install`, so this lane blocks like the pinned ones.
#
#   bash scripts/lane-newest.sh                  # build, test, then the beyond step
#   SHARPV_LANE_STEP=build|test|beyond bash scripts/lane-newest.sh
#
# build:  .venv-newest (in $SHARPV_VENVS when set, else in the checkout), removed first;
#         `pip install -e ".[hf,test]"` with no constraints of ours, so pip picks the newest
#         torch (and the triton it wants), transformers and its stack inside the ranges. Only
#         if that install fails is the CPU build torch==2.13.0 installed first (said loudly).
#         The registry's torch is the CUDA build; it runs on the CPU. A machine's own pip
#         configuration still applies (here /etc/xdg/pip caps torch at 2.14.1).
# test:   prints the resolved releases and the newest of each host on the index, runs the
#         checks; exits non-zero if any fails.
# beyond: never fails the run (exit 0). For each of transformers, torch, triton whose newest
#         release on the index lies OUTSIDE its tested range (sharpv._hosts.TESTED), upgrades
#         the lane's venv to it (lifting the machine's pip cap for this install only), runs
#         the same checks and prints "beyond: PASS ..." or what broke, so that a range can be
#         widened the day a release comes out. Run it after the test step (it changes the venv).
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${SHARPV_VENVS:-.}/.venv-newest
PY=${PYTHON:-python3}
STEP=${SHARPV_LANE_STEP:-all}
HOSTS=(transformers torch triton)
mapfile -t TESTS < <(grep -v -e '^#' -e '^$' scripts/integration-tests.txt)
vpy=$VENV/bin/python
start=$(date +%s)

# the installed release of each host and of the transformers stack, on one line
resolved() {
  "$vpy" - <<'EOF'
import importlib.metadata as m
names = ["transformers", "torch", "triton", "tokenizers", "huggingface_hub", "safetensors",
         "numpy", "av"]
print("resolved: " + ", ".join(f"{n} {m.version(n)}" for n in names))
EOF
}

# newest release of $1 on the package index (pip's own view, constraints not applied)
newest_on_index() {
  { "$vpy" -m pip index versions "$1" 2>/dev/null || true; } \
    | sed -n -E '1s/^[^ ]+ \(([^)]+)\).*/\1/p'
}

# the integration tests and the demo (synthetic clip, then --video on a generated file);
# runs every part and prints the failed ones; returns non-zero if any failed
checks() {
  local out failed=()
  out=$(mktemp -d)
  "$vpy" -m pytest -q -p no:cacheprovider "${TESTS[@]}" || failed+=("pytest")
  local demo=(--frames 4 --layers 2 --max-new-tokens 3 --no-progress)
  "$VENV/bin/sharpv" demo "${demo[@]}" --out-dir "$out/demo" || failed+=("sharpv demo")
  "$vpy" -c "from sharpv.video import synthetic_video, write_video
write_video('$out/clip.mp4', synthetic_video(12, 96), fps=6)"
  "$VENV/bin/sharpv" demo "${demo[@]}" --video "$out/clip.mp4" --out-dir "$out/video" \
    || failed+=("sharpv demo --video")
  rm -rf "$out"
  FAILED=$(IFS=,; echo "${failed[*]}")
  [ ${#failed[@]} = 0 ]
}

if [ "$STEP" = all ] || [ "$STEP" = build ]; then
  rm -rf "$VENV"
  "$PY" -m venv "$VENV"
  log=$VENV/install.log
  "$vpy" -m pip install -q --upgrade pip setuptools wheel >"$log" 2>&1
  if ! "$vpy" -m pip install -q -e ".[hf,test]" >>"$log" 2>&1; then
    tail -n 20 "$log" >&2
    echo "lane newest: FALLBACK: the newest torch the declared range allows could not be" \
      "installed; installing the CPU build torch==2.13.0 first" >&2
    "$vpy" -m pip install -q torch==2.13.0 >>"$log" 2>&1 \
      && "$vpy" -m pip install -q -e ".[hf,test]" >>"$log" 2>&1 \
      || { tail -n 40 "$log" >&2; echo "lane newest: install failed (log: $log)" >&2; exit 2; }
  fi
  resolved
  echo "lane newest: venv ready in $(( $(date +%s) - start )) s"
  [ "$STEP" != build ] || exit 0
fi

if [ "$STEP" = all ] || [ "$STEP" = test ]; then
  resolved
  for h in "${HOSTS[@]}"; do echo "  newest $h on the index: $(newest_on_index "$h")"; done
  status=0
  checks || { status=1; echo "lane newest: failed: $FAILED"; }
  echo "lane newest: exit $status after $(( $(date +%s) - start )) s"
  [ $status = 0 ] || exit $status
  [ "$STEP" = all ] || exit 0
fi

# beyond: the newest releases outside the declared ranges; reports, never fails
upgrade=()
for h in "${HOSTS[@]}"; do
  v=$(newest_on_index "$h")
  if [ -z "$v" ]; then
    echo "beyond: could not read the newest $h from the index; skipped"
  elif "$vpy" -c "import sys; from sharpv._hosts import TESTED, beyond
sys.exit(0 if beyond('$v', TESTED['$h']) else 1)" 2>/dev/null; then
    upgrade+=("$h==$v")
  else
    echo "beyond: $h $v is the newest release and lies inside the declared range"
  fi
done
if [ ${#upgrade[@]} = 0 ]; then
  echo "beyond: PASS (nothing to try: no release outside the declared ranges)"
  exit 0
fi
echo "beyond: trying ${upgrade[*]} (outside the declared ranges)"
log=$VENV/beyond.log
# PIP_CONSTRAINT replaces a machine's pip constraint file (e.g. a torch cap) for this install
if ! PIP_CONSTRAINT=/dev/null "$vpy" -m pip install -q "${upgrade[@]}" >"$log" 2>&1; then
  echo "beyond: BROKE: pip could not install ${upgrade[*]}:"
  tail -n 15 "$log"
  exit 0
fi
resolved
{ "$vpy" -c "import sharpv" 2>&1 || true; } | sed 's/^/beyond: import says: /'
# the warning above is expected here; silenced so that the CLI's one-line errors stay one line
if PYTHONWARNINGS=ignore::UserWarning:sharpv checks; then
  echo "beyond: PASS on ${upgrade[*]}"
else
  echo "beyond: BROKE on ${upgrade[*]}: $FAILED failed (non-blocking)"
fi
echo "lane newest (beyond): done after $(( $(date +%s) - start )) s"
exit 0
