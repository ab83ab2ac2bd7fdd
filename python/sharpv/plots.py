"""Figures of SharpV statistics (matplotlib, Agg backend; nothing is shown on screen)."""

from __future__ import annotations

import os
from collections.abc import Sequence

import torch

__all__ = ["plot_frame_retention", "plot_layer_similarity"]


def _plt():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def plot_frame_retention(
    frame_ratios: torch.Tensor | Sequence[float] | None,
    frame_counts: torch.Tensor | Sequence[int],
    tokens_per_frame: int | torch.Tensor | Sequence[int],
    path: str | os.PathLike,
    *,
    title: str = "Visual SharpV: tokens kept per frame",
    marks: dict[int, str] | None = None,
) -> str:
    """Per-frame retention over the frames (like the paper's Fig. 1).

    Bars: fraction of each frame's tokens kept (``counts / f``, whatever the method); line:
    SharpV's information-aware keep ratio ``r_t`` (drawn when given).

    Args:
        frame_ratios: ``(n,)`` ``r_t`` per frame, or ``None`` (a method other than SharpV).
        frame_counts: ``(n,)`` tokens kept per frame.
        tokens_per_frame: ``f`` (an int, or ``(n,)`` per frame).
        path: PNG file to write.
        marks: optional ``{frame index: label}`` drawn as vertical lines (e.g. a scene cut).

    Returns:
        ``path`` as a string.

    Examples:
        >>> plot_frame_retention([0.5, 0.2], [98, 40], 196, "retention.png")  # doctest: +SKIP
        'retention.png'
    """
    plt = _plt()
    c = torch.as_tensor(frame_counts, dtype=torch.float32)
    f = torch.as_tensor(tokens_per_frame, dtype=torch.float32).expand_as(c)
    kept = (c / f.clamp_min(1)).tolist()
    x = list(range(len(kept)))
    fig, ax = plt.subplots(figsize=(9, 3.6), dpi=110)
    ax.bar(x, kept, color="#4C72B0", alpha=0.75, label="fraction of tokens kept")
    if frame_ratios is not None:
        r = torch.as_tensor(frame_ratios, dtype=torch.float32).tolist()
        ax.plot(x, r, color="#DD8452", marker="o", ms=3, lw=1.5, label="keep ratio $r_t$")
    for t, label in (marks or {}).items():
        ax.axvline(t - 0.5, color="gray", ls="--", lw=1)
        ax.text(t - 0.4, 1.02, label, fontsize=8, color="gray", va="bottom")
    vr = float(c.sum() / f.sum()) if f.sum() > 0 else 1.0
    ax.set_xlabel("frame")
    ax.set_ylabel("kept / tokens per frame")
    ax.set_ylim(0, 1.12)
    ax.set_xlim(-0.6, max(len(kept) - 0.4, 0.6))
    ax.set_title(f"{title}  (VR = {vr:.1%})")
    ax.legend(loc="upper left", fontsize=8, framealpha=0.9)
    fig.tight_layout()
    fig.savefig(os.fspath(path))
    plt.close(fig)
    return os.fspath(path)


def plot_layer_similarity(
    similarities: torch.Tensor | Sequence[float],
    threshold: float,
    path: str | os.PathLike,
    *,
    dropped: torch.Tensor | Sequence[bool] | None = None,
    title: str = "Memory SharpV: visual similarity per layer",
) -> str:
    """Per-layer visual similarity with the degradation threshold (like the paper's Fig. 3).

    Args:
        similarities: ``(layers,)`` ``sim_l``.
        threshold: ``M``; layers below it lose their visual KV entries.
        path: PNG file to write.
        dropped: ``(layers,)`` bool, shaded when given.

    Returns:
        ``path`` as a string.

    Examples:
        >>> plot_layer_similarity([1.0, 0.4, 0.1], 0.2, "similarity.png")  # doctest: +SKIP
        'similarity.png'
    """
    plt = _plt()
    s = torch.as_tensor(similarities, dtype=torch.float32).tolist()
    x = list(range(len(s)))
    fig, ax = plt.subplots(figsize=(7, 3.6), dpi=110)
    if dropped is not None:
        for layer, d in enumerate(torch.as_tensor(dropped, dtype=torch.bool).tolist()):
            if d:
                ax.axvspan(layer - 0.5, layer + 0.5, color="#C44E52", alpha=0.15, lw=0)
    ax.plot(x, s, marker="o", color="#4C72B0", label="mean cos(h_l, V)")
    ax.axhline(threshold, color="#C44E52", ls="--", label=f"threshold M = {threshold:g}")
    ax.set_xlabel("decoder layer")
    ax.set_ylabel("visual similarity")
    lo = min([threshold, *s]) if s else threshold
    ax.set_ylim(min(lo - 0.05, 0.0), 1.05)
    ax.set_title(title + ("  (shaded: KV dropped)" if dropped is not None else ""))
    ax.legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    fig.savefig(os.fspath(path))
    plt.close(fig)
    return os.fspath(path)
