"""The native CPU kernel of Visual SharpV's score pass (``visual/native_scores.c``).

Its distances are compared with a float64 evaluation of the same definitions at the SPEC's
tolerance on odd shapes, every input dtype, strided inputs, several threads, norm spreads of
1e±6, zero tokens, exact rescalings (exactly 0) and overflowing or non-finite tokens. The op
level (``SHARPV_BACKEND=native``) runs in every backend-parametrised test; here also the
build: it must succeed where a C compiler exists, fail with a clear reason otherwise, and
``auto`` then falls back to the PyTorch path.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap

import pytest
import torch

from sharpv_kernels import visual_prune
from sharpv_kernels._native import NativeUnavailable, load_library
from sharpv_kernels.ops.visual_prune.native import (
    counts_cu_native,
    gather_rows_native,
    native_unavailable_reason,
    norms_finite_native,
    scores_ratios_native,
    select_native,
    unit_distances_native,
)
from sharpv_kernels.ops.visual_prune.torch_path import pair_scores, select_torch
from sharpv_kernels.vocab import ZERO_NORM_EPS

from .backends import use_backend
from .visual_cases import make_features

HAS_CC = any(shutil.which(c) for c in (os.environ.get("CC") or "cc", "gcc", "clang"))
needs_native = pytest.mark.skipif(
    native_unavailable_reason() is not None, reason=f"{native_unavailable_reason()}"
)

ATOL = 1e-5  # SPEC Visual item 1


def _reference(x: torch.Tensor):
    """float64 distances from the values the kernel reads."""
    x = x.double()
    nrm = x.norm(dim=-1, keepdim=True)
    u = torch.where(nrm > 1e-12, x / nrm, 0.0)
    mean = x.mean(dim=1, keepdim=True)
    mn = mean.norm(dim=-1, keepdim=True)
    um = torch.where(mn > 1e-12, mean / mn, 0.0)
    dm = (u - um).norm(dim=-1)
    dt = torch.zeros_like(dm)
    dt[1:] = (u[1:] - u[:-1]).norm(dim=-1)
    return dm, dt, nrm[..., 0], mn[..., 0]


def test_builds_where_a_c_compiler_exists():
    if not HAS_CC:
        pytest.skip("no C compiler on this machine")
    assert native_unavailable_reason() is None


@needs_native
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
@pytest.mark.parametrize("shape", [(1, 1, 1), (3, 5, 7), (7, 13, 130), (4, 3, 513)])
@pytest.mark.parametrize("threads", [1, 3])
def test_distances_match_float64(dtype, shape, threads):
    n, f, d = shape
    g = torch.Generator().manual_seed(n * 100 + d)
    e = 3 if dtype == torch.float16 else 6  # float16 holds 1e-3..6e4
    spread = torch.logspace(-e, e, f)[None, :, None] if f > 1 else 1.0
    x = (torch.randn(n, f, d, generator=g) * spread).to(dtype)
    old = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        got = unit_distances_native(x)
    finally:
        torch.set_num_threads(old)
    want = _reference(x)
    for name, a, b in zip(("dm", "dt"), got[:2], want[:2], strict=True):
        assert a.dtype == torch.float32
        torch.testing.assert_close(a.double(), b, atol=ATOL, rtol=0, msg=name)
    torch.testing.assert_close(got[2].double(), want[2], rtol=1e-6, atol=0)
    torch.testing.assert_close(got[3].double(), want[3], rtol=1e-5, atol=1e-30)


@needs_native
def test_strided_inputs():
    base = torch.randn(6, 9, 40)
    views = (base[::2], base[:, ::3], base[..., ::2], base.transpose(0, 1),
             base[:1].expand(4, 9, 40))  # fmt: skip
    for x in views:
        got, want = unit_distances_native(x), _reference(x)
        for a, b in zip(got[:2], want[:2], strict=True):
            torch.testing.assert_close(a.double(), b, atol=ATOL, rtol=0)


@needs_native
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
def test_exact_zeros(dtype):
    a = make_features(1, 11, 37, torch.float32, "cpu", seed=3)[0]
    a = (a + 0.5 * a.sign()).to(dtype)  # |a| >= 0.5: every rescaling below is exact in float16
    x = torch.stack([a, a * 64, a / 8, a, a * 2**-10])
    dm, dt, _, _ = unit_distances_native(x)
    assert torch.equal(dt[1:], torch.zeros_like(dt[1:]))  # rescalings: T exactly 0
    assert torch.equal(dm[1], dm[0]) and torch.equal(dm[2], dm[0])


@needs_native
def test_zero_tokens_overflow_and_nonfinite():
    x = torch.randn(3, 4, 16)
    x[0, 1] = 0.0
    x[1, 2] = 3e19  # finite, squared norm beyond float32
    x[2, 3, 5] = float("nan")
    dm, dt, norms, _ = unit_distances_native(x)
    assert norms[0, 1] == 0 and torch.isclose(dm[0, 1], torch.tensor(1.0))  # u = 0 vs a unit
    assert torch.isinf(norms[1, 2]) and torch.isnan(norms[2, 3])
    ok = torch.ones_like(norms, dtype=torch.bool)
    ok[1, 2] = ok[2, 3] = False
    assert torch.isfinite(norms[ok]).all()


@needs_native
def test_op_errors_match_the_torch_path():
    x = torch.randn(3, 4, 16)
    x[1, 2] = 3e19
    for name in ("torch", "native"):
        with use_backend(name), pytest.raises(ValueError, match="magnitude"):
            visual_prune(x)
    x[1, 2] = float("inf")
    for name in ("torch", "native"):
        with use_backend(name), pytest.raises(ValueError, match="NaN|Inf|finite"):
            visual_prune(x)


def test_a_failing_compiler_is_a_clear_reason(tmp_path, monkeypatch):
    monkeypatch.setenv("SHARPV_CACHE_DIR", str(tmp_path))
    monkeypatch.setenv("CC", shutil.which("false") or "false")
    if not shutil.which("false"):
        pytest.skip("no `false` command to stand in for a broken compiler")
    with pytest.raises(NativeUnavailable, match="failed"):
        load_library("sharpv_kernels.ops.visual_prune", "native_scores.c")
    assert not list(tmp_path.glob("*.so"))  # no partial library is left behind


def test_auto_falls_back_to_pytorch_without_a_compiler(tmp_path):
    """A fresh process with no compiler: ``auto`` runs the PyTorch path, same answer."""
    code = textwrap.dedent(
        """
        import torch
        from sharpv_kernels import visual_prune
        from sharpv_kernels.ops.visual_prune.native import native_unavailable_reason
        assert "no C compiler" in native_unavailable_reason()
        x = torch.randn(5, 6, 8, generator=torch.Generator().manual_seed(0))
        print(visual_prune(x).indices.tolist())
        """
    )
    env = {**os.environ, "PATH": str(tmp_path), "SHARPV_CACHE_DIR": str(tmp_path),
           "SHARPV_BACKEND": "auto"}  # fmt: skip
    env.pop("CC", None)
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         timeout=300)  # fmt: skip
    assert out.returncode == 0, out.stderr
    x = torch.randn(5, 6, 8, generator=torch.Generator().manual_seed(0))
    with use_backend("torch"):
        assert out.stdout.strip() == str(visual_prune(x).indices.tolist())


@needs_native
@pytest.mark.parametrize("rows_n", [5, 4096])  # 4096 x 640 float32 = 10 MB: huge pages asked
def test_gather_rows_matches_index_select(rows_n):
    rows = torch.randn(rows_n, 640)
    idx = torch.randperm(rows_n, generator=torch.Generator().manual_seed(1))[: rows_n - 1]
    out = gather_rows_native(rows, idx)
    assert out.is_contiguous() and torch.equal(out, rows.index_select(0, idx))
    assert torch.equal(gather_rows_native(rows, idx[:0]), rows[:0])


@needs_native
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
@pytest.mark.parametrize("threads", [1, 2])
def test_gather_rows_strided_and_streamed(dtype, threads):
    # 3000 x 1024 bfloat16 = 6 MB: streamed stores, on threads; odd widths and row strides
    # copy with memcpy; channel-strided rows go to index_select
    base = torch.randn(3000, 1030).to(dtype)
    idx = torch.randperm(3000, generator=torch.Generator().manual_seed(2))[:2900]
    old = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        for rows in (base[:, :1024], base[:, 3:1027], base[:, 5:], base[:, ::2], base[:, :1]):
            out = gather_rows_native(rows, idx)
            assert out.is_contiguous() and torch.equal(out, rows.index_select(0, idx))
    finally:
        torch.set_num_threads(old)


@needs_native
def test_select_matches_select_torch():
    # ties, -0 and +0, NaN and infinities, counts of 0 and f: the same indices as torch.sort
    g = torch.Generator().manual_seed(0)
    for trial in range(200):
        n, f = (
            int(torch.randint(1, 9, (1,), generator=g)),
            int(torch.randint(1, 300, (1,), generator=g)),
        )
        s = torch.randn(n, f, generator=g)
        if trial % 3 == 0:
            s = (s * 2).round() / 2
        if trial % 5 == 0:
            s[s == 0] = -0.0
            s[0, ::3] = 0.0
        if trial % 7 == 0:
            s[:, ::4], s[:, 1::5], s[:, 2::6] = float("nan"), float("inf"), -float("inf")
        k = torch.randint(0, f + 1, (n,), generator=g)
        k[0] = f if trial % 2 else 0
        assert torch.equal(select_native(s, k), select_torch(s, k)), trial


@needs_native
@pytest.mark.parametrize("metric", ["dissim", "cosine"])
def test_scores_match_the_torch_glue(metric):
    # zero tokens and frames, several videos, any w: the bits of visual_scores_torch's ops
    g = torch.Generator().manual_seed(0)
    for trial in range(60):
        n, f, d = (int(torch.randint(1, hi, (1,), generator=g)) for hi in (12, 40, 70))
        x = torch.randn(n, f, d, generator=g)
        x[torch.rand(n, f, generator=g) < 0.2] = 0
        if trial % 4 == 0:
            x[n // 2] = 0
        cuts = sorted(set(torch.randint(1, n + 1, (3,), generator=g).tolist()) | {n})
        cu = torch.tensor([0, *cuts], dtype=torch.int32)
        w = float(torch.rand(1, generator=g)) * 3
        dm, dt, norms, mn = unit_distances_native(x)
        nz = norms > ZERO_NORM_EPS
        S = pair_scores(dm, nz, mn > ZERO_NORM_EPS, metric)
        T = pair_scores(dt, nz, torch.cat([nz[:1], nz[:-1]]), metric)
        T[cu[:-1].long()] = S[cu[:-1].long()]
        *got, r = scores_ratios_native(dm, dt, norms, mn, cu, w, metric)
        for a, b in zip(got, (S, T, T + w * S), strict=True):
            assert torch.equal(a, b), trial
        # the ratios: the PyTorch path's within a float32 rounding, and the float64 value
        want = (torch.linalg.vector_norm(T, dim=-1) / (2.0 * f**0.5)).clamp(0.0, 1.0)
        torch.testing.assert_close(r, want, atol=0, rtol=2.5e-7)
        r64 = (torch.linalg.vector_norm(T.double(), dim=-1) / (2.0 * f**0.5)).clamp(0, 1)
        torch.testing.assert_close(r.double(), r64, atol=0, rtol=1.5e-7)


@needs_native
def test_counts_cu_and_finite_flag_native():
    """The int32 counts and token offsets as visual_prune_torch's cumsum/index, and the
    norms' finiteness flag as torch.isfinite(norms).all()."""
    g = torch.Generator().manual_seed(1)
    for trial in range(40):
        n = int(torch.randint(1, 30, (1,), generator=g))
        k = torch.randint(0, 200, (n,), generator=g)
        cuts = sorted(set(torch.randint(1, n + 1, (3,), generator=g).tolist()) | {n})
        cu = torch.tensor([0, *cuts], dtype=torch.int32)
        k32, cu_tokens = counts_cu_native(k, cu)
        csum = torch.cat([k.new_zeros(1), torch.cumsum(k, 0)])
        assert torch.equal(k32, k.to(torch.int32)), trial
        assert torch.equal(cu_tokens, csum[cu.long()].to(torch.int32)), trial
    norms = torch.rand(50, 7)
    assert norms_finite_native(norms)
    for bad in (float("inf"), float("nan")):
        m = norms.clone()
        m[3, 4] = bad
        assert not norms_finite_native(m)
