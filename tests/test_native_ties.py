"""Degenerate dissimilarities are exact, so black, constant and duplicated frames keep the
same tokens on torch, Triton and native (SPEC Visual 1).

Against a zero vector ``Dissim`` is exactly 1.0 and between two zero vectors exactly 0.0;
with ``metric="cosine"`` both are exactly 1.0. Scores of degenerate pairs are then equal bit
for bit on every backend, and ties among them break the same way (lower index first).
"""

from __future__ import annotations

import pytest
import torch

from sharpv_kernels import visual_prune, visual_scores
from sharpv_kernels.ops.visual_prune.naive import visual_scores_reference

from .backends import use_backend

CU = [0, 4, 9]


def _features(kind: str, dtype: torch.dtype) -> torch.Tensor:
    """``(9, 6, 20)`` frames of two videos with degenerate content of one ``kind``."""
    g = torch.Generator().manual_seed(7)
    x = torch.randn(9, 6, 20, generator=g)
    if kind == "black":  # whole black frames (first of a video too), black tokens
        x[0] = 0.0
        x[2] = 0.0
        x[3] = 0.0
        x[5, 1:4] = 0.0
        x[6, ::2] = 0.0
    elif kind == "constant":  # every token alike; a frame whose mean is exactly 0
        x[1] = x[1, 0]
        x[2] = x[2, 3]
        x[4] = 0.75
        x[6, 0::2] = torch.round(8 * x[6, 0])  # small integers: the mean is exactly 0 in
        x[6, 1::2] = -x[6, 0]  # any order of summation
    else:  # "duplicated": repeated frames and repeated tokens
        x[1] = x[0]
        x[2] = x[0]
        x[7] = x[6]
        x[8, 2:] = x[8, 1]
    return x.to(dtype)


def _degenerate(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(frames, f)`` masks of the degenerate ``S`` (the token or its frame mean is zero)
    and ``T`` (the token or the previous frame's is zero; for a video's first frame, S's)."""
    zero = x.float().norm(dim=-1) <= 1e-12
    deg_s = zero | (x.float().mean(dim=1).norm(dim=-1) <= 1e-12)[:, None]
    deg_t = zero | torch.cat([zero[:1], zero[:-1]])
    first = torch.tensor(CU[:-1])
    deg_t[first] = deg_s[first]
    return deg_s, deg_t


@pytest.mark.parametrize("metric", ["dissim", "cosine"])
@pytest.mark.parametrize("kind", ["black", "constant", "duplicated"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_every_backend_keeps_the_same_tokens(kind, metric, dtype):
    x = _features(kind, dtype)
    res = {}
    for name in ("torch", "native", "triton"):
        with use_backend(name):
            res[name] = visual_prune(x, CU, metric=metric, return_scores=True)
    with use_backend("torch"):
        budget = visual_prune(x, CU, mode="budget", budget=0.4, metric=metric).indices
        want_s, want_t, _, _ = visual_scores(x, CU, metric=metric)
    deg_s, deg_t = _degenerate(x)
    assert deg_s.any() or deg_t.any() or kind != "black"
    for name in ("native", "triton"):
        assert torch.equal(res[name].indices, res["torch"].indices), (name, kind)
        assert torch.equal(res[name].counts, res["torch"].counts), (name, kind)
        torch.testing.assert_close(res[name].scores, res["torch"].scores, atol=5e-5, rtol=0)
        with use_backend(name):
            got = visual_prune(x, CU, mode="budget", budget=0.4, metric=metric).indices
            S, T, _, _ = visual_scores(x, CU, metric=metric)
        assert torch.equal(got, budget), (name, kind)
        assert torch.equal(S[deg_s], want_s[deg_s]), (name, kind)  # bit for bit
        assert torch.equal(T[deg_t], want_t[deg_t]), (name, kind)


@pytest.mark.parametrize("metric", ["dissim", "cosine"])
def test_degenerate_pairs_score_exactly(metric):
    """Frame 1 black after a frame of non-zero tokens, frame 2 black too, frame 3 non-zero
    tokens whose mean is exactly zero (small integers ``a, b, -a, -b``)."""
    x = torch.randn(4, 4, 8, generator=torch.Generator().manual_seed(1))
    x[1] = 0.0
    x[2] = 0.0
    x[3] = torch.round(8 * x[3])
    x[3, 2:] = -x[3, :2]
    one, zero = 1.0, (0.0 if metric == "dissim" else 1.0)  # against a zero vector, both zero
    want_s = torch.tensor([zero, zero, one])[:, None].expand(3, 4)
    want_t = torch.tensor([one, zero, one])[:, None].expand(3, 4)
    S, T, _, _ = visual_scores_reference(x, metric=metric)
    assert torch.equal(S[1:], want_s) and torch.equal(T[1:], want_t)
    for name in ("torch", "native", "triton"):
        with use_backend(name):
            got = visual_prune(x, metric=metric, w=0.0, return_scores=True).scores
            S, T, _, _ = visual_scores(x, metric=metric)
        assert torch.equal(got[1:], want_t), name  # I = T with w = 0
        assert torch.equal(S[1:], want_s) and torch.equal(T[1:], want_t), name
