"""Drop-in integration (``sharpv.apply_sharpv``) on tiny random models, CPU, nothing downloaded.

Oracles are computed independently of :mod:`sharpv.integration` and of the transformers
version: video features and M-RoPE positions are read where the dense model hands them to its
language model (one forward of the unpatched model), kept indices come from
``sharpv_kernels.visual_prune_reference``, and the pruned prompt is fed to the unpatched
``generate`` as ``inputs_embeds`` (1-D RoPE) or decoded by a plain greedy loop with explicit
positions (M-RoPE). Dense baselines are called as a user would call the model: Qwen-VL with
the ``mm_token_type_ids`` its processor adds where the model takes them.
"""

from __future__ import annotations

import inspect

import pytest
import torch

import sharpv
from sharpv.adapters import UnsupportedModelError, get_adapter, supported_model_types
from sharpv.hooks import cache_kwarg
from sharpv.tiny_models import (
    BOS_ID,
    IMAGE_ID,
    VIDEO_ID,
    VISION_END_ID,
    VISION_START_ID,
    tiny_llava_next_video,
    tiny_llava_onevision,
    tiny_qwen2_5_vl,
    tiny_qwen2_vl,
)
from sharpv_kernels.ops.visual_prune.naive import visual_prune_reference

from .memory_oracle import dense_masked

NEW = 6  # new tokens per generation
BUILDERS = {"llava_onevision": tiny_llava_onevision, "llava_next_video": tiny_llava_next_video}
EXTRA = {"llava_onevision": 1, "llava_next_video": 0}  # tokens after each video's frames
F = 4  # tokens per frame of the tiny LLaVA towers (56 px, patch 14, pooled 2x2)

_models: dict[tuple[str, str], torch.nn.Module] = {}


#: Qwen-VL settings whose answers depend on every M-RoPE row (with the builders' defaults
#: attention is nearly uniform and wrong positions would go unnoticed)
SHARP_MROPE = dict(rope_theta=10.0, initializer_range=0.2)


def tiny(kind: str, attn: str = "eager") -> torch.nn.Module:
    key = (kind, attn)
    if key not in _models:
        if kind in BUILDERS:
            _models[key] = BUILDERS[kind](attn_implementation=attn, seed=0)
        else:
            builder = {"qwen2_5_vl": tiny_qwen2_5_vl, "qwen2_vl": tiny_qwen2_vl}[kind]
            _models[key] = builder(attn_implementation=attn, seed=0, **SHARP_MROPE)
    model = _models[key]
    sharpv.revert_sharpv(model)
    return model


def greedy(model, **kw) -> torch.Tensor:
    with torch.no_grad():
        return model.generate(**kw, max_new_tokens=NEW, min_new_tokens=NEW, do_sample=False)


def dense_lm_inputs(model, **inputs) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``inputs_embeds`` ``(B, L, d)`` and ``position_ids`` (``(3, B, L)`` for M-RoPE, else
    whatever the model passes) that the dense model gives its language model."""
    seen = {}

    def grab(module, args, kwargs):
        seen["embeds"] = kwargs["inputs_embeds"].detach().clone()
        pos = kwargs.get("position_ids")
        seen["pos"] = None if pos is None else pos[-3:].clone() if pos.dim() == 3 else pos

    handle = model.model.language_model.register_forward_pre_hook(grab, with_kwargs=True)
    try:
        with torch.no_grad():
            model(**inputs)
    finally:
        handle.remove()
    return seen["embeds"], seen["pos"]


def llava_prompt(kind: str, frames: int, text=(9, 10, 11), tail=(12, 13)) -> list[int]:
    return [BOS_ID, *text] + [VIDEO_ID] * (frames * F + EXTRA[kind]) + list(tail)


def video(frames: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    base = torch.randn(3, 56, 56, generator=g)
    # a static start, then changes: exercises both tiny and large keep ratios
    clip = [
        base + (0.0 if t < 2 else 0.7 * t) * torch.randn(3, 56, 56, generator=g)
        for t in range(frames)
    ]
    return torch.stack(clip)


def llava_oracle(
    model, kind: str, ids: list[int], pixels: torch.Tensor, **prune_kw
) -> torch.Tensor:
    """New tokens from inputs_embeds holding only the kept video tokens (one sample)."""
    idt = torch.tensor(ids)
    dense, _ = dense_lm_inputs(model, input_ids=idt[None], pixel_values_videos=pixels[None])
    pos = (idt == VIDEO_ID).nonzero().flatten()
    out = dense[0, pos]  # the video rows, newline included
    with torch.no_grad():
        T = pixels.shape[0]
        res = visual_prune_reference(out[: T * F].reshape(T, F, -1), **prune_kw)
        keep_vid = torch.zeros(out.shape[0], dtype=torch.bool)
        keep_vid[res.indices] = True
        keep_vid[T * F :] = True
        emb = dense[0]
        keep = torch.ones(len(ids), dtype=torch.bool)
        keep[pos] = keep_vid
        e = emb[keep][None]
    return greedy(
        model, inputs_embeds=e, attention_mask=torch.ones(1, e.shape[1], dtype=torch.long)
    )[0]


# ------------------------------------------------------------------ config and registry
def test_config_defaults_and_validation():
    c = sharpv.SharpVConfig()
    assert (c.visual, c.memory, c.mode, c.w, c.threshold, c.min_keep) == (
        True,
        True,
        "adaptive",
        1.0,
        1.6,
        1,
    )
    assert c.metric == "dissim" and c.memory_threshold == 0.2
    assert c.keep_ratio is None and c.budget is None
    for bad in (
        {"mode": "topk"},
        {"mode": "ratio"},
        {"mode": "budget"},
        {"keep_ratio": 0.0},
        {"budget": 1.5},
        {"min_keep": -1},  # the op takes min_keep in [0, f]
        {"metric": "l2"},
        {"w": float("nan")},
        {"memory_threshold": 2.0},
    ):
        with pytest.raises(ValueError):
            sharpv.SharpVConfig(**bad)
    for bad in ({"visual": 1}, {"min_keep": 1.5}, {"threshold": "1.6"}):
        with pytest.raises(TypeError):
            sharpv.SharpVConfig(**bad)
    assert sharpv.SharpVConfig(mode="ratio", keep_ratio=0.5).visual_kwargs()["keep_ratio"] == 0.5
    # an option of another mode is an error, never silently dropped (issue 22)
    with pytest.raises(ValueError, match="keep_ratio of method sharpv is only used with mode"):
        sharpv.SharpVConfig(keep_ratio=0.5, budget=0.2)
    kw = sharpv.SharpVConfig(mode="budget", budget=0.2).visual_kwargs()
    assert kw["keep_ratio"] is None and kw["budget"] == 0.2
    from sharpv_kernels import visual_prune

    visual_prune(torch.randn(2, 4, 8), **kw)


def test_registry_lists_supported_types():
    types = supported_model_types()
    for t in ("llava_onevision", "llava_next_video", "qwen2_5_vl", "qwen2_vl"):
        assert t in types
    from transformers import LlamaConfig, LlamaForCausalLM

    llama = LlamaForCausalLM(
        LlamaConfig(
            vocab_size=32,
            hidden_size=16,
            intermediate_size=32,
            num_hidden_layers=1,
            num_attention_heads=2,
            num_key_value_heads=2,
        )
    )
    with pytest.raises(UnsupportedModelError, match="llava_onevision") as ei:
        sharpv.apply_sharpv(llama)
    assert "'llama'" in str(ei.value) and "qwen2_5_vl" in str(ei.value)
    assert "generate" not in llama.__dict__
    assert get_adapter(tiny("llava_onevision")).model_types == ("llava_onevision",)


# ------------------------------------------------------------------ LLaVA adapters
@pytest.mark.parametrize("attn", ["eager", "sdpa"])
@pytest.mark.parametrize("kind", ["llava_onevision", "llava_next_video"])
def test_visual_only_matches_inputs_embeds_oracle(kind, attn):
    model = tiny(kind, attn)
    T = 5
    ids, pix = llava_prompt(kind, T), video(T, seed=1)
    expected = llava_oracle(model, kind, ids, pix)
    sharpv.apply_sharpv(model, sharpv.SharpVConfig(memory=False))
    out = greedy(
        model,
        input_ids=torch.tensor([ids]),
        attention_mask=torch.ones(1, len(ids), dtype=torch.long),
        pixel_values_videos=pix[None],
    )
    assert out.shape[1] == len(ids) + NEW
    assert out[0, : len(ids)].tolist() == ids  # original prompt ids come back
    assert out[0, len(ids) :].tolist() == expected.tolist()
    s = model.sharpv_stats[0]
    assert s.frame_ratios.shape == (T,) and s.frame_counts.dtype == torch.int32
    assert 0 < s.visual_tokens_kept < T * F == s.visual_tokens_in
    assert s.visual_ratio == pytest.approx(s.visual_tokens_kept / (T * F))
    assert s.memory_ratio == 1.0 and s.layer_similarities is None
    assert int(model.sharpv_stats.prompt_tokens_kept[0]) == len(ids) - (
        T * F - s.visual_tokens_kept
    )


@pytest.mark.parametrize("kind", ["llava_onevision", "llava_next_video"])
def test_manual_and_budget_modes_match_oracle(kind):
    model = tiny(kind)
    T = 4
    ids, pix = llava_prompt(kind, T), video(T, seed=2)
    for kw in ({"mode": "manual", "threshold": 1.2}, {"mode": "budget", "budget": 0.4}):
        expected = llava_oracle(model, kind, ids, pix, **kw)
        sharpv.apply_sharpv(model, sharpv.SharpVConfig(memory=False, **kw))
        out = greedy(model, input_ids=torch.tensor([ids]), pixel_values_videos=pix[None])
        assert out[0, len(ids) :].tolist() == expected.tolist(), kw
        sharpv.revert_sharpv(model)


@pytest.mark.parametrize("kind", ["llava_onevision", "llava_next_video"])
def test_revert_and_keep_all_give_dense_outputs(kind):
    model = tiny(kind)
    T = 4
    ids, pix = llava_prompt(kind, T), video(T, seed=3)
    kw = dict(input_ids=torch.tensor([ids]), pixel_values_videos=pix[None])
    dense = greedy(model, **kw)
    before = dict(model.__dict__)
    sharpv.apply_sharpv(model)
    assert "generate" in model.__dict__ and model.sharpv_config == sharpv.SharpVConfig()
    # keeping every token and no layer: the dense model's answer
    sharpv.apply_sharpv(model, sharpv.SharpVConfig(mode="ratio", keep_ratio=1.0, memory=False))
    assert greedy(model, **kw).tolist() == dense.tolist()
    assert model.sharpv_stats[0].visual_ratio == 1.0
    sharpv.revert_sharpv(model)
    assert model.__dict__.keys() == before.keys()
    assert not hasattr(model, "sharpv_stats")
    assert greedy(model, **kw).tolist() == dense.tolist()
    sharpv.revert_sharpv(model)  # no-op


@pytest.mark.parametrize("kind", ["llava_onevision", "llava_next_video"])
def test_padded_batch_of_two_videos_matches_each_alone(kind):
    model = tiny(kind)
    lens = (3, 6)
    prompts = [
        llava_prompt(kind, 3, text=(9,)),
        llava_prompt(kind, 6, text=(9, 10, 11, 20), tail=(21,)),
    ]
    clips = [video(3, seed=4), video(6, seed=5)]
    sharpv.apply_sharpv(model, sharpv.SharpVConfig(memory=False))
    alone, stats = [], []
    for ids, pix in zip(prompts, clips, strict=True):
        out = greedy(model, input_ids=torch.tensor([ids]), pixel_values_videos=pix[None])
        alone.append(out[0, len(ids) :].tolist())
        stats.append(model.sharpv_stats[0])
    L = max(map(len, prompts))
    ids = torch.tensor([[0] * (L - len(p)) + p for p in prompts])
    mask = torch.tensor([[0] * (L - len(p)) + [1] * len(p) for p in prompts])
    padded = torch.zeros(2, max(lens), 3, 56, 56)
    for i, c in enumerate(clips):
        padded[i, : c.shape[0]] = c
    for pv in (padded, clips):  # padded tensor, or a list of (T_i, C, H, W)
        out = greedy(model, input_ids=ids, attention_mask=mask, pixel_values_videos=pv)
        assert out[:, :L].tolist() == ids.tolist()
        for b in range(2):
            assert out[b, L:].tolist() == alone[b]
            s = model.sharpv_stats[b]
            assert s.frame_counts.tolist() == stats[b].frame_counts.tolist()
            assert torch.equal(s.frame_ratios, stats[b].frame_ratios)


def test_image_plus_video_prompt_and_text_only_passthrough():
    model = tiny("llava_onevision")
    T = 3
    g = torch.Generator().manual_seed(6)
    image = torch.randn(1, 3, 3, 56, 56, generator=g)  # (images, patches, C, H, W) anyres
    image_sizes = torch.tensor([[56, 56]])
    with torch.no_grad():
        out = model.model.get_image_features(image, image_sizes)
    out = getattr(out, "pooler_output", out)  # 5.x output object, 4.x tuple
    n_img = sum(x.shape[0] for x in out)
    ids = [BOS_ID, 9] + [IMAGE_ID] * n_img + [10] + [VIDEO_ID] * (T * F + 1) + [11]
    kw = dict(
        input_ids=torch.tensor([ids]),
        pixel_values=image,
        image_sizes=image_sizes,
        pixel_values_videos=video(T, seed=7)[None],
    )
    dense = greedy(model, **kw)
    sharpv.apply_sharpv(model, sharpv.SharpVConfig(mode="ratio", keep_ratio=1.0, memory=False))
    assert greedy(model, **kw).tolist() == dense.tolist()
    sharpv.apply_sharpv(model, sharpv.SharpVConfig(memory=False))
    out = greedy(model, **kw)
    assert out.shape[1] == len(ids) + NEW
    assert model.sharpv_stats[0].visual_tokens_in == T * F

    text = torch.tensor([[BOS_ID, 9, 10, 11]])
    sharpv.revert_sharpv(model)
    dense_text = greedy(model, input_ids=text)
    sharpv.apply_sharpv(model)
    assert greedy(model, input_ids=text).tolist() == dense_text.tolist()
    assert model.sharpv_stats[0].visual_tokens_in == 0
    assert model.sharpv_stats.visual_ratio == 1.0


def test_mismatched_placeholders_raise():
    model = tiny("llava_next_video")
    ids = llava_prompt("llava_next_video", 3)[:-3]  # too few placeholders for 3 frames
    sharpv.apply_sharpv(model, sharpv.SharpVConfig(memory=False))
    with pytest.raises(ValueError, match="placeholders"):
        greedy(model, input_ids=torch.tensor([ids]), pixel_values_videos=video(3, 0)[None])


# ------------------------------------------------------------------ Qwen-VL (3-D M-RoPE)
def qwen_inputs(model, grids: list[tuple[int, int, int]], seed: int, texts):
    """Prompt ids and pixel patches for videos of the given (t, h, w) patch grids."""
    vc = model.config.vision_config
    g = torch.Generator().manual_seed(seed)
    dim = 3 * vc.temporal_patch_size * vc.patch_size**2
    rows, prompts = [], []
    for (t, h, w), (pre, post) in zip(grids, texts, strict=True):
        rows.append(torch.randn(t * h * w, dim, generator=g))
        n = t * h * w // vc.spatial_merge_size**2
        prompts.append([BOS_ID, *pre, VISION_START_ID] + [VIDEO_ID] * n + [VISION_END_ID, *post])
    return prompts, torch.cat(rows), torch.tensor(grids)


def qwen_user_inputs(model, ids, pv, grid, mask=None) -> dict:
    """The arguments a user passes with a processor's output: the ``mm_token_type_ids`` that
    transformers 5 processors add (0 text, 2 video) wherever the model takes them."""
    kw = dict(input_ids=ids, pixel_values_videos=pv, video_grid_thw=grid)
    if mask is not None:
        kw["attention_mask"] = mask
    if "mm_token_type_ids" in inspect.signature(model.forward).parameters:
        kw["mm_token_type_ids"] = (ids == VIDEO_ID).long() * 2
    return kw


def mrope_greedy(model, embeds, mask, position_ids, steps: int) -> list[list[int]]:
    """Greedy decoding by hand: prefill with explicit 3-D positions, then each new token one
    past the position of the sample's last prompt token, row by row (the dense model's rule,
    checked against its own ``generate`` below)."""
    from transformers import DynamicCache

    cache = DynamicCache()
    last = (torch.arange(mask.shape[1]) * mask.bool()).argmax(dim=1)
    nxt = position_ids[:, torch.arange(mask.shape[0]), last] + 1  # (3, B)
    emb, pos, tokens = embeds, position_ids, []
    with torch.no_grad():
        for step in range(steps):
            out = model(
                inputs_embeds=emb,
                attention_mask=mask,
                position_ids=pos,
                use_cache=True,
                **{cache_kwarg(model): cache},
            )
            tok = out.logits[:, -1].argmax(-1)
            tokens.append(tok.tolist())
            emb = model.get_input_embeddings()(tok[:, None])
            mask = torch.cat([mask, torch.ones_like(mask[:, :1])], dim=1)
            pos = (nxt + step)[:, :, None]
    return [list(t) for t in zip(*tokens, strict=True)]


@pytest.mark.parametrize("kind", ["qwen2_5_vl", "qwen2_vl"])
def test_qwen_keep_all_is_dense_and_pruned_keeps_mrope_positions(kind):
    model = tiny(kind)
    prompts, pv, grid = qwen_inputs(model, [(4, 4, 4)], seed=8, texts=[((9, 10), (11, 12))])
    ids = torch.tensor(prompts)
    kw = qwen_user_inputs(model, ids, pv, grid)
    dense = greedy(model, **kw)
    sharpv.apply_sharpv(model, sharpv.SharpVConfig(mode="ratio", keep_ratio=1.0, memory=False))
    assert greedy(model, **kw).tolist() == dense.tolist()
    # the hand-written decoding loop reproduces the dense model's own generate
    sharpv.revert_sharpv(model)
    emb, pos = dense_lm_inputs(model, **kw)
    assert pos.shape == (3, 1, ids.shape[1]) and int(pos.amax()) < ids.shape[1] - 1  # 3-D
    full = mrope_greedy(model, emb, torch.ones_like(ids), pos, NEW)
    assert full[0] == dense[0, ids.shape[1] :].tolist()
    # the model is sensitive to positions: the 1-D fallback would answer differently
    flat = torch.arange(ids.shape[1])[None, None].expand(3, 1, -1)
    assert mrope_greedy(model, emb, torch.ones_like(ids), flat, NEW) != full

    # oracle: kept tokens with their dense 3-D positions, text after at dense positions
    vpos = (ids[0] == VIDEO_ID).nonzero().flatten()
    res = visual_prune_reference(emb[0, vpos].reshape(4, 4, -1))
    keep = torch.ones(ids.shape[1], dtype=torch.bool)
    keep[vpos] = False
    keep[vpos[res.indices]] = True
    n = int(keep.sum())
    expected = mrope_greedy(
        model, emb[:, keep], torch.ones(1, n, dtype=torch.long), pos[:, :, keep], NEW
    )
    sharpv.apply_sharpv(model, sharpv.SharpVConfig(memory=False))
    out = greedy(model, **kw)
    assert out[0, ids.shape[1] :].tolist() == expected[0]
    assert model.sharpv_stats[0].visual_tokens_kept == res.indices.numel() < 16


def test_qwen_padded_batch_matches_each_alone_and_keep_all_is_dense():
    model = tiny("qwen2_5_vl")
    grids = [(2, 4, 4), (6, 4, 4)]
    texts = [((9,), (11,)), ((9, 10, 20), (11, 12))]
    prompts, pv, grid = qwen_inputs(model, grids, seed=9, texts=texts)
    L = max(map(len, prompts))
    ids = torch.tensor([[0] * (L - len(p)) + p for p in prompts])
    mask = torch.tensor([[0] * (L - len(p)) + [1] * len(p) for p in prompts])
    batch = qwen_user_inputs(model, ids, pv, grid, mask)
    dense = greedy(model, **batch)
    sharpv.apply_sharpv(model, sharpv.SharpVConfig(mode="ratio", keep_ratio=1.0, memory=False))
    assert greedy(model, **batch).tolist() == dense.tolist()

    sharpv.apply_sharpv(model, sharpv.SharpVConfig(memory=False))
    alone, start = [], 0
    for i, p in enumerate(prompts):
        n = grids[i][0] * grids[i][1] * grids[i][2]
        one = qwen_user_inputs(model, torch.tensor([p]), pv[start : start + n], grid[i : i + 1])
        out = greedy(model, **one)
        alone.append(out[0, len(p) :].tolist())
        start += n
    out = greedy(model, **batch)
    assert [out[b, L:].tolist() for b in range(2)] == alone


def test_qwen_revert_restores_the_model_exactly():
    """Generating with SharpV leaves no per-call state behind (Qwen's ``rope_deltas``
    included), and revert gives back the very same attributes."""
    model = tiny("qwen2_vl")
    prompts, pv, grid = qwen_inputs(model, [(2, 4, 4)], seed=13, texts=[((9,), (11,))])
    kw = qwen_user_inputs(model, torch.tensor(prompts), pv, grid)
    dense = greedy(model, **kw)  # leaves the model's own rope_deltas from this call

    def snapshot():
        return {
            name: dict(m.__dict__)
            for name, m in (
                ("top", model),
                ("inner", model.model),
                ("lm", model.model.language_model),
            )
        }

    before = snapshot()
    hooks_before = len(model.model.language_model._forward_pre_hooks)
    sharpv.apply_sharpv(model, sharpv.SharpVConfig(memory=False))
    greedy(model, **kw)
    assert model.model.rope_deltas is before["inner"]["rope_deltas"]
    assert len(model.model.language_model._forward_pre_hooks) == hooks_before
    sharpv.revert_sharpv(model)
    after = snapshot()
    for part in before:
        assert after[part].keys() == before[part].keys(), part
        for k, v in before[part].items():
            assert after[part][k] is v, (part, k)
    assert greedy(model, **kw).tolist() == dense.tolist()


# ------------------------------------------------------------------ both stages
@pytest.mark.parametrize("attn", ["eager", "sdpa"])
@pytest.mark.parametrize("kind", ["llava_onevision", "llava_next_video"])
def test_memory_exactness_through_adapter(kind, attn):
    """Visual + Memory SharpV == the dense model fed the kept tokens, whose decode steps
    cannot see the visual entries of the dropped layers (Memory SharpV's oracle)."""
    pytest.importorskip("sharpv.memory")

    model = tiny(kind, attn)
    T = 5
    ids, pix = llava_prompt(kind, T), video(T, seed=10)
    kw = dict(input_ids=torch.tensor([ids]), pixel_values_videos=pix[None])
    # measure the similarities, then put M between them so that some layers drop
    sharpv.apply_sharpv(model, sharpv.SharpVConfig(memory_threshold=-1.0))
    greedy(model, **kw)
    sims = model.sharpv_stats[0].layer_similarities
    assert sims.shape == (model.config.text_config.num_hidden_layers,)
    assert not model.sharpv_stats[0].dropped_layers.any()
    mid = sorted(sims[1:].tolist())
    M = (mid[len(mid) // 2 - 1] + mid[len(mid) // 2]) / 2
    sharpv.apply_sharpv(model, sharpv.SharpVConfig(memory_threshold=M))
    out = greedy(model, **kw)
    s = model.sharpv_stats[0]
    assert s.dropped_layers.tolist() == (sims < M).tolist() and 0 < int(s.dropped_layers.sum())
    n_layers = sims.numel()
    assert s.memory_ratio == pytest.approx(1 - int(s.dropped_layers.sum()) / n_layers)
    assert s.token_budget == pytest.approx(s.visual_ratio * s.memory_ratio)
    assert model.sharpv_stats.memory and model.sharpv_stats.memory_ratio == s.memory_ratio

    sharpv.revert_sharpv(model)
    idt = torch.tensor(ids)
    dense, _ = dense_lm_inputs(model, input_ids=idt[None], pixel_values_videos=pix[None])
    vpos = (idt == VIDEO_ID).nonzero().flatten()
    feats = dense[0, vpos]
    with torch.no_grad():
        res = visual_prune_reference(feats[: T * F].reshape(T, F, -1))
        emb = dense[0]
        keep = torch.ones(len(ids), dtype=torch.bool)
        keep[vpos] = False
        keep[vpos[res.indices]] = True
        keep[vpos[T * F :]] = True  # newline
        frame_tok = torch.zeros(len(ids), dtype=torch.bool)
        frame_tok[vpos[res.indices]] = True
        vis = frame_tok[keep][None]
        e = emb[keep][None]
        with dense_masked(model, s.dropped_layers[:, None], vis):
            expected = greedy(model, inputs_embeds=e, attention_mask=torch.ones_like(vis).long())
    assert out[0, len(ids) :].tolist() == expected[0].tolist()


def test_qwen_memory_exactness_through_adapter():
    """Both stages on an M-RoPE model: the oracle decodes the kept tokens at their dense 3-D
    positions with the dropped layers' visual entries masked."""
    pytest.importorskip("sharpv.memory")

    model = tiny("qwen2_5_vl")
    prompts, pv, grid = qwen_inputs(model, [(4, 4, 4)], seed=15, texts=[((9, 10), (11, 12))])
    ids = torch.tensor(prompts)
    kw = qwen_user_inputs(model, ids, pv, grid)
    sharpv.apply_sharpv(model, sharpv.SharpVConfig(memory_threshold=-1.0))
    greedy(model, **kw)
    sims = sorted(model.sharpv_stats[0].layer_similarities[1:].tolist())
    M = (sims[len(sims) // 2 - 1] + sims[len(sims) // 2]) / 2
    sharpv.apply_sharpv(model, sharpv.SharpVConfig(memory_threshold=M))
    out = greedy(model, **kw)
    s = model.sharpv_stats[0]
    assert 0 < int(s.dropped_layers.sum())

    sharpv.revert_sharpv(model)
    emb, pos = dense_lm_inputs(model, **kw)
    vpos = (ids[0] == VIDEO_ID).nonzero().flatten()
    res = visual_prune_reference(emb[0, vpos].reshape(4, 4, -1))
    keep = torch.ones(ids.shape[1], dtype=torch.bool)
    keep[vpos] = False
    keep[vpos[res.indices]] = True
    vis = torch.zeros(ids.shape[1], dtype=torch.bool)
    vis[vpos[res.indices]] = True
    vis = vis[keep][None]
    with dense_masked(model, s.dropped_layers[:, None], vis):
        expected = mrope_greedy(
            model, emb[:, keep], torch.ones_like(vis).long(), pos[:, :, keep], NEW
        )
    assert out[0, ids.shape[1] :].tolist() == expected[0]


def test_memory_on_padded_batch_matches_each_alone():
    pytest.importorskip("sharpv.memory")
    kind = "llava_onevision"
    model = tiny(kind)
    prompts = [llava_prompt(kind, 3, text=(9,)), llava_prompt(kind, 5, text=(9, 10, 11, 20))]
    clips = [video(3, seed=11), video(5, seed=12)]
    sharpv.apply_sharpv(model, sharpv.SharpVConfig(memory_threshold=0.9))
    alone = []
    for ids, pix in zip(prompts, clips, strict=True):
        out = greedy(model, input_ids=torch.tensor([ids]), pixel_values_videos=pix[None])
        alone.append((out[0, len(ids) :].tolist(), model.sharpv_stats[0].dropped_layers.tolist()))
    L = max(map(len, prompts))
    ids = torch.tensor([[0] * (L - len(p)) + p for p in prompts])
    mask = torch.tensor([[0] * (L - len(p)) + [1] * len(p) for p in prompts])
    out = greedy(model, input_ids=ids, attention_mask=mask, pixel_values_videos=clips)
    for b in range(2):
        assert (out[b, L:].tolist(), model.sharpv_stats[b].dropped_layers.tolist()) == alone[b]


# ------------------------------------------------------------------ harness and helpers
def test_tiny_models_leave_the_callers_rng_alone():
    torch.manual_seed(123)
    state = torch.get_rng_state()
    a = tiny_qwen2_vl(layers=1, vision_layers=1, seed=3)
    assert torch.equal(torch.get_rng_state(), state)
    b = tiny_qwen2_vl(layers=1, vision_layers=1, seed=3)
    c = tiny_qwen2_vl(layers=1, vision_layers=1, seed=4)
    pa, pb, pc = (dict(m.named_parameters()) for m in (a, b, c))
    assert all(torch.equal(pa[k], pb[k]) for k in pa)
    assert any(not torch.equal(pa[k], pc[k]) for k in pa)
    # the M-RoPE sections reach the model under this release's config names
    assert tiny_qwen2_vl(layers=1, vision_layers=1).model.language_model.rotary_emb is not None


def test_load_model_reads_a_saved_checkpoint_in_the_requested_dtype(tmp_path):
    from sharpv.adapters import load_model

    src = tiny_qwen2_vl(layers=1, vision_layers=1, seed=5)
    src.save_pretrained(tmp_path)
    model, adapter = load_model(str(tmp_path), dtype=torch.bfloat16)
    assert type(adapter).__name__ == "QwenVLAdapter" and not model.training
    assert type(model) is type(src) and model.dtype == torch.bfloat16
    want = dict(src.named_parameters())
    for k, p in model.named_parameters():
        assert torch.equal(p, want[k].to(torch.bfloat16)), k
    llama = tmp_path / "llama"
    from transformers import LlamaConfig

    LlamaConfig(vocab_size=8, hidden_size=8, num_attention_heads=2).save_pretrained(llama)
    with pytest.raises(UnsupportedModelError, match="'llama'"):
        load_model(str(llama))  # before any weight is read: there are none
    empty = tmp_path / "empty"  # 4.x's AutoConfig would call this an "mpt" model
    empty.mkdir()
    with pytest.raises(FileNotFoundError, match="config.json"):
        load_model(str(empty))


def test_stage_callback_times_each_stage_of_every_call():
    model = tiny("llava_next_video")
    T = 3
    ids, pix = llava_prompt("llava_next_video", T), video(T, seed=14)
    seen = []
    cfg = sharpv.SharpVConfig(memory=False)
    sharpv.apply_sharpv(model, cfg, on_stage=lambda stage, s: seen.append((stage, s)))
    with_cb = greedy(model, input_ids=torch.tensor([ids]), pixel_values_videos=pix[None])
    greedy(model, input_ids=torch.tensor([ids]), pixel_values_videos=pix[None])
    assert [st for st, _ in seen] == ["features", "prune", "rebuild"] * 2
    assert all(s >= 0 for _, s in seen)
    sharpv.apply_sharpv(model, cfg)  # no callback: same answer
    plain = greedy(model, input_ids=torch.tensor([ids]), pixel_values_videos=pix[None])
    assert with_cb.tolist() == plain.tolist()
