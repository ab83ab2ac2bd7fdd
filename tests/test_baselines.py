"""Baselines of :mod:`sharpv.baselines` on tiny inputs: counts, determinism, result type,
literal per-video/per-frame oracles, FastV against a hook-free layer loop."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

try:
    import sharpv
except ImportError:  # not installed: use the source tree
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "python"))
    import sharpv

from sharpv import baselines as bl
from sharpv.tiny_models import BOS_ID, EOS_ID, VIDEO_ID, tiny_llava_onevision
from sharpv_kernels import VisualPruneResult, visual_prune

F, D = 16, 8
CU = [0, 5, 11]  # two videos: 5 and 6 frames


def feats(n: int = 11, seed: int = 0, dtype=torch.float32) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, F, D, generator=g)
    x[1] = x[0] + 0.01 * torch.randn(F, D, generator=g)  # a nearly static pair
    x[3, :4] = 0.0  # zero tokens
    return x.to(dtype)


def check_result(res: VisualPruneResult, x: torch.Tensor, cu: list[int]) -> None:
    n, f, d = x.shape
    assert isinstance(res, VisualPruneResult)
    assert res.indices.dtype == torch.int64 and res.counts.dtype == torch.int32
    assert res.cu_tokens.dtype == torch.int32 and res.ratios.dtype == torch.float32
    assert res.tokens.dtype == x.dtype and res.tokens.shape == (res.indices.numel(), d)
    assert res.counts.shape == (n,) and res.ratios.shape == (n,)
    assert bool((res.indices[1:] > res.indices[:-1]).all())
    assert torch.equal(res.tokens, x.reshape(-1, d)[res.indices])
    per_frame = torch.bincount(res.indices // f, minlength=n)
    assert torch.equal(per_frame.to(torch.int32), res.counts)
    per_video = [int(res.counts[a:b].sum()) for a, b in zip(cu[:-1], cu[1:], strict=True)]
    assert res.cu_tokens.tolist() == [0, *torch.tensor(per_video).cumsum(0).tolist()]


def test_uniform_is_sharpv_ratio_mode():
    x = feats()
    res = bl.uniform(x, CU, keep_ratio=0.3)
    ref = visual_prune(x, CU, mode="ratio", keep_ratio=0.3)
    check_result(res, x, CU)
    assert torch.equal(res.indices, ref.indices)
    assert res.counts.tolist() == [5] * 11  # ceil(0.3 * 16)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_random_per_frame_counts_and_seed(dtype):
    x = feats(dtype=dtype)
    sharp = visual_prune(x, CU)
    a = bl.random_per_frame(x, CU, seed=3)
    check_result(a, x, CU)
    assert torch.equal(a.counts, sharp.counts)
    assert torch.equal(a.indices, bl.random_per_frame(x, CU, seed=3).indices)
    assert not torch.equal(a.indices, bl.random_per_frame(x, CU, seed=4).indices)
    counts = torch.arange(11) % (F + 1)
    b = bl.random_per_frame(x, CU, counts=counts, seed=0)
    assert b.counts.tolist() == counts.tolist()
    m = bl.random_per_frame(x, CU, mode="manual", threshold=1.0)
    assert torch.equal(m.counts, visual_prune(x, CU, mode="manual", threshold=1.0).counts)


def test_random_video_totals_and_seed():
    x = feats()
    sharp = visual_prune(x, CU)
    a = bl.random_video(x, CU, seed=1)
    check_result(a, x, CU)
    assert torch.equal(a.cu_tokens, sharp.cu_tokens)
    assert torch.equal(a.indices, bl.random_video(x, CU, seed=1).indices)
    assert not torch.equal(a.indices, bl.random_video(x, CU, seed=2).indices)
    b = bl.random_video(x, CU, totals=[7, 30], seed=0)
    assert b.cu_tokens.tolist() == [0, 7, 37]
    # the random keys decide: each video keeps exactly its largest keys
    s = bl.random_video(x, CU, totals=[7, 30], seed=0, return_scores=True).scores
    for (lo, hi), t in zip([(0, 5), (5, 11)], [7, 30], strict=True):
        flat = s[lo:hi].reshape(-1)
        top = torch.sort(torch.topk(flat, t).indices).values + lo * F
        assert torch.equal(b.indices[(b.indices >= lo * F) & (b.indices < hi * F)], top)


def _evs_oracle(x: torch.Tensor, cu: list[int], rate: float) -> torch.Tensor:
    kept = []
    for a, b in zip(cu[:-1], cu[1:], strict=True):
        v = x[a:b].float()
        n = b - a
        dis = torch.full((n, F), float("inf"))
        for t in range(1, n):
            cos = torch.nn.functional.cosine_similarity(v[t], v[t - 1], dim=-1, eps=1e-12)
            dis[t] = 1.0 - cos
        k = min(n * F, max(F, int(n * F * (1 - rate))))
        order = sorted(range(n * F), key=lambda i: (-float(dis.reshape(-1)[i]), i))[:k]
        kept += sorted(a * F + i for i in order)
    return torch.tensor(kept)


@pytest.mark.parametrize("rate", [0.0, 0.5, 0.75, 0.99])
def test_evs_global_topk_first_frame_whole(rate):
    x = feats()
    x[3, :4] = 1.0  # no zero vectors here: F.cosine_similarity treats them differently
    res = bl.evs(x, CU, rate=rate)
    check_result(res, x, CU)
    assert res.counts[0] == F and res.counts[5] == F
    assert res.cu_tokens.tolist()[1] == bl.evs_retained_tokens(5, F, rate)
    assert torch.equal(res.indices, _evs_oracle(x, CU, rate))


def _dycoke_oracle(x: torch.Tensor, cu: list[int], k: float) -> list[int]:
    keep_n = int((1 - k) * F)
    kept = []
    for a, b in zip(cu[:-1], cu[1:], strict=True):
        for t in range(a, b):
            j = t - a
            if j % 4 == 0:
                kept += [t * F + i for i in range(F)]
                continue
            ref = t - 2 if j % 4 == 2 else t - 1
            u = torch.nn.functional.normalize(x[t].float(), dim=-1)
            r = torch.nn.functional.normalize(x[ref].float(), dim=-1)
            sim = (u * r).sum(-1)
            order = sorted(range(F), key=lambda i: (float(sim[i]), i))[:keep_n]
            kept += sorted(t * F + i for i in order)
    return kept


@pytest.mark.parametrize("k", [0.7, 0.5])
def test_dycoke_ttm_windows(k):
    x = feats()
    res = bl.dycoke_ttm(x, CU, prune_ratio=k)
    check_result(res, x, CU)
    keep_n = bl.dycoke_keep_per_frame(F, k)
    # video 0: frames 0..4 (window 0-3, partial window 4); video 1: frames 5..10
    expect = [F, keep_n, keep_n, keep_n, F, F, keep_n, keep_n, keep_n, F, keep_n]
    assert res.counts.tolist() == expect
    assert res.indices.tolist() == _dycoke_oracle(x, CU, k)


def test_bad_inputs_raise():
    x = feats()
    with pytest.raises(ValueError, match="rate"):
        bl.evs(x, CU, rate=1.0)
    with pytest.raises(ValueError, match="prune_ratio"):
        bl.dycoke_ttm(x, CU, prune_ratio=-0.1)
    with pytest.raises(ValueError, match="cu_frames"):
        bl.random_video(x, [0, 4, 3, 11])
    with pytest.raises(ValueError, match="counts"):
        bl.random_per_frame(x, CU, counts=[F + 1] * 11)
    bad = x.clone()
    bad[2, 2, 2] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        bl.dycoke_ttm(bad, CU)
    with pytest.raises(TypeError, match="seed"):
        bl.random_video(x, CU, seed=1.5)
    with pytest.raises(ValueError, match="fastv"):
        bl.get_pruner("fastv")
    with pytest.raises(ValueError, match="unknown"):
        bl.get_pruner("nope")


def test_config_methods():
    assert sharpv.SharpVConfig(method="evs", method_options={"rate": 0.5}).method == "evs"
    with pytest.raises(ValueError, match="method must be one of"):
        sharpv.SharpVConfig(method="nope")
    # FastV prunes inside the LLM and does not combine with Memory SharpV
    assert sharpv.SharpVConfig(method="fastv").memory is False
    with pytest.raises(ValueError, match="option memory of method fastv must be one of false"):
        sharpv.SharpVConfig(method="fastv", memory=True)
    with pytest.raises(TypeError, match="method_options"):
        sharpv.SharpVConfig(method="evs", method_options=[("rate", 0.5)])
    x = feats()
    cfg = sharpv.SharpVConfig(method="uniform", method_options={"keep_ratio": 0.5})
    assert bl.make_pruner(cfg)(x, CU).counts.tolist() == [8] * 11


def test_one_vocabulary_and_make_pruner():
    """Defaults come from sharpv_kernels.vocab, method names from the registry; the
    configuration is data and make_pruner turns it into each method's pre-LLM stage."""
    from sharpv import methods
    from sharpv_kernels import vocab

    assert methods.get("sharpv").option("mode").choices == vocab.VISUAL_MODES
    assert methods.get("sharpv").option("metric").choices == vocab.METRICS
    assert not hasattr(vocab, "METHODS")
    cfg = sharpv.SharpVConfig()
    assert (cfg.mode, cfg.w, cfg.threshold, cfg.min_keep, cfg.metric, cfg.memory_threshold) == (
        vocab.DEFAULT_MODE, vocab.DEFAULT_W, vocab.DEFAULT_THRESHOLD, vocab.DEFAULT_MIN_KEEP,
        vocab.DEFAULT_METRIC, vocab.DEFAULT_MEMORY_THRESHOLD,
    )  # fmt: skip
    assert not hasattr(cfg, "pruner")
    x = feats()
    sharp = sharpv.SharpVConfig(mode="ratio", keep_ratio=0.25, memory=False)
    assert torch.equal(bl.make_pruner(sharp)(x, CU).indices,
                       visual_prune(x, CU, **sharp.visual_kwargs()).indices)  # fmt: skip
    # the random baselines take SharpV's counts from the same options
    rand = sharpv.SharpVConfig(mode="ratio", keep_ratio=0.25, method="random_per_frame")
    assert bl.make_pruner(rand)(x, CU).counts.tolist() == [4] * 11
    # uniform: the config's keep_ratio, else its own default
    assert bl.make_pruner(sharpv.SharpVConfig(method="uniform", keep_ratio=0.5))(
        x, CU).counts.tolist() == [8] * 11  # fmt: skip
    assert bl.make_pruner(sharpv.SharpVConfig(method="uniform"))(x, CU).counts.tolist() == [5] * 11
    with pytest.raises(ValueError, match="fastv"):
        bl.make_pruner(sharpv.SharpVConfig(method="fastv", memory=False))


# --------------------------------------------------------------------------- FastV
T_FRAMES, F_TINY = 4, 4  # tiny LLaVA-OV: 56 px, patch 14 -> 4 tokens per frame


def _inputs(batch: int = 2):
    ids = [BOS_ID, 9, 10] + [VIDEO_ID] * (T_FRAMES * F_TINY + 1) + [12, 13]
    g = torch.Generator().manual_seed(0)
    pix = torch.randn(batch, T_FRAMES, 3, 56, 56, generator=g)
    input_ids = torch.tensor([ids] * batch)
    return {"input_ids": input_ids, "attention_mask": torch.ones_like(input_ids),
            "pixel_values_videos": pix}  # fmt: skip


@torch.no_grad()
def _fastv_oracle(model, embeds, start, n_vis, layer, keep_ratio, steps):
    """Greedy tokens of FastV computed with a plain loop over the decoder layers: layer
    ``K - 1``'s eager attention ranks the visual tokens; layers >= K run on the kept
    positions (original rotary positions), recomputing the whole sequence at every step."""
    text = model.model.language_model
    out = model.model.language_model(inputs_embeds=embeds, output_attentions=True)
    S = embeds.shape[1]
    att = out.attentions[layer - 1][0, :, -1, start : start + n_vis].float().mean(0)
    n_keep = bl.fastv_keep_count(n_vis, keep_ratio)
    kept = torch.sort(torch.argsort(att, descending=True, stable=True)[:n_keep]).values
    tokens = []
    e = embeds
    for _ in range(steps):
        L = e.shape[1]
        keep = torch.cat([torch.arange(start), start + kept, torch.arange(start + n_vis, L)])
        pos = torch.arange(L)[None]
        cos, sin = text.rotary_emb(e, pos)
        h = e
        for i, dec in enumerate(text.layers):
            if i == layer:
                h, cos, sin, pos = h[:, keep], cos[:, keep], sin[:, keep], pos[:, keep]
            s = h.shape[1]
            mask = torch.full((s, s), torch.finfo(h.dtype).min).triu(1)[None, None]
            h = dec(h, attention_mask=mask, position_embeddings=(cos, sin), position_ids=pos)
        logits = model.lm_head(text.norm(h[:, -1]))
        logits[..., EOS_ID] = -torch.inf  # as generate's min_new_tokens=steps does
        tok = int(logits.argmax(-1))
        tokens.append(tok)
        e = torch.cat([e, model.get_input_embeddings()(torch.tensor([[tok]]))], dim=1)
    assert S == embeds.shape[1]
    return tokens, kept


@pytest.mark.parametrize("attn", ["eager", "sdpa"])
def test_fastv_matches_layer_loop_oracle(attn):
    from sharpv.integration import prepare_sharpv_inputs

    model = tiny_llava_onevision(attn_implementation=attn, layers=5, seed=0)
    oracle_model = tiny_llava_onevision(attn_implementation="eager", layers=5, seed=0)
    inputs = _inputs(2)
    steps = 4
    cfg = sharpv.SharpVConfig(method="fastv", memory=False,
                              method_options={"layer": 3, "keep_ratio": 0.3})  # fmt: skip
    sharpv.apply_sharpv(model, cfg)
    try:
        with torch.no_grad():
            out = model.generate(**inputs, max_new_tokens=steps, min_new_tokens=steps,
                                 do_sample=False)  # fmt: skip
        stats = model.sharpv_stats
    finally:
        sharpv.revert_sharpv(model)
    n_vis = T_FRAMES * F_TINY
    assert stats.visual_ratio == 1.0
    expect_mr = (3 * n_vis + 2 * bl.fastv_keep_count(n_vis, 0.3)) / (5 * n_vis)
    assert stats[0].memory_ratio == pytest.approx(expect_mr)
    prep = prepare_sharpv_inputs(
        oracle_model, sharpv.SharpVConfig(visual=False, memory=False),
        inputs["input_ids"], inputs["attention_mask"],
        pixel_values_videos=inputs["pixel_values_videos"],
    )  # fmt: skip
    for b in range(2):
        toks, _ = _fastv_oracle(oracle_model, prep.inputs_embeds[b : b + 1], 3, n_vis, 3,
                                0.3, steps)  # fmt: skip
        assert out[b, -steps:].tolist() == toks


def test_fastv_keep_all_is_dense_and_cache_shrinks():
    model = tiny_llava_onevision(attn_implementation="sdpa", layers=4, seed=1)
    inputs = _inputs(1)
    gen = dict(max_new_tokens=3, min_new_tokens=3, do_sample=False)
    with torch.no_grad():
        dense = model.generate(**inputs, **gen)
        sharpv.apply_sharpv(model, sharpv.SharpVConfig(
            method="fastv", memory=False, method_options={"keep_ratio": 1.0}))  # fmt: skip
        same = model.generate(**inputs, **gen)
        sharpv.revert_sharpv(model)
        assert torch.equal(dense, same)
        from sharpv.integration import prepare_sharpv_inputs

        prep = prepare_sharpv_inputs(
            model, sharpv.SharpVConfig(visual=False, memory=False), inputs["input_ids"],
            inputs["attention_mask"], pixel_values_videos=inputs["pixel_values_videos"],
        )  # fmt: skip
        with bl.fastv(model, prep.visual_mask, layer=2, keep_ratio=0.25) as st:
            out = model.model.language_model(inputs_embeds=prep.inputs_embeds, use_cache=True)
        cache = out.past_key_values
        S = prep.inputs_embeds.shape[1]
        n_keep = bl.fastv_keep_count(16, 0.25)
        assert [cache.get_seq_length(i) for i in range(4)] == [S, S, S - 16 + n_keep,
                                                               S - 16 + n_keep]  # fmt: skip
        assert st.kept.shape == (1, n_keep) and st.scores.shape == (1, 16)
    with pytest.raises(ValueError, match="layer"):
        with bl.fastv(model, prep.visual_mask, layer=4):
            pass


def test_pre_llm_methods_through_apply_sharpv():
    model = tiny_llava_onevision(attn_implementation="sdpa", layers=2, seed=0)
    inputs = _inputs(2)
    for method, opts, vr in [
        ("evs", {"rate": 0.5}, 0.5),
        ("dycoke_ttm", {"prune_ratio": 0.5}, (4 + 3 * 2) / 16),
        ("uniform", {"keep_ratio": 0.25}, 0.25),
    ]:
        sharpv.apply_sharpv(model, sharpv.SharpVConfig(method=method, memory=False,
                                                       method_options=opts))  # fmt: skip
        with torch.no_grad():
            out = model.generate(**inputs, max_new_tokens=2, do_sample=False)
        vr_got = model.sharpv_stats.visual_ratio
        sharpv.revert_sharpv(model)
        assert out.shape[1] == inputs["input_ids"].shape[1] + 2
        assert vr_got == pytest.approx(vr), method


def test_cli_method_option_parsing():
    from sharpv.cli import CLIError, _config, build_parser

    args = build_parser().parse_args(["demo", "--method", "evs", "--method-arg", "rate=0.6"])
    cfg = _config(args)
    assert cfg.method == "evs" and cfg.memory is False
    assert dict(cfg.options) == {"rate": 0.6, "memory": False}
    with pytest.raises(CLIError, match="evs has no option seed"):  # EVS is not random
        _config(build_parser().parse_args(["demo", "--method", "evs", "--opt", "seed=2"]))
    with pytest.raises(CLIError, match="KEY=VALUE"):
        _config(build_parser().parse_args(["demo", "--method", "evs", "--opt", "rate"]))
    args = build_parser().parse_args(["demo", "--method", "fastv"])
    assert _config(args).memory is False
