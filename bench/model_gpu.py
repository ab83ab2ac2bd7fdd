"""GPU figures and the timing assumptions of the static performance model (``bench/model.py``).

Nothing here was measured on this project's machines (there is no GPU). Each figure says
where it comes from; the model's output repeats them beside every prediction.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

__all__ = ["GPU", "GPUS", "ASSUMPTIONS"]


@dataclass(frozen=True)
class GPU:
    """One target of the model."""

    name: str
    arch: int
    sms: int
    #: device-to-device copy bandwidth (read + write bytes per second) used for the floor
    copy_bw: float
    copy_bw_source: str
    #: L2 cache bytes and the part of it assumed to still hold the most recently read lines
    l2_bytes: int
    l2_reuse_bytes: int
    regs_per_sm: int = 65536
    max_warps_per_sm: int = 64
    max_ctas_per_sm: int = 32
    shared_per_sm: int = 228 * 1024
    clock_hz: float = 1.755e9

    def as_dict(self) -> dict:
        return asdict(self)


GPUS: dict[str, GPU] = {
    "h100": GPU(
        name="H100 SXM5 80GB (sm_90)", arch=90, sms=132, copy_bw=3.0e12,
        copy_bw_source="about 3.0 TB/s device-to-device copy, as measured on H100 SXM and "
        "stated in the project's brief (90% of the 3.35 TB/s datasheet peak)",
        l2_bytes=50 * 2**20, l2_reuse_bytes=25 * 2**20, shared_per_sm=228 * 1024,
        clock_hz=1.755e9,
    ),
    "a100": GPU(
        name="A100 SXM4 80GB (sm_80)", arch=80, sms=108, copy_bw=1.83e12,
        copy_bw_source="derived, not measured: the 2.039 TB/s datasheet peak of A100 80GB "
        "SXM times the H100 copy/peak ratio 3.0/3.35 = 0.896",
        l2_bytes=40 * 2**20, l2_reuse_bytes=20 * 2**20, shared_per_sm=164 * 1024,
        clock_hz=1.41e9,
    ),
}  # fmt: skip

#: Timing assumptions, stated once; the JSON and docs/benchmarks.md repeat them.
ASSUMPTIONS: dict[str, float | str] = {
    "launch_gap_us": 2.0,
    "launch_gap_note": "GPU-side gap between two kernels queued back to back on one stream",
    "host_launch_us": 11.0,
    "host_launch_note": "host time to enqueue one already-compiled Triton kernel from Python "
    "(JITFunction.run: binder, cache key, driver call): published measurements are 8.68 us "
    "(vllm-project/vllm#34838, GB200), ~11 us (meta-pytorch/tritonbench#1002) and ~12.5 us "
    "for 19 arguments (facebookexperimental/triton#1231); see bench/NOTES.md. The GPU cannot "
    "start a kernel before the host has enqueued it (no CUDA graph)",
    "op_python_note": "the op's own Python per call (checks, dispatch, planning, buffers), "
    "measured on this machine with the kernels stubbed: bench/results/overhead-cpu.json "
    "(python -m bench.bench_overhead; op_us: the median less the stubs' own work); added "
    "before the first launch",
    "no_l2_note": "GPU-busy and end-to-end figures assume no L2 reuse between passes (a one-wave "
    "first pass over more data than L2 holds leaves little for the next); the L2-reuse "
    "variant is kept in the JSON as *_l2 (optimistic)",
    "readback_us": 5.0,
    "readback_note": "a host read-back (a few bytes device to host, stream synchronisation) "
    "after the GPU finished what was queued before it",
    "mem_latency_us": 0.8,
    "mem_latency_note": "latency of one round of dependent global loads under load; a CTA "
    "whose main loop is not software-pipelined pays it once per iteration, a pipelined one "
    "once per `num_stages` iterations",
    "l2_latency_us": 0.3,
    "l2_latency_note": "the same for a kernel that reads only small data the previous kernels "
    "just wrote (partial sums, counts): L2 hits",
    "reduction_step_us": 0.1,
    "reduction_step_note": "one step of the budget bisection: float64 quotas of a chunk of "
    "frames and a block reduction, about 175 clocks",
    "per_sm_bw_share": 4.0,
    "per_sm_bw_note": "one SM draws at most this multiple of its fair share (copy_bw / SMs)",
    "ipc_per_sm": 4.0,
    "ipc_note": "warp instructions issued per SM per clock (4 schedulers, no stalls)",
    "l2_note": "L2 reuse: a kernel re-reading bytes read by the previous kernel finds at most "
    "`l2_reuse_bytes` (half the L2: two partitions, lines may be duplicated) of the most "
    "recently read ones in L2; predictions are given with and without that reuse",
}
