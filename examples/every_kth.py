"""A user's pruning method, defined outside the package and registered through the public
API (the worked example of ``docs/methods.md``; ``tests/test_methods.py`` runs it through
``apply_sharpv``, the command line and the lmms-eval model, and
``tests_engines/lmms/test_lmms_methods.py`` through lmms-eval).

``every_kth`` keeps tokens ``0, k, 2k, ...`` of every frame: ``ceil(f / k)`` per frame, a
count known before the features exist, so an engine that sizes prompts early accepts it.
"""

from __future__ import annotations

import torch

from sharpv.baselines import result_from_mask
from sharpv.methods import PRE_LLM, Method, Option, register


def every_kth(features: torch.Tensor, cu_frames, *, k: int):
    """Keep every ``k``-th token of each frame.

    Args:
        features: ``(total_frames, f, d)`` visual tokens of a varlen batch of videos.
        cu_frames: ``(B + 1,)`` frame offsets of the videos.
        k: the stride, validated by the registry (an integer >= 1).
    Returns:
        a :class:`sharpv_kernels.VisualPruneResult`.
    """
    keep = torch.zeros(features.shape[:2], dtype=torch.bool, device=features.device)
    keep[:, ::k] = True
    cu = torch.as_tensor(cu_frames, dtype=torch.int32, device=features.device)
    return result_from_mask(features, cu, keep)


METHOD = register(
    Method(
        name="every_kth",
        stage=PRE_LLM,
        options=(Option("k", int, 2, low=1, help="keep one token in k of every frame"),),
        prune=every_kth,
        token_count=lambda n_frames, f, *, k: n_frames * -(-f // k),
        description="keeps tokens 0, k, 2k, ... of every frame",
    )
)
