"""Compile every Triton kernel of the project for a GPU target without a GPU.

Triton's interpreter (what CI runs) does not type-check kernels the way the compiler does
(branch types, specialisation of integer arguments, unsupported ops). This script lowers
each kernel through Triton's real pipeline down to PTX and cubin for the chosen target, so
such errors show up on a machine without a GPU.

Usage: python scripts/aot_compile_check.py [--arch 90]
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile

import triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource

from sharpv_kernels._utils import next_power_of_2
from sharpv_kernels.visual import kernels as VK
from sharpv_kernels.visual import launch as VL


def _visual_cases() -> list[tuple[str, object, dict, dict, int]]:
    """The visual kernels with the launch parameters ``launch.py`` picks for f = 7, 196, 729."""
    cases = []
    for f in (7, 196, 729):
        bf = next_power_of_2(f)
        bd = VL._tile_d(bf)
        tile_warps = VL._tile_warps(bf, bd)
        for dt in ("bf16", "fp16", "fp32"):
            cases.append((
                f"frame_stats_kernel[{dt},BLOCK_F={bf},BLOCK_D={bd}]", VK.frame_stats_kernel,
                {"x_ptr": f"*{dt}", "cu_ptr": "*i32", "part_ptr": "*fp32", "msq_ptr": "*fp32",
                 "hdr_ptr": "*i32", "n_videos": "i32", "f": "i32", "d": "i32", "d_split": "i32",
                 "stride_t": "i32", "stride_i": "i32"},
                {"BLOCK_F": bf, "BLOCK_D": bd, "BLOCK_B": 2}, tile_warps,
            ))  # fmt: skip
            for mode in range(4):
                cases.append((
                    f"gather_kernel[{dt},mode={mode},BLOCK_F={bf},BLOCK_D={bd}]", VK.gather_kernel,
                    {"x_ptr": f"*{dt}", "cu_ptr": "*i32", "r_ptr": "*fp32", "rank_ptr": "*i32",
                     "cnt_ptr": "*i32", "out_ptr": f"*{dt}", "idx_ptr": "*i64",
                     "cu_tok_ptr": "*i32", "n_videos": "i32", "n_frames": "i32", "f": "i32",
                     "d": "i32", "d_per_prog": "i32", "stride_t": "i32", "stride_i": "i32",
                     "min_keep": "i32", "budget": "fp32"},
                    {"MODE": mode, "STEPS": 64, "BLOCK_F": bf, "BLOCK_D": bd, "BLOCK_B": 2,
                     "BLOCK_N": 32}, tile_warps,
                ))  # fmt: skip
        for mode in range(4):
            for metric in range(2):
                for store_st, rank in ((False, True), (True, False)):
                    cases.append((
                        f"frame_select_kernel[mode={mode},metric={metric},st={store_st},"
                        f"BLOCK_F={bf}]",
                        VK.frame_select_kernel,
                        {"part_ptr": "*fp32", "msq_ptr": "*fp32", "cu_ptr": "*i32",
                         "hdr_ptr": "*i32", "s_ptr": "*fp32", "tt_ptr": "*fp32", "i_ptr": "*fp32",
                         "r_ptr": "*fp32", "rank_ptr": "*i32", "cnt_ptr": "*i32",
                         "n_videos": "i32", "n_frames": "i32", "f": "i32", "n_split": "i32",
                         "w": "fp32", "threshold": "fp32", "k_fixed": "i32", "min_keep": "i32",
                         "budget": "fp32"},
                        {"MODE": mode, "METRIC": metric, "STORE_ST": store_st, "RANK": rank,
                         "BLOCK_F": bf, "BLOCK_J": min(bf, VL._rank_block(bf)), "BLOCK_B": 2},
                        VL._select_warps(bf),
                    ))  # fmt: skip
    return cases


def _memory_cases() -> list[tuple[str, object, dict, dict, int]]:
    """The Memory SharpV kernels with the launch parameters ``memory/launch.py`` picks."""
    from sharpv_kernels.memory import kernels as MK
    from sharpv_kernels.memory import launch as ML

    cases = []
    for dt in ("bf16", "fp16", "fp32"):
        for d in (64, 896, 3584):
            cases.append((
                f"_sim_partial_kernel[{dt},d={d}]", MK._sim_partial_kernel,
                {"h_ptr": f"*{dt}", "r_ptr": f"*{dt}", "start_ptr": "*i64", "len_ptr": "*i64",
                 "part_ptr": "*fp32", "S": "i32", "D": "i32", "stride_hb": "i32",
                 "stride_hs": "i32", "stride_rb": "i32", "stride_rs": "i32", "n_tiles": "i32"},
                dict(zip(("BLOCK_T", "BLOCK_D"), ML._sim_blocks(d)[:2], strict=True)),
                ML._sim_blocks(d)[2],
            ))  # fmt: skip
        for head_dim in (64, 128):
            bt, bd, warps = ML._compact_blocks(head_dim)
            for len_t in ("i32", "i64"):
                cases.append((
                    f"_kv_compact_kernel[{dt},D={head_dim},lengths={len_t}]",
                    MK._kv_compact_kernel,
                    {"base_ptr": f"*{dt}", "table_ptr": "*i64", "cap_ptr": "*i64",
                     "lengths_ptr": f"*{len_t}", "start_ptr": "*i64", "span_ptr": "*i64",
                     "sim_ptr": "*fp32", "threshold": "fp32", "B": "i32", "D": "i32",
                     "stride_len_l": "i32", "stride_sim_l": "i32"},
                    {"BLOCK_T": bt, "BLOCK_D": bd}, warps,
                ))  # fmt: skip
    cases.append((
        "_sim_finish_kernel", MK._sim_finish_kernel,
        {"part_ptr": "*fp32", "len_ptr": "*i64", "out_ptr": "*fp32", "n_tiles": "i32"},
        {"BLOCK": 64}, 4,
    ))  # fmt: skip
    return cases


def _resource_usage(cubin: bytes) -> str:
    """Registers and spill bytes of the compiled kernel, read with ``cuobjdump -res-usage``."""
    tool = os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin", "cuobjdump")
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "k.cubin")
        with open(path, "wb") as fh:
            fh.write(cubin)
        out = subprocess.run([tool, "-res-usage", path], capture_output=True, text=True)
    text = out.stdout + out.stderr
    regs = re.search(r"REG:(\d+)", text)
    stack = re.search(r"STACK:(\d+)", text)
    return f"regs={regs.group(1) if regs else '?'} stack={stack.group(1) if stack else '?'}B"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--arch", type=int, default=90, help="CUDA compute capability, e.g. 80, 90")
    args = p.parse_args()
    target = GPUTarget("cuda", args.arch, 32)
    failures = 0
    for name, fn, signature, constexprs, warps in _visual_cases() + _memory_cases():
        sig = dict(signature)
        sig.update({k: "constexpr" for k in constexprs})
        try:
            compiled = triton.compile(
                ASTSource(fn, sig, constexprs), target=target, options={"num_warps": warps}
            )
            print(f"ok   {name}: warps={warps} {_resource_usage(compiled.asm['cubin'])}")
        except Exception as exc:  # noqa: BLE001 - report every kernel
            failures += 1
            print(f"FAIL {name}: {type(exc).__name__}: {str(exc)[:2000]}")
    print(f"{failures} failures")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
