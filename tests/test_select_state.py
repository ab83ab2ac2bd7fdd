"""Per-thread state of the per-frame kernels bounded independently of ``f`` (issue 19, item 9).

``frame_select_kernel`` and ``gather_kernel`` walk a frame's tokens in row blocks (a tiled
rank; kept rows matched to output slots one token block at a time), so their registers,
stack and spills do not depend on the tokens per frame. Compiled ahead of time for sm_80 and
sm_90 (``scripts/aot_compile_check.py --frames``, Triton's bundled ptxas, in a subprocess:
this session interprets) at LLaVA-OV-7B's width, bf16, the GPU's own plan, for
``f`` in {729, 4096, 16384 = MAX_TOKENS_PER_FRAME}: no local-memory stores (spills) and no
stack. About 15 s per architecture with a cold cache (every ``f`` compiles the same kernels).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys

import numpy as np
import pytest

from sharpv_kernels.visual.launch import MAX_TOKENS_PER_FRAME
from sharpv_kernels.vocab import ZERO_NORM_EPS
from tests.test_aot_compile import SCRIPT

FRAMES = (729, 4096, MAX_TOKENS_PER_FRAME)
_LINE = re.compile(r"^ok   (\w+) from visual_prune\[[^\]]*f=(\d+)\]: .*stack=(\d+)B spills=(\d+)B")


@pytest.mark.parametrize("arch", [90, 80])
def test_no_spills_and_no_stack_at_any_f(arch, tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env["TRITON_CACHE_DIR"] = str(tmp_path / "triton-cache")
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--arch", str(arch), "--frames", *map(str, FRAMES)],
        capture_output=True, text=True, env=env, timeout=900,
    )  # fmt: skip
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0 and ", 0 failures" in proc.stdout, out[-4000:]
    seen = set()
    for line in proc.stdout.splitlines():
        if m := _LINE.match(line):
            kernel, f, stack, spills = m.group(1), int(m.group(2)), int(m.group(3)), int(m.group(4))
            seen.add((kernel, f))
            assert spills == 0 and stack == 0, line
    assert seen == {(k, f) for k in ("frame_select_kernel", "gather_kernel") for f in FRAMES}


def test_zero_norm_test_without_a_square_root():
    """The select kernel's ``sq > EPS * EPS`` is ``sqrt_rn(sq) > EPS`` in float32: the float32
    ``EPS * EPS`` is the largest square whose correctly rounded root is at most ``EPS``."""
    eps, c = np.float32(ZERO_NORM_EPS), np.float32(ZERO_NORM_EPS * ZERO_NORM_EPS)
    assert np.sqrt(c) <= eps < np.sqrt(np.nextafter(c, np.float32(1)))
