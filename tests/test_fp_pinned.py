"""Floating point pinned on the GPU as the interpreter computes it (issue 19, item 8).

The kernels are compiled ahead of time for sm_90 (``scripts/aot_compile_check.py --fp``, in a
subprocess: this session interprets) at LLaVA-OV-7B's shape, every kernel and the metric and
mode branches: no approximate division or square root (``div.full.f32``, ``div.approx``,
``rsqrt.approx``, ``sqrt.approx``) may reach the PTX, and every launch passes
``enable_fp_fusion=False`` (fused products are the explicit ``tl.fma`` the source writes).
About 25 s.
"""

from __future__ import annotations

import os
import subprocess
import sys

from tests.test_aot_compile import SCRIPT


def test_no_approximate_maths_in_the_ptx(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env["TRITON_CACHE_DIR"] = str(tmp_path / "triton-cache")
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--arch", "90", "--fp"],
        capture_output=True, text=True, env=env, timeout=900,
    )  # fmt: skip
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0 and ", 0 failures" in proc.stdout, out[-4000:]
    names = {line.split(" from ")[0].split()[-1] for line in proc.stdout.splitlines()
             if line.startswith("ok ")}  # fmt: skip
    assert names == {"frame_norms_kernel", "frame_scores_kernel", "frame_select_kernel",
                     "video_counts_kernel", "gather_kernel", "_sim_partial_kernel",
                     "_sim_finish_kernel", "_kv_compact_kernel"}  # fmt: skip
