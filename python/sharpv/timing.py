"""Timing of one ``model.generate`` call: TTFT, time per output token, peak memory.

Used by ``sharpv demo``, ``sharpv run`` and the end-to-end benchmark. Memory is measured
where it can be measured reliably: on CUDA, the allocator's peak over the call. On CPU the
resident set is a poor proxy (the allocator reuses freed pages, other threads allocate), so
it is sampled only on request and reported as such (:attr:`RunMetrics.peak_mem_source`).

Examples:
    >>> m = measure_generate(model, inputs, max_new_tokens=8)  # doctest: +SKIP
    >>> m.ttft_s, m.tpot_s, m.peak_mem_bytes, m.peak_mem_source  # doctest: +SKIP
    (0.41, 0.012, None, None)
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import torch

__all__ = ["RunMetrics", "PeakMemory", "measure_generate"]

#: ``RunMetrics.peak_mem_source`` values.
CUDA_ALLOCATOR = "cuda-allocator"
RSS_SAMPLED = "rss-sampled"


@dataclass
class RunMetrics:
    """Timings and memory of one ``generate`` call.

    Attributes:
        ttft_s: seconds from the call to the first new token (vision and pruning included).
        tpot_s: mean seconds per output token after the first.
        total_s: seconds of the whole call.
        new_tokens: tokens generated (sample 0).
        peak_mem_bytes: peak memory growth during the call, or ``None`` when not measured.
        peak_mem_source: how it was measured: ``"cuda-allocator"`` (exact peak of the CUDA
            caching allocator), ``"rss-sampled"`` (growth of the resident set sampled every
            2 ms: noisy, allocator reuse does not show), or ``None``.
        tokens: ``(new_tokens,)`` generated ids of sample 0.
    """

    ttft_s: float
    tpot_s: float
    total_s: float
    new_tokens: int
    peak_mem_bytes: int | None
    peak_mem_source: str | None = None
    tokens: list[int] = field(default_factory=list)


class _TokenClock:
    """A stopping criterion that never stops: it timestamps every generation step."""

    def __init__(self, bar: Any = None) -> None:
        self.times: list[float] = []
        self.bar = bar

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor, **kwargs: Any):
        self.times.append(time.perf_counter())
        if self.bar is not None:
            self.bar.update(1)
        return torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)


def _rss_bytes() -> int:
    try:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, AttributeError):  # pragma: no cover - non-Linux
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


class PeakMemory:
    """Peak memory growth over a ``with`` block.

    CUDA devices: the caching allocator's peak (exact). Other devices: with ``cpu_rss``
    the resident-set growth sampled every 2 ms by a thread (noisy), else nothing
    (``peak`` stays ``None``).

    Examples:
        >>> with PeakMemory(torch.device("cpu")) as mem:
        ...     x = torch.ones(10)
        >>> mem.peak is None, mem.source is None
        (True, True)
    """

    def __init__(self, device: torch.device, *, cpu_rss: bool = False) -> None:
        self.device = device
        self.cpu_rss = cpu_rss
        self.peak: int | None = None
        self.source: str | None = None
        self._thread: threading.Thread | None = None

    def __enter__(self) -> PeakMemory:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self.base = torch.cuda.memory_allocated(self.device)
            return self
        if not self.cpu_rss:
            return self
        self.base = _rss_bytes()
        self._top = self.base
        self._stop = threading.Event()

        def sample() -> None:
            while not self._stop.is_set():
                self._top = max(self._top, _rss_bytes())
                self._stop.wait(0.002)

        self._thread = threading.Thread(target=sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            self.peak = torch.cuda.max_memory_allocated(self.device) - self.base
            self.source = CUDA_ALLOCATOR
            return
        if self._thread is None:
            return
        self._stop.set()
        self._thread.join()
        self.peak = max(self._top, _rss_bytes()) - self.base
        self.source = RSS_SAMPLED


def measure_generate(
    model: torch.nn.Module,
    inputs: dict[str, Any],
    max_new_tokens: int,
    bar: Any = None,
    *,
    warmup: bool = False,
    cpu_rss: bool = True,
) -> RunMetrics:
    """Run greedy ``model.generate(**inputs)`` and time it token by token.

    Args:
        model: a transformers generation model.
        inputs: keyword arguments of ``generate`` (``input_ids`` ``(B, S)`` required).
        max_new_tokens: tokens to generate (exactly: ``min_new_tokens`` is set too).
        bar: optional progress bar, advanced once per token.
        warmup: run a short untimed generation first, so that one-time costs (lazy imports,
            operator registration, allocator growth) do not land in the timed run.
        cpu_rss: off CUDA, sample the resident set for ``peak_mem_bytes`` (noisy; see
            :class:`PeakMemory`); when False it is ``None`` there.

    Returns:
        A :class:`RunMetrics`.

    Examples:
        >>> m = measure_generate(model, inputs, 8, warmup=True)  # doctest: +SKIP
        >>> f"TTFT {m.ttft_s * 1e3:.0f} ms"  # doctest: +SKIP
        'TTFT 412 ms'
    """
    from transformers import StoppingCriteriaList

    if warmup:
        model.generate(**inputs, max_new_tokens=2, min_new_tokens=2, do_sample=False)

    clock = _TokenClock(bar)
    device = next(model.parameters()).device
    prompt_len = inputs["input_ids"].shape[1]
    with PeakMemory(device, cpu_rss=cpu_rss) as mem:
        start = time.perf_counter()
        out = model.generate(
            **inputs,
            max_new_tokens=max_new_tokens,
            min_new_tokens=max_new_tokens,
            do_sample=False,
            stopping_criteria=StoppingCriteriaList([clock]),
        )
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        end = time.perf_counter()
    times = clock.times or [end]
    n = len(times)
    return RunMetrics(
        ttft_s=times[0] - start,
        tpot_s=(times[-1] - times[0]) / (n - 1) if n > 1 else 0.0,
        total_s=end - start,
        new_tokens=n,
        peak_mem_bytes=None if mem.peak is None else int(mem.peak),
        peak_mem_source=mem.source,
        tokens=out[0, prompt_len:].tolist(),
    )
