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
import types
from dataclasses import dataclass
from typing import Any

import torch

from .adapters import get_adapter
from .adapters.base import Adapter
from .config import SharpVConfig
from .stats import SampleStats, SharpVStats

__all__ = ["apply_sharpv", "revert_sharpv", "prepare_sharpv_inputs", "PreparedInputs"]


@dataclass
class _SharpVState:
    config: SharpVConfig
    adapter: Adapter
    generate: Any  # the bound generate in effect before apply_sharpv
    had_instance_generate: bool


@dataclass
class PreparedInputs:
    """A batch after Visual SharpV, ready for the language model.

    Attributes:
        input_ids: ``(batch, seq')`` prompt ids with only the kept video placeholders.
        inputs_embeds: ``(batch, seq', d)`` embeddings, image and kept video features in place.
        attention_mask: ``(batch, seq')`` 0/1, same padding side as the input.
        position_ids: ``(3, batch, seq')`` dense M-RoPE positions of the kept tokens, or
            ``None`` for 1-D RoPE models (positions then follow the attention mask).
        rope_deltas: ``(batch, 1)`` for M-RoPE models (text position minus sequence index
            after the prompt), else ``None``.
        visual_mask: ``(batch, seq')`` bool, kept video frame tokens (Memory SharpV's ``V``).
        samples: per-sample statistics of the visual stage.
    """

    input_ids: torch.Tensor
    inputs_embeds: torch.Tensor
    attention_mask: torch.Tensor
    position_ids: torch.Tensor | None
    rope_deltas: torch.Tensor | None
    visual_mask: torch.Tensor
    samples: list[SampleStats]


def _get_pruner(config: SharpVConfig):
    """``fn(features, cu_frames)`` of the configured pre-LLM method (SharpV or a baseline)."""
    from .baselines import make_pruner

    return make_pruner(config)


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


@torch.no_grad()
def prepare_sharpv_inputs(
    model: torch.nn.Module,
    config: SharpVConfig,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor | None = None,
    adapter: Adapter | None = None,
    **vision_inputs: Any,
) -> PreparedInputs:
    """Run Visual SharpV on a processor batch and rebuild the prompt (steps 1-3 above).

    Args:
        model: a supported ``...ForConditionalGeneration`` model.
        config: SharpV settings (``config.visual=False`` keeps every video token).
        input_ids: ``(batch, seq)`` prompt ids with the processor's video placeholders.
        attention_mask: ``(batch, seq)`` 0/1 (all ones when ``None``).
        adapter: the model's adapter (looked up when ``None``).
        **vision_inputs: ``pixel_values_videos`` and the other processor outputs.

    Raises:
        ValueError: the number of video placeholders does not match the video features.
    """
    adapter = adapter or get_adapter(model)
    if input_ids.dim() != 2:
        raise ValueError(f"input_ids must be (batch, seq), got {tuple(input_ids.shape)}")
    device = input_ids.device
    if attention_mask is None:
        attention_mask = torch.ones_like(input_ids)
    attention_mask = attention_mask.to(device)
    B, L = input_ids.shape
    embed = model.get_input_embeddings()
    embeds = embed(input_ids)
    d = embeds.shape[-1]

    img = adapter.image_features(model, vision_inputs)
    if img is not None:
        img_mask = input_ids == adapter.image_token_id(model)
        if int(img_mask.sum()) != img.shape[0]:
            raise ValueError(
                f"image features and image tokens do not match: {int(img_mask.sum())} "
                f"placeholders, {img.shape[0]} features"
            )
        embeds = embeds.masked_scatter(img_mask[..., None], img.to(embeds.dtype))

    vf = adapter.video_features(model, vision_inputs, input_ids, attention_mask)
    vid_mask = input_ids == adapter.video_token_id(model)
    counts = vf.token_counts()
    n_tok = int(vid_mask.sum())
    if n_tok != sum(counts):
        raise ValueError(
            f"video features and video tokens do not match: {n_tok} placeholders, "
            f"{sum(counts)} features ({len(counts)} videos)"
        )
    vid_pos = vid_mask.nonzero()  # (N, 2) row-major = order of the features
    offsets = [0]
    for c in counts:
        offsets.append(offsets[-1] + c)
    video_sample = [int(vid_pos[o, 0]) for o in offsets[:-1]]

    keep_tok = torch.ones(n_tok, dtype=torch.bool, device=device)
    is_frame = torch.zeros(n_tok, dtype=torch.bool, device=device)
    ratios: list[torch.Tensor] = [torch.ones(fr.shape[0]) for fr in vf.frames]
    kept_counts: list[torch.Tensor] = [
        torch.full((fr.shape[0],), fr.shape[1], dtype=torch.int32) for fr in vf.frames
    ]
    for j, fr in enumerate(vf.frames):
        is_frame[offsets[j] : offsets[j] + fr.shape[0] * fr.shape[1]] = True

    if config.visual and config.method != "fastv":
        prune = _get_pruner(config)
        groups: dict[tuple[int, int], list[int]] = {}
        for j, fr in enumerate(vf.frames):
            groups.setdefault((fr.shape[1], fr.shape[2]), []).append(j)
        for (f, _), vids in groups.items():
            t = [vf.frames[j].shape[0] for j in vids]
            feats = torch.cat([vf.frames[j] for j in vids], dim=0)
            cu = torch.tensor([0] + t, dtype=torch.int64).cumsum(0).to(torch.int32)
            res = prune(feats, cu.to(feats.device))
            starts = torch.cat(
                [
                    offsets[j] + torch.arange(tj, dtype=torch.int64) * f
                    for j, tj in zip(vids, t, strict=True)
                ]
            ).to(device)
            for j in vids:
                keep_tok[offsets[j] : offsets[j] + vf.frames[j].shape[0] * f] = False
            idx = res.indices.to(device)
            keep_tok[starts[idx // f] + idx % f] = True
            for j, r, c in zip(
                vids, res.ratios.cpu().split(t), res.counts.cpu().split(t), strict=True
            ):
                ratios[j], kept_counts[j] = r.float(), c.to(torch.int32)

    values = torch.cat(
        [
            torch.cat([fr.reshape(-1, d), ex.reshape(-1, d)], dim=0)
            for fr, ex in zip(vf.frames, vf.extras, strict=True)
        ],
        dim=0,
    )
    embeds = embeds.masked_scatter(vid_mask[..., None], values.to(embeds.dtype))

    keep = attention_mask.bool().clone()
    keep[vid_pos[:, 0], vid_pos[:, 1]] &= keep_tok
    visual = torch.zeros_like(keep)
    visual[vid_pos[:, 0], vid_pos[:, 1]] = keep_tok & is_frame

    n_keep = keep.sum(dim=1)
    Ls = int(n_keep.max()) if B else 0
    rank = keep.long().cumsum(dim=1) - 1
    if _left_padded(attention_mask):
        rank = rank + (Ls - n_keep)[:, None]
    rows, cols = keep.nonzero(as_tuple=True)
    dest = rank[rows, cols]
    pad = _pad_token_id(model)
    new_ids = torch.full((B, Ls), pad, dtype=input_ids.dtype, device=device)
    new_ids[rows, dest] = input_ids[rows, cols]
    new_embeds = embed(new_ids).clone()
    new_embeds[rows, dest] = embeds[rows, cols]
    new_mask = torch.zeros((B, Ls), dtype=attention_mask.dtype, device=device)
    new_mask[rows, dest] = 1
    new_visual = torch.zeros((B, Ls), dtype=torch.bool, device=device)
    new_visual[rows, dest] = visual[rows, cols]

    position_ids = rope_deltas = None
    dense_pos = adapter.dense_position_ids(model, vision_inputs, input_ids, attention_mask)
    if dense_pos is not None:
        dense_pos = dense_pos.to(device)
        position_ids = torch.ones((dense_pos.shape[0], B, Ls), dtype=dense_pos.dtype, device=device)
        position_ids[:, rows, dest] = dense_pos[:, rows, cols]
        valid = attention_mask.bool()
        top = dense_pos.masked_fill(~valid[None], -1).amax(dim=(0, 2))
        rope_deltas = (top + 1 - n_keep).to(torch.long)[:, None]

    samples = []
    for b in range(B):
        mine = [j for j, s in enumerate(video_sample) if s == b]
        if mine:
            samples.append(
                SampleStats(
                    frame_ratios=torch.cat([ratios[j] for j in mine]),
                    frame_counts=torch.cat([kept_counts[j] for j in mine]),
                    tokens_per_frame=torch.cat(
                        [torch.full((vf.frames[j].shape[0],), vf.frames[j].shape[1]) for j in mine]
                    ).to(torch.int32),
                )
            )
        else:
            samples.append(_empty_sample())
    return PreparedInputs(
        input_ids=new_ids,
        inputs_embeds=new_embeds,
        attention_mask=new_mask,
        position_ids=position_ids,
        rope_deltas=rope_deltas,
        visual_mask=new_visual,
        samples=samples,
    )


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


def _memory_context(model: torch.nn.Module, visual_mask: torch.Tensor, threshold: float):
    from .memory import memory_sharpv

    return memory_sharpv(model, _single_span(visual_mask), threshold=threshold)


def _fastv_context(model: torch.nn.Module, visual_mask: torch.Tensor, options: dict[str, Any]):
    from .baselines import fastv

    return fastv(model, _single_span(visual_mask), **options)


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
    prep = prepare_sharpv_inputs(self, config, input_ids, attention_mask, adapter=adapter, **vision)
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
    if prep.position_ids is not None:
        gen["position_ids"] = prep.position_ids
        adapter.set_rope_deltas(self, prep.rope_deltas)
    use_memory = config.memory and bool(prep.visual_mask.any())
    use_fastv = config.method == "fastv" and config.visual and bool(prep.visual_mask.any())
    if use_memory:
        ctx = _memory_context(self, prep.visual_mask, config.memory_threshold)
    elif use_fastv:
        ctx = _fastv_context(self, prep.visual_mask, config.method_options or {})
    else:
        ctx = contextlib.nullcontext()
    with ctx as mstate:
        out = state.generate(**gen)

    seqs = out.sequences if hasattr(out, "sequences") else out
    k = max(seqs.shape[0] // B, 1)
    full = torch.cat([input_ids.to(seqs.device).repeat_interleave(k, dim=0), seqs[:, Ls:]], dim=1)
    if hasattr(out, "sequences"):
        out.sequences = full
    else:
        out = full

    samples = prep.samples
    if use_fastv and mstate is not None and mstate.memory_ratio is not None:
        for b, s in enumerate(samples):
            if s.visual_tokens_kept:
                s.memory_ratio = float(mstate.memory_ratio[b])
    if use_memory and mstate is not None:
        sims = mstate.similarities.detach().float().cpu()
        dropped = mstate.dropped.detach().cpu()
        mr = mstate.memory_ratio.detach().float().cpu()
        step = max(sims.shape[1] // B, 1)
        for b, s in enumerate(samples):
            i = b * step
            if s.visual_tokens_kept:
                s.layer_similarities = sims[:, i].clone()
                s.dropped_layers = dropped[:, i].clone()
                s.memory_ratio = float(mr[i])
    self.sharpv_stats = SharpVStats(
        samples=samples,
        visual=config.visual,
        memory=use_memory,
        prompt_tokens_in=attention_mask.sum(1).cpu()
        if attention_mask is not None
        else torch.full((B,), L),
        prompt_tokens_kept=prep.attention_mask.sum(1).cpu(),
    )
    return out


def apply_sharpv(model: torch.nn.Module, config: SharpVConfig | None = None) -> torch.nn.Module:
    """Make ``model.generate`` run Visual and Memory SharpV on every video of the batch.

    Args:
        model: a Hugging Face video LLM whose ``config.model_type`` has an adapter
            (``sharpv.adapters.supported_model_types()``).
        config: SharpV settings; ``SharpVConfig()`` (paper defaults) when ``None``.

    Returns:
        The same model object, patched on the instance only. Applying again replaces the
        configuration.

    Raises:
        sharpv.adapters.UnsupportedModelError: unsupported ``model_type`` (lists the
            supported ones).
        TypeError: ``config`` is not a :class:`SharpVConfig`.
    """
    if config is None:
        config = SharpVConfig()
    if not isinstance(config, SharpVConfig):
        raise TypeError(f"config must be a sharpv.SharpVConfig, got {type(config).__name__}")
    adapter = get_adapter(model)
    if "_sharpv" in model.__dict__:
        revert_sharpv(model)
    had = "generate" in model.__dict__
    state = _SharpVState(
        config=config, adapter=adapter, generate=model.generate, had_instance_generate=had
    )
    object.__setattr__(model, "_sharpv", state)
    object.__setattr__(model, "generate", types.MethodType(_sharpv_generate, model))
    object.__setattr__(model, "sharpv_config", config)
    object.__setattr__(model, "sharpv_stats", None)
    return model


def revert_sharpv(model: torch.nn.Module) -> torch.nn.Module:
    """Undo :func:`apply_sharpv`: the instance is as it was before (a no-op if not applied)."""
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
