"""``sharpv demo``: dense vs SharpV on a synthetic video, with nothing downloaded.

What it builds, all in code:

* a 32-frame clip (:func:`sharpv.video.synthetic_video`): a static stretch, a moving
  square, a hard scene cut, another static stretch, a moving disc;
* a small LLaVA-OneVision with RANDOM weights (:func:`sharpv.tiny_models.tiny_llava_onevision`):
  SigLIP-style tower at 384 px / patch 14, so each frame gives 196 video tokens as in the
  real model, and a small Qwen2 language model;
* a word-level tokenizer (:func:`sharpv.tiny_models.tiny_tokenizer`); no processor is used:
  the prompt's ``<video>`` is expanded to ``frames * 196 + 1`` placeholders exactly as
  ``LlavaOnevisionProcessor`` does, and frames are normalised as its video processor does.

The answer text is meaningless (random weights); the statistics and timings are real.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import torch

__all__ = ["DemoResult", "RunMetrics", "run_demo", "measure_generate"]

_DEMO_PROMPT = "user <video> what happens in the video ? assistant"


@dataclass
class RunMetrics:
    """Timings and memory of one ``generate`` call.

    Attributes:
        ttft_s: seconds from the call to the first new token (vision and pruning included).
        tpot_s: mean seconds per output token after the first.
        total_s: seconds of the whole call.
        new_tokens: tokens generated (sample 0).
        peak_mem_bytes: peak memory during the call: CUDA allocator peak on GPU, resident
            set growth over the call (sampled every 2 ms) on CPU.
        tokens: ``(new_tokens,)`` generated ids of sample 0.
    """

    ttft_s: float
    tpot_s: float
    total_s: float
    new_tokens: int
    peak_mem_bytes: int
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


class _PeakMemory:
    """Peak memory over a ``with`` block (CUDA allocator, else sampled RSS growth)."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.peak = 0

    def __enter__(self) -> _PeakMemory:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self.base = torch.cuda.memory_allocated(self.device)
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
            return
        self._stop.set()
        self._thread.join()
        self.peak = max(self._top, _rss_bytes()) - self.base


def measure_generate(
    model: torch.nn.Module,
    inputs: dict[str, Any],
    max_new_tokens: int,
    bar: Any = None,
    *,
    warmup: bool = False,
) -> RunMetrics:
    """Run greedy ``model.generate(**inputs)`` and time it token by token.

    With ``warmup`` a short untimed generation runs first, so that one-time costs (lazy
    imports, operator registration, allocator growth) do not land in the timed run.
    """
    from transformers import StoppingCriteriaList

    if warmup:
        model.generate(**inputs, max_new_tokens=2, min_new_tokens=2, do_sample=False)

    clock = _TokenClock(bar)
    device = next(model.parameters()).device
    prompt_len = inputs["input_ids"].shape[1]
    with _PeakMemory(device) as mem:
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
        peak_mem_bytes=int(mem.peak),
        tokens=out[0, prompt_len:].tolist(),
    )


@dataclass
class DemoResult:
    """What :func:`run_demo` measured; ``stats`` is SharpV's ``model.sharpv_stats``."""

    dense: RunMetrics
    sharpv: RunMetrics
    stats: Any
    prompt_tokens: int
    layers: int
    frames: int
    tokens_per_frame: int
    png_retention: str
    png_similarity: str
    dense_answer: str
    sharpv_answer: str


def _mib(n: int) -> str:
    return f"{n / 2**20:7.1f} MiB"


def run_demo(
    *,
    frames: int = 32,
    out_dir: str | os.PathLike = "sharpv-demo",
    max_new_tokens: int = 12,
    layers: int = 8,
    hidden: int = 128,
    seed: int = 0,
    device: str = "cpu",
    config: Any = None,
    progress: bool = True,
    echo: Any = print,
) -> DemoResult:
    """Build everything in code, run dense then SharpV, print a report and write two PNGs.

    Args:
        frames: frames of the synthetic clip.
        out_dir: folder for ``retention.png`` and ``similarity.png`` (created).
        max_new_tokens: tokens generated by each run.
        layers: decoder layers of the random language model.
        hidden: hidden size of the random language model.
        seed: seed of the weights and the clip's texture.
        device: torch device.
        config: a :class:`sharpv.SharpVConfig` (paper defaults when ``None``).
        progress: show tqdm progress bars.
        echo: function printing one line of the report.
    """
    from tqdm.auto import tqdm

    from .config import SharpVConfig
    from .integration import apply_sharpv, revert_sharpv
    from .plots import plot_frame_retention, plot_layer_similarity
    from .tiny_models import VIDEO_ID, tiny_llava_onevision, tiny_tokenizer
    from .video import SIGLIP_MEAN, SIGLIP_STD, frames_to_pixels, scene_cut_frame, synthetic_video

    config = config or SharpVConfig()
    os.makedirs(out_dir, exist_ok=True)
    torch.manual_seed(seed)
    image_size, patch = 384, 14
    echo("SharpV demo. NOTE: the model below has RANDOM weights (nothing is downloaded);")
    echo("its answers are meaningless, the pruning statistics, timings and memory are real.")

    steps = tqdm(total=4, desc="setup", disable=not progress, leave=False)
    steps.set_postfix_str("synthetic video")
    clip = synthetic_video(frames, image_size, seed=seed)
    pixels = frames_to_pixels(clip, image_size, SIGLIP_MEAN, SIGLIP_STD)[None]
    steps.update(1)
    steps.set_postfix_str("random LLaVA-OneVision")
    tok = tiny_tokenizer()
    model = tiny_llava_onevision(
        vocab=len(tok),
        hidden=hidden,
        layers=layers,
        image_size=image_size,
        patch_size=patch,
        vision_hidden=64,
        vision_layers=1,
        attn_implementation="sdpa",
        seed=seed,
    ).to(device)
    steps.update(1)
    steps.set_postfix_str("prompt")
    f = ((image_size // patch) + 1) // 2
    f = f * f
    ids = tok(_DEMO_PROMPT, add_special_tokens=False).input_ids
    at = ids.index(VIDEO_ID)
    ids = [tok.bos_token_id] + ids[:at] + [VIDEO_ID] * (frames * f + 1) + ids[at + 1 :]
    inputs = {
        "input_ids": torch.tensor([ids], device=device),
        "attention_mask": torch.ones(1, len(ids), dtype=torch.long, device=device),
        "pixel_values_videos": pixels.to(device),
    }
    steps.update(1)
    steps.close()

    with torch.inference_mode():
        label = "SharpV" if config.method == "sharpv" else config.method
        with tqdm(total=max_new_tokens, desc="dense  generate", disable=not progress) as bar:
            dense = measure_generate(model, inputs, max_new_tokens, bar, warmup=True)
        apply_sharpv(model, config)
        try:
            with tqdm(total=max_new_tokens, desc=f"{label} generate", disable=not progress) as bar:
                sharp = measure_generate(model, inputs, max_new_tokens, bar, warmup=True)
            stats = model.sharpv_stats
        finally:
            revert_sharpv(model)

    s = stats[0]
    n_layers = model.config.text_config.num_hidden_layers
    cut = scene_cut_frame(frames)
    png1 = plot_frame_retention(
        s.frame_ratios,
        s.frame_counts,
        s.tokens_per_frame,
        os.path.join(out_dir, "retention.png"),
        marks={frames // 4: "motion", cut: "scene cut", (7 * frames) // 8: "motion"},
    )
    sims = s.layer_similarities if s.layer_similarities is not None else torch.ones(n_layers)
    png2 = plot_layer_similarity(
        sims,
        config.memory_threshold,
        os.path.join(out_dir, "similarity.png"),
        dropped=s.dropped_layers,
    )

    # ---- report ----
    echo("")
    echo(
        f"video: {frames} frames x {f} tokens = {frames * f} video tokens; prompt "
        f"{len(ids)} tokens; LM: {n_layers} layers, hidden {hidden}; device {device}"
    )
    echo(f"config: {config}")
    echo(f"per-frame keep ratio r_t and tokens kept (of {f}):")
    for t0 in range(0, frames, 8):
        cells = [
            f"{t:2d}:{float(s.frame_ratios[t]):.2f}/{int(s.frame_counts[t]):3d}"
            for t in range(t0, min(t0 + 8, frames))
        ]
        echo("  " + "  ".join(cells))
    if s.layer_similarities is not None:
        sim_txt = " ".join(f"{float(x):.2f}" for x in s.layer_similarities)
        dropped = [int(i) for i in torch.nonzero(s.dropped_layers).flatten()]
        echo(f"per-layer visual similarity: {sim_txt}")
        echo(f"layers dropped (sim < {config.memory_threshold:g}): {dropped or 'none'}")
    kept = s.visual_tokens_kept
    kv_dense = n_layers * len(ids)
    kv_sharp = n_layers * (len(ids) - s.visual_tokens_in + kept) - round(
        kept * n_layers * (1 - s.memory_ratio)
    )
    tc = model.config.text_config
    head_dim = getattr(tc, "head_dim", None) or tc.hidden_size // tc.num_attention_heads
    kv_entry_bytes = 2 * tc.num_key_value_heads * head_dim * next(model.parameters()).element_size()
    on_gpu = next(model.parameters()).device.type == "cuda"
    echo("")
    echo(f"{'':24s}{'dense':>14s}{label:>14s}")
    rows = [
        ("VR (visual tokens kept)", "100.0%", f"{s.visual_ratio:.1%}"),
        ("MR (visual KV kept)", "100.0%", f"{s.memory_ratio:.1%}"),
        ("token budget VR*MR", "100.0%", f"{s.token_budget:.1%}"),
        ("KV entries after prefill", f"{kv_dense}", f"{kv_sharp}"),
        (
            "KV cache after prefill",
            _mib(kv_dense * kv_entry_bytes),
            _mib(kv_sharp * kv_entry_bytes),
        ),
        ("TTFT", f"{dense.ttft_s * 1e3:.0f} ms", f"{sharp.ttft_s * 1e3:.0f} ms"),
        ("time per output token", f"{dense.tpot_s * 1e3:.1f} ms", f"{sharp.tpot_s * 1e3:.1f} ms"),
        (
            "peak memory" if on_gpu else "peak memory (RSS)*",
            _mib(dense.peak_mem_bytes),
            _mib(sharp.peak_mem_bytes),
        ),
    ]
    for name, a, b in rows:
        echo(f"{name:24s}{a:>14s}{b:>14s}")
    if not on_gpu:
        echo(
            "* on CPU, peak growth of the resident set sampled during the call (after a warm-up);"
            "\n  memory the allocator reuses does not show. The KV cache row is exact."
        )
    echo(f"TTFT speed-up: {dense.ttft_s / max(sharp.ttft_s, 1e-9):.2f}x")
    dense_answer = tok.decode(dense.tokens, skip_special_tokens=True)
    sharp_answer = tok.decode(sharp.tokens, skip_special_tokens=True)
    echo(f"dense  answer (random weights): {dense_answer!r}")
    echo(f"{label} answer (random weights): {sharp_answer!r}")
    echo(f"wrote {png1}")
    echo(f"wrote {png2}")
    return DemoResult(
        dense=dense,
        sharpv=sharp,
        stats=stats,
        prompt_tokens=len(ids),
        layers=n_layers,
        frames=frames,
        tokens_per_frame=f,
        png_retention=png1,
        png_similarity=png2,
        dense_answer=dense_answer,
        sharpv_answer=sharp_answer,
    )
