"""One vocabulary for SharpV: modes, metrics, defaults and the count formulas.

Every other module (kernels, launchers, checks, the method registry, the command line, the
engine plugins) imports these names from here; none writes them out again. Method names are
not op arguments: they belong to the method registry (``sharpv.methods``).

Examples:
    >>> from sharpv_kernels.vocab import budget_token_count, ratio_keep_count
    >>> budget_token_count(0.3, n_frames=32, tokens_per_frame=196)
    1882
    >>> ratio_keep_count(0.1, tokens_per_frame=30)
    3
"""

from __future__ import annotations

import math
import struct

__all__ = [
    "VISUAL_MODES",
    "METRICS",
    "DEFAULT_MODE",
    "DEFAULT_W",
    "DEFAULT_THRESHOLD",
    "DEFAULT_MIN_KEEP",
    "DEFAULT_METRIC",
    "DEFAULT_MEMORY_THRESHOLD",
    "BUDGET_BISECTION_STEPS",
    "ZERO_NORM_EPS",
    "RATIO_SLACK",
    "budget_token_count",
    "ratio_keep_count",
]

#: Visual SharpV token-selection modes (SPEC, Visual SharpV item 7).
VISUAL_MODES: tuple[str, ...] = ("adaptive", "manual", "ratio", "budget")
#: Token dissimilarity metrics (SPEC, Visual SharpV item 2).
METRICS: tuple[str, ...] = ("dissim", "cosine")

DEFAULT_MODE = "adaptive"
#: weight of the spatial score in ``I = T + w S`` (SPEC, Visual item 5)
DEFAULT_W = 1.0
#: the manual mode's ``K`` (SPEC, Visual item 7)
DEFAULT_THRESHOLD = 1.6
DEFAULT_MIN_KEEP = 1
DEFAULT_METRIC = "dissim"
#: Memory SharpV's ``M`` (SPEC, Memory item 3)
DEFAULT_MEMORY_THRESHOLD = 0.2

#: Bisection steps of the budget split; every backend uses the same count.
BUDGET_BISECTION_STEPS = 64
#: A vector whose L2 norm is <= this is the zero vector for ``unit`` (SPEC, Visual item 1).
ZERO_NORM_EPS = 1e-12
#: ``ratio`` mode: a product within this of an integer counts as that integer (SPEC item 7).
RATIO_SLACK = 1e-9


def _f32(x: float) -> float:
    """Round a Python float to the nearest float32 value."""
    return struct.unpack("f", struct.pack("f", x))[0]


def budget_token_count(
    budget: float, n_frames: int, tokens_per_frame: int, min_keep: int = DEFAULT_MIN_KEEP
) -> int:
    """Tokens one video keeps in ``budget`` mode (SPEC, Visual SharpV item 7).

    ``N = max(round_half_even(float32(budget) * float32(n * f)), n * min_keep)``. It depends
    only on its arguments, never on the content, so an engine can size a prompt with it
    before the vision tower runs.

    Args:
        budget: fraction of the video's tokens kept, in ``(0, 1]``.
        n_frames: frames ``n`` of the video (after the model's own temporal pooling).
        tokens_per_frame: tokens ``f`` per frame entering the LLM.
        min_keep: fewest tokens kept in any frame.
    Returns:
        the exact token count ``N``.
    """
    # the product of two float32 values is exact in float64; rounding it to float32 is
    # therefore exactly a float32 multiplication
    prod = _f32(_f32(float(budget)) * _f32(float(n_frames * tokens_per_frame)))
    return max(round(prod), n_frames * min_keep)  # round() is half-to-even


def ratio_keep_count(
    keep_ratio: float, tokens_per_frame: int, min_keep: int = DEFAULT_MIN_KEEP
) -> int:
    """Tokens kept per frame in ``ratio`` mode (SPEC, Visual SharpV item 7).

    ``clamp(ceil(keep_ratio * f - 1e-9), min_keep, f)`` in float64: a product within
    rounding of an integer counts as that integer (``0.1 * 30`` keeps 3).
    """
    k = math.ceil(float(keep_ratio) * tokens_per_frame - RATIO_SLACK)
    return min(max(k, min_keep), tokens_per_frame)
