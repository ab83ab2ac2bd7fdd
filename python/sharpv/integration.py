"""Drop-in SharpV for Hugging Face video LLMs: ``apply_sharpv`` / ``revert_sharpv``.

``apply_sharpv(model)`` replaces ``model.generate`` on the instance (the class and the weights
are untouched; ``revert_sharpv`` deletes the instance attribute again). The replacement:

1. computes the video features exactly as the dense model would put them in the prompt
   (after projector and pooling; adapters in :mod:`sharpv.adapters`), and the image
   features of mixed prompts;
2. prunes every video of the batch with one varlen :func:`sharpv_kernels.visual_prune` call
   (Visual SharpV);
3. rebuilds the prompt with only the kept video placeholders: ``input_ids``,
   ``inputs_embeds``, ``attention_mask`` (same padding side) and, for M-RoPE models, the
   dense 3-D positions of the kept tokens;
4. calls the original ``generate`` with those, inside :func:`sharpv.memory_sharpv` (Memory
   SharpV) when enabled;
5. returns the ORIGINAL prompt ids followed by the new tokens, so that
   ``out[:, inputs["input_ids"].shape[1]:]`` is the answer as with the dense model, and
   leaves per-sample statistics in ``model.sharpv_stats``.

Calls without video pixels (text-only or image-only prompts) go to the original
``generate`` untouched.
"""

from __future__ import annotations

import contextlib
import time
import types
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import torch

from . import methods
from .adapters import get_adapter
from .adapters.base import Adapter, VideoFeatures
from .config import SharpVConfig
from .stats import SampleStats, SharpVStats

__all__ = [
    "apply_sharpv",
    "revert_sharpv",
    "prepare_sharpv_inputs",
    "PreparedInputs",
    "StageCallback",
]


@dataclass
class _SharpVState:
    config: SharpVConfig
    adapter: Adapter
    generate: Any  # the bound generate in effect before apply_sharpv
    had_instance_generate: bool
    on_stage: StageCallback | None = None
    hooks: Any = None  # fn(model, visual_mask) -> context manager: the intra-LLM stage


#: ``on_stage(stage, seconds)``: told the wall time of each stage of the visual path
#: (``"features"``, ``"prune"``, ``"rebuild"``) of every SharpV ``generate`` call.
StageCallback = Callable[[str, float], None]


@dataclass
class PreparedInputs:
    """A batch after Visual SharpV, ready for the language model.

    Attributes:
        input_ids: ``(batch, seq')`` prompt ids with only the kept video placeholders.
        inputs_embeds: ``(batch, seq', d)`` embeddings, image and kept video features in place.
        attention_mask: ``(batch, seq')`` 0/1, same padding side as the input.
        position_ids: ``(3, batch, seq')`` dense M-RoPE positions of the kept tokens, or
            ``None`` for 1-D RoPE models (positions then follow the attention mask).
        next_positions: ``(rows, batch)`` M-RoPE position of each sample's first generated
            token: one past the dense position of the prompt's last token, row by row, as the
            model's own ``generate`` continues (``None`` for 1-D RoPE models).
        visual_mask: ``(batch, seq')`` bool, kept video frame tokens (Memory SharpV's ``V``).
        samples: per-sample statistics of the visual stage.
    """

    input_ids: torch.Tensor
    inputs_embeds: torch.Tensor
    attention_mask: torch.Tensor
    position_ids: torch.Tensor | None
    next_positions: torch.Tensor | None
    visual_mask: torch.Tensor
    samples: list[SampleStats]


@dataclass
class _Features:
    """Stage 1: what the vision side gives, validated against the placeholders."""

    video: VideoFeatures
    images: torch.Tensor | None  # (n_image_tokens, d) in prompt order


@dataclass
class _Kept:
    """Stage 2, per video in prompt order: the kept frame rows (``(k_j, d)``, (frame, token)
    order), their flat indices into the video's ``T_j * f_j`` tokens, and per-frame keep
    ratios (float32) and kept counts (int32) on the CPU."""

    tokens: list[torch.Tensor]
    indices: list[torch.Tensor]
    ratios: list[torch.Tensor]
    counts: list[torch.Tensor]


class _StageClock:
    """Times the stages for an :data:`StageCallback`; free when there is none (no sync)."""

    def __init__(self, callback: StageCallback | None, device: torch.device) -> None:
        self.callback, self.device = callback, device

    @contextlib.contextmanager
    def __call__(self, stage: str) -> Iterator[None]:
        if self.callback is None:
            yield
            return
        self._sync()
        t0 = time.perf_counter()
        yield
        self._sync()
        self.callback(stage, time.perf_counter() - t0)

    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)


def _pad_token_id(model: torch.nn.Module) -> int:
    for src in (
        getattr(model, "generation_config", None),
        model.config,
        getattr(model.config, "text_config", None),
    ):
        pid = getattr(src, "pad_token_id", None) if src is not None else None
        if isinstance(pid, (list, tuple)):
            pid = pid[0] if pid else None
        if pid is not None:
            return int(pid)
    return 0


def _left_padded(attention_mask: torch.Tensor) -> bool:
    """Right padding only when some row ends with padding and every row starts with a token."""
    am = attention_mask.bool()
    return not (bool(am[:, 0].all()) and not bool(am[:, -1].all()))


def _features(
    model: torch.nn.Module,
    adapter: Adapter,
    vision_inputs: dict[str, Any],
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
) -> _Features:
    """Stage 1: image and video features exactly as the dense model would place them."""
    images = adapter.image_features(model, vision_inputs)
    if images is not None:
        n_img = int((input_ids == adapter.image_token_id(model)).sum())
        if n_img != images.shape[0]:
            raise ValueError(
                f"image features and image tokens do not match: {n_img} placeholders, "
                f"{images.shape[0]} features"
            )
    video = adapter.video_features(model, vision_inputs, input_ids, attention_mask)
    counts = video.token_counts()
    n_tok = int((input_ids == adapter.video_token_id(model)).sum())
    if n_tok != sum(counts):
        raise ValueError(
            f"video features and video tokens do not match: {n_tok} placeholders, "
            f"{sum(counts)} features ({len(counts)} videos)"
        )
    return _Features(video=video, images=images)


def _keep_all(frames: list[torch.Tensor]) -> _Kept:
    return _Kept(
        tokens=[fr.reshape(-1, fr.shape[-1]) for fr in frames],
        indices=[torch.arange(fr.shape[0] * fr.shape[1], device=fr.device) for fr in frames],
        ratios=[torch.ones(fr.shape[0]) for fr in frames],
        counts=[torch.full((fr.shape[0],), fr.shape[1], dtype=torch.int32) for fr in frames],
    )


def _prune(config: SharpVConfig, frames: list[torch.Tensor]) -> _Kept:
    """Stage 2: one varlen call of the method's pruner per frame shape ``(f, d)`` (usually one
    for the whole batch); its packed ``tokens`` are the kept rows, used as they are. A method
    without a pre-LLM stage (for these options) keeps every token."""
    kept = _keep_all(frames)
    prune = methods.get(config.method).pruner(config.options)
    if prune is None:
        return kept
    groups: dict[tuple[int, int], list[int]] = {}
    for j, fr in enumerate(frames):
        groups.setdefault((fr.shape[1], fr.shape[2]), []).append(j)
    for (f, _), vids in groups.items():
        t = [frames[j].shape[0] for j in vids]
        feats = torch.cat([frames[j] for j in vids], dim=0) if len(vids) > 1 else frames[vids[0]]
        cu = torch.tensor([0] + t, dtype=torch.int64).cumsum(0).to(torch.int32)
        res = prune(feats, cu.to(feats.device))
        cu_tok = res.cu_tokens.tolist()
        for g, j in enumerate(vids):
            lo, hi = cu_tok[g], cu_tok[g + 1]
            kept.tokens[j] = res.tokens[lo:hi]
            kept.indices[j] = res.indices[lo:hi] - int(cu[g]) * f
        for j, r, c in zip(vids, res.ratios.cpu().split(t), res.counts.cpu().split(t), strict=True):
            kept.ratios[j], kept.counts[j] = r.float(), c.to(torch.int32)
    return kept


def _rebuild(
    model: torch.nn.Module,
    adapter: Adapter,
    vision_inputs: dict[str, Any],
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    feats: _Features,
    kept: _Kept,
) -> PreparedInputs:
    """Stage 3: the prompt with only the kept video placeholders, same padding side, with the
    kept rows (and each video's extras) and the image features in their places."""
    device = input_ids.device
    B = input_ids.shape[0]
    vf = feats.video
    vid_mask = input_ids == adapter.video_token_id(model)
    vid_pos = vid_mask.nonzero()  # (N, 2), row-major = order of the features
    # which placeholders stay, and which of those are frame tokens (not extras)
    starts, keep_idx, frame_idx, values = 0, [], [], []
    for j, (fr, ex) in enumerate(zip(vf.frames, vf.extras, strict=True)):
        n_frame_tok = fr.shape[0] * fr.shape[1]
        idx = kept.indices[j].to(device) + starts
        extra = torch.arange(ex.shape[0], device=device) + starts + n_frame_tok
        frame_idx.append(idx)
        keep_idx += [idx, extra]
        values += [kept.tokens[j], ex]
        starts += n_frame_tok + ex.shape[0]
    keep_vid = torch.zeros(vid_pos.shape[0], dtype=torch.bool, device=device)
    keep_vid[torch.cat(keep_idx)] = True
    frame_vid = torch.zeros_like(keep_vid)
    frame_vid[torch.cat(frame_idx)] = True

    keep = attention_mask.bool().clone()
    keep[vid_pos[:, 0], vid_pos[:, 1]] = keep_vid
    visual = torch.zeros_like(keep)
    visual[vid_pos[:, 0], vid_pos[:, 1]] = frame_vid

    n_keep = keep.sum(dim=1)
    Ls = int(n_keep.max()) if B else 0
    rank = keep.long().cumsum(dim=1) - 1
    if _left_padded(attention_mask):
        rank = rank + (Ls - n_keep)[:, None]
    rows, cols = keep.nonzero(as_tuple=True)
    dest = rank[rows, cols]

    def moved(src: torch.Tensor, fill: Any) -> torch.Tensor:
        out = torch.full((B, Ls), fill, dtype=src.dtype, device=device)
        out[rows, dest] = src[rows, cols]
        return out

    new_ids = moved(input_ids, _pad_token_id(model))
    new_mask = torch.zeros((B, Ls), dtype=attention_mask.dtype, device=device)
    new_mask[rows, dest] = 1
    embeds = model.get_input_embeddings()(new_ids)
    embeds[moved(vid_mask, False)] = torch.cat(values).to(device, embeds.dtype)
    if feats.images is not None:
        img_mask = moved(input_ids == adapter.image_token_id(model), False)
        embeds[img_mask] = feats.images.to(device, embeds.dtype)

    position_ids = next_positions = None
    dense_pos = adapter.dense_position_ids(model, vision_inputs, input_ids, attention_mask)
    if dense_pos is not None:
        dense_pos = dense_pos.to(device)
        position_ids = torch.ones((dense_pos.shape[0], B, Ls), dtype=dense_pos.dtype, device=device)
        position_ids[:, rows, dest] = dense_pos[:, rows, cols]
        seq = torch.arange(attention_mask.shape[1], device=device)
        last = (seq * attention_mask.bool()).argmax(dim=1)  # each sample's last token
        next_positions = dense_pos[:, torch.arange(B, device=device), last].long() + 1

    return PreparedInputs(
        input_ids=new_ids,
        inputs_embeds=embeds,
        attention_mask=new_mask,
        position_ids=position_ids,
        next_positions=next_positions,
        visual_mask=moved(visual, False),
        samples=_sample_stats(B, vid_pos, vf, kept),
    )


def _sample_stats(
    batch: int, vid_pos: torch.Tensor, vf: VideoFeatures, kept: _Kept
) -> list[SampleStats]:
    first = [0]
    for c in vf.token_counts()[:-1]:
        first.append(first[-1] + c)
    owner = [int(vid_pos[o, 0]) for o in first] if vf.frames else []
    samples = []
    for b in range(batch):
        mine = [j for j, s in enumerate(owner) if s == b]
        if not mine:
            samples.append(_empty_sample())
            continue
        samples.append(
            SampleStats(
                frame_ratios=torch.cat([kept.ratios[j] for j in mine]),
                frame_counts=torch.cat([kept.counts[j] for j in mine]),
                tokens_per_frame=torch.cat(
                    [torch.full((vf.frames[j].shape[0],), vf.frames[j].shape[1]) for j in mine]
                ).to(torch.int32),
            )
        )
    return samples


@torch.no_grad()
def prepare_sharpv_inputs(
    model: torch.nn.Module,
    config: SharpVConfig,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor | None = None,
    adapter: Adapter | None = None,
    on_stage: StageCallback | None = None,
    **vision_inputs: Any,
) -> PreparedInputs:
    """Run Visual SharpV on a processor batch and rebuild the prompt (steps 1-3 above).

    The data go one way: features (adapter) -> one varlen prune per frame shape, whose
    packed kept rows are used as they are -> the shorter prompt, built directly.

    Args:
        model: a supported ``...ForConditionalGeneration`` model.
        config: SharpV settings (``config.visual=False`` keeps every video token).
        input_ids: ``(batch, seq)`` prompt ids with the processor's video placeholders.
        attention_mask: ``(batch, seq)`` 0/1 (all ones when ``None``).
        adapter: the model's adapter (looked up when ``None``).
        on_stage: told ``(stage, seconds)`` for ``"features"``, ``"prune"`` and
            ``"rebuild"`` (CUDA is synchronised around each stage only when given).
        **vision_inputs: ``pixel_values_videos`` and the other processor outputs.

    Raises:
        ValueError: ``input_ids`` is not 2-D, or the number of image or video placeholders
            does not match the features.

    Examples:
        >>> from sharpv.tiny_models import tiny_llava_onevision, BOS_ID, VIDEO_ID
        >>> model = tiny_llava_onevision()
        >>> ids = torch.tensor([[BOS_ID] + [VIDEO_ID] * (3 * 4 + 1)])  # 3 frames, newline
        >>> prep = prepare_sharpv_inputs(
        ...     model, SharpVConfig(), ids, pixel_values_videos=torch.randn(1, 3, 3, 56, 56))
        >>> prep.inputs_embeds.shape[1] <= ids.shape[1]
        True
    """
    adapter = adapter or get_adapter(model)
    if input_ids.dim() != 2:
        raise ValueError(f"input_ids must be (batch, seq), got {tuple(input_ids.shape)}")
    if attention_mask is None:
        attention_mask = torch.ones_like(input_ids)
    attention_mask = attention_mask.to(input_ids.device)
    stage = _StageClock(on_stage, input_ids.device)
    with stage("features"):
        feats = _features(model, adapter, vision_inputs, input_ids, attention_mask)
    with stage("prune"):
        kept = _prune(config, feats.video.frames)
    with stage("rebuild"):
        return _rebuild(model, adapter, vision_inputs, input_ids, attention_mask, feats, kept)


def _empty_sample() -> SampleStats:
    return SampleStats(
        frame_ratios=torch.zeros(0),
        frame_counts=torch.zeros(0, dtype=torch.int32),
        tokens_per_frame=torch.zeros(0, dtype=torch.int32),
    )


def _single_span(visual_mask: torch.Tensor) -> torch.Tensor:
    """Memory SharpV takes one visual span per sample: a sample with several videos gets the
    span from its first to its last kept video token (text between them included)."""
    if not bool(visual_mask.any()):
        return visual_mask
    idx = torch.arange(visual_mask.shape[1], device=visual_mask.device)
    first = torch.where(visual_mask, idx, visual_mask.shape[1]).amin(dim=1, keepdim=True)
    last = torch.where(visual_mask, idx, -1).amax(dim=1, keepdim=True)
    return (idx >= first) & (idx <= last)


def _record_intra(samples: list[SampleStats], state: Any, batch: int) -> None:
    """Copy what the intra-LLM stage measured into the samples: per-layer similarities and
    dropped layers (Memory SharpV's state), and the visual KV ratio ``MR`` (every state that
    reports ``memory_ratio``; beams: one row per sequence, the first of each sample read)."""
    mr = getattr(state, "memory_ratio", None)
    if mr is None:
        return
    mr = torch.as_tensor(mr).detach().float().cpu().reshape(-1)
    step = max(mr.shape[0] // batch, 1)
    sims = getattr(state, "similarities", None)
    for b, s in enumerate(samples):
        if not s.visual_tokens_kept:
            continue
        i = b * step
        s.memory_ratio = float(mr[i])
        if sims is not None:
            s.layer_similarities = sims.detach().float().cpu()[:, i].clone()
            s.dropped_layers = state.dropped.detach().cpu()[:, i].clone()


def _sharpv_generate(self: torch.nn.Module, *args: Any, **kwargs: Any) -> Any:
    """``generate`` with SharpV; same arguments and return type as the original."""
    state: _SharpVState = self._sharpv
    adapter, config = state.adapter, state.config
    input_ids = kwargs.get("input_ids", kwargs.get("inputs"))
    if args:
        input_ids = args[0]
    if input_ids is None or not adapter.has_video(kwargs):
        batch = input_ids.shape[0] if isinstance(input_ids, torch.Tensor) else 1
        self.sharpv_stats = SharpVStats(
            samples=[_empty_sample() for _ in range(batch)], visual=False, memory=False
        )
        return state.generate(*args, **kwargs)

    if len(args) > 1:
        raise TypeError("SharpV generate takes the prompt ids as its only positional argument")
    kwargs = dict(kwargs)
    kwargs.pop("input_ids", None)
    kwargs.pop("inputs", None)
    for key in ("inputs_embeds", "position_ids"):
        if kwargs.get(key) is not None:
            raise ValueError(f"SharpV builds {key} itself; pass input_ids and pixel inputs only")
        kwargs.pop(key, None)
    attention_mask = kwargs.pop("attention_mask", None)
    vision = {k: kwargs.pop(k) for k in adapter.vision_keys if k in kwargs}
    prep = prepare_sharpv_inputs(
        self, config, input_ids, attention_mask, adapter=adapter, on_stage=state.on_stage, **vision
    )
    B, L = input_ids.shape
    Ls = prep.input_ids.shape[1]
    if kwargs.get("max_length") is not None and kwargs.get("max_new_tokens") is None:
        kwargs["max_new_tokens"] = max(int(kwargs.pop("max_length")) - L, 0)
    gen = dict(
        kwargs,
        input_ids=prep.input_ids,
        inputs_embeds=prep.inputs_embeds,
        attention_mask=prep.attention_mask,
    )
    hooks = state.hooks if bool(prep.visual_mask.any()) else None
    ctx = hooks(self, _single_span(prep.visual_mask)) if hooks else contextlib.nullcontext()
    with adapter.generating(self, prep.position_ids, prep.next_positions), ctx as mstate:
        out = state.generate(**gen)

    seqs = out.sequences if hasattr(out, "sequences") else out
    k = max(seqs.shape[0] // B, 1)
    full = torch.cat([input_ids.to(seqs.device).repeat_interleave(k, dim=0), seqs[:, Ls:]], dim=1)
    if hasattr(out, "sequences"):
        out.sequences = full
    else:
        out = full

    samples = prep.samples
    if mstate is not None:
        _record_intra(samples, mstate, B)
    self.sharpv_stats = SharpVStats(
        samples=samples,
        visual=config.visual,
        memory=mstate is not None and getattr(mstate, "similarities", None) is not None,
        prompt_tokens_in=attention_mask.sum(1).cpu()
        if attention_mask is not None
        else torch.full((B,), L),
        prompt_tokens_kept=prep.attention_mask.sum(1).cpu(),
    )
    return out


def apply_sharpv(
    model: torch.nn.Module,
    config: SharpVConfig | None = None,
    *,
    method: str | None = None,
    on_stage: StageCallback | None = None,
    **options: Any,
) -> torch.nn.Module:
    """Make ``model.generate`` run a pruning method (SharpV by default) on every video.

    Args:
        model: a Hugging Face video LLM whose ``config.model_type`` has an adapter
            (``sharpv.adapters.supported_model_types()``).
        config: the method and its options; ``SharpVConfig()`` (paper defaults) when ``None``.
        method: instead of ``config``: a registered method name (``sharpv.methods.names()``),
            with its ``**options`` (``apply_sharpv(model, method="evs", rate=0.5)``); they are
            validated before anything else.
        on_stage: optional ``fn(stage, seconds)`` told the time of each stage of the visual
            path (``"features"``, ``"prune"``, ``"rebuild"``) at every call; CUDA is
            synchronised around the stages only when it is given.

    Returns:
        The same model object, patched on the instance only. Applying again replaces the
        configuration.

    Raises:
        sharpv.adapters.UnsupportedModelError: unsupported ``model_type`` (lists the
            supported ones).
        TypeError: ``config`` is not a :class:`SharpVConfig`, or given with ``method``/options.
        sharpv.methods.MethodOptionError: an unknown method or a bad option (named).

    Examples:
        >>> from sharpv.tiny_models import tiny_llava_onevision, BOS_ID, VIDEO_ID
        >>> model = apply_sharpv(tiny_llava_onevision(), SharpVConfig(memory=False))
        >>> ids = torch.tensor([[BOS_ID] + [VIDEO_ID] * (3 * 4 + 1)])  # 3 frames, newline
        >>> out = model.generate(input_ids=ids, pixel_values_videos=torch.randn(1, 3, 3, 56, 56),
        ...                      max_new_tokens=2, do_sample=False)
        >>> out.shape[1] == ids.shape[1] + 2, model.sharpv_stats[0].visual_tokens_in
        (True, 12)
    """
    if config is None:
        config = SharpVConfig(method=method or "sharpv", method_options=options)
    elif method is not None or options:
        raise TypeError("give either config or method= and its options, not both")
    if not isinstance(config, SharpVConfig):
        raise TypeError(f"config must be a sharpv.SharpVConfig, got {type(config).__name__}")
    hooks = methods.get(config.method).hooks_factory(config.options)
    adapter = get_adapter(model)
    if "_sharpv" in model.__dict__:
        revert_sharpv(model)
    had = "generate" in model.__dict__
    state = _SharpVState(
        config=config,
        adapter=adapter,
        generate=model.generate,
        had_instance_generate=had,
        on_stage=on_stage,
        hooks=hooks,
    )
    object.__setattr__(model, "_sharpv", state)
    object.__setattr__(model, "generate", types.MethodType(_sharpv_generate, model))
    object.__setattr__(model, "sharpv_config", config)
    object.__setattr__(model, "sharpv_stats", None)
    return model


def revert_sharpv(model: torch.nn.Module) -> torch.nn.Module:
    """Undo :func:`apply_sharpv`: the instance is as it was before (a no-op if not applied).

    Examples:
        >>> from sharpv.tiny_models import tiny_qwen2_vl
        >>> model = tiny_qwen2_vl()
        >>> "generate" in revert_sharpv(apply_sharpv(model)).__dict__
        False
    """
    state: _SharpVState | None = model.__dict__.get("_sharpv")
    if state is None:
        return model
    if state.had_instance_generate:
        object.__setattr__(model, "generate", state.generate)
    else:
        model.__dict__.pop("generate", None)
    for name in ("_sharpv", "sharpv_config", "sharpv_stats"):
        model.__dict__.pop(name, None)
    return model
