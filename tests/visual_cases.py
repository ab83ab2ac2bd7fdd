"""Inputs and tie-robust checks shared by the Visual SharpV tests."""

from __future__ import annotations

import math

import torch

from sharpv_kernels.ops.visual_prune.naive import visual_prune_reference, visual_scores_reference

#: (frames, f, d, cu_frames) covering f in {1, 7, 64, 197}, d in {1, 3, 64, 130}, one frame,
#: one video and several videos of different lengths.
SHAPES = [
    (1, 1, 1, [0, 1]),
    (1, 7, 3, [0, 1]),
    (6, 7, 64, [0, 6]),
    (9, 64, 130, [0, 1, 4, 9]),
    (3, 197, 64, [0, 2, 3]),
    (5, 64, 3, [0, 2, 3, 5]),
]
SHAPE_IDS = [f"n{n}-f{f}-d{d}-B{len(cu) - 1}" for n, f, d, cu in SHAPES]

DTYPES = [torch.float32, torch.float16, torch.bfloat16]

#: scores are accumulated in float32 from the same input values in every backend, so the
#: tolerance does not depend on the input dtype; only the summation order differs.
SCORE_ATOL = {torch.float32: 5e-5, torch.float16: 5e-5, torch.bfloat16: 5e-5}

MODE_KW = {
    "adaptive": {},
    "manual": {"threshold": 1.6},
    "ratio": {"keep_ratio": 0.3},
    "budget": {"budget": 0.35},
}


def make_features(
    n: int, f: int, d: int, dtype: torch.dtype, device: str, seed: int = 0, kind: str = "random"
) -> torch.Tensor:
    """Synthetic video features; ``kind`` picks degenerate data."""
    g = torch.Generator().manual_seed(seed)
    base = torch.randn(n, f, d, generator=g)
    if kind == "static":  # every frame identical
        base = base[:1].expand(n, f, d).clone()
    elif kind == "slow":  # small motion on top of a static scene
        base = base[:1] + 0.05 * base
    elif kind == "zeros":  # zero tokens, and a whole zero frame
        base[:, ::3] = 0.0
        base[n // 2] = 0.0
    elif kind == "cut":  # static, then a scene cut halfway
        a, b = base[:1], torch.randn(1, f, d, generator=g)
        base = torch.cat([a.expand(n - n // 2, f, d), b.expand(n // 2, f, d)]).clone()
    elif kind == "constant":  # every token the same vector: all scores tie
        base = torch.ones(n, f, d)
    return base.to(dtype=dtype, device=device)


def check_result(
    features: torch.Tensor,
    cu_frames: list[int],
    out: tuple[torch.Tensor, ...],
    mode: str,
    kw: dict,
    *,
    min_keep: int = 1,
    w: float = 1.0,
    metric: str = "dissim",
    atol: float = 5e-5,
) -> None:
    """Check a ``(tokens, indices, counts, ratios, cu_tokens, scores)`` result.

    Robust to ties and to scores within ``atol`` of a decision boundary: the selection is
    checked exactly against the backend's own scores (ties to the lower index), and those
    scores, ratios and counts against the reference within tolerance.
    """
    tokens, indices, counts, ratios, cu_tokens, scores = (t.cpu() for t in out)
    feats = features.cpu()
    n, f, d = feats.shape
    cu = torch.tensor(cu_frames)
    S_ref, T_ref, I_ref, r_ref = visual_scores_reference(feats, cu, w=w, metric=metric)
    ref = visual_prune_reference(feats, cu, mode=mode, min_keep=min_keep, w=w, metric=metric, **kw)

    # scores and ratios
    assert scores.shape == (n, f) and scores.dtype == torch.float32
    torch.testing.assert_close(scores, I_ref, atol=atol, rtol=0)
    assert ratios.dtype == torch.float32 and ratios.shape == (n,)
    torch.testing.assert_close(ratios, r_ref, atol=atol, rtol=0)
    assert bool(((ratios >= 0) & (ratios <= 1)).all())

    # counts: equal to the reference except where the reference sits on a boundary
    assert counts.dtype == torch.int32 and counts.shape == (n,)
    k, k_ref = counts.long(), ref.counts.long()
    assert bool(((k >= min_keep) & (k <= f)).all())
    differ = k != k_ref
    if mode == "adaptive":
        x = r_ref.double() * f
        near = (x - x.round()).abs() < atol * f + 1e-6
        assert bool((~differ | near).all()), (k, k_ref)
    elif mode == "manual":
        near = ((I_ref - kw["threshold"]).abs() < atol).any(dim=1)
        assert bool((~differ | near).all()), (k, k_ref)
    elif mode == "ratio":
        assert torch.equal(k, k_ref)
    else:  # budget: every video's total is exact; frames may trade one token near a tie
        for a, b in zip(cu_frames[:-1], cu_frames[1:], strict=True):
            assert int(k[a:b].sum()) == int(k_ref[a:b].sum())
        assert bool(((k - k_ref).abs() <= 1).all()), (k, k_ref)
    assert int(k.sum()) == indices.numel() == tokens.shape[0]

    # selection: the top-k of the backend's own scores, ties to the lower index,
    # in original order; and a valid top-k of the reference scores within atol
    assert indices.dtype == torch.int64
    frame_of = indices // f
    assert torch.equal(frame_of, torch.repeat_interleave(torch.arange(n), k))
    assert bool((indices[1:] > indices[:-1]).all())
    for t in range(n):
        kt = int(k[t])
        row = scores[t].tolist()
        want = sorted(sorted(range(f), key=lambda i, row=row: (-row[i], i))[:kt])
        got = (indices[frame_of == t] - t * f).tolist()
        assert got == want, (t, got, want)
        if 0 < kt < f:
            mask = torch.zeros(f, dtype=torch.bool)
            mask[got] = True
            assert float(I_ref[t][mask].min()) >= float(I_ref[t][~mask].max()) - 2 * atol

    # gathered rows and per-video offsets
    assert tokens.dtype == feats.dtype
    assert torch.equal(tokens, feats.reshape(n * f, d)[indices])
    csum = torch.cat([torch.zeros(1, dtype=torch.long), torch.cumsum(k, 0)])
    assert cu_tokens.dtype == torch.int32
    assert cu_tokens.tolist() == csum[cu].tolist()


def expected_budget(budget: float, n: int, f: int, min_keep: int = 1) -> int:
    """Independent statement of the budget total (float32 product, ties to even)."""
    prod = float(torch.tensor(budget, dtype=torch.float32)) * float(n * f)
    prod32 = float(torch.tensor(prod, dtype=torch.float32))
    lo = math.floor(prod32)
    frac = prod32 - lo
    r = lo + (1 if frac > 0.5 or (frac == 0.5 and lo % 2 == 1) else 0)
    return max(r, n * min_keep)
