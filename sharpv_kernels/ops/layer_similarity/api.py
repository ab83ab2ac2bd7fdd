"""Public Python API of ``layer_similarity`` (Memory SharpV: per-layer visual similarity).

It calls the ``torch.ops.sharpv.layer_similarity`` operator (``ops.py``), so it works under
``torch.compile(fullgraph=True)``; ``SHARPV_BACKEND=auto|triton|torch`` picks the
implementation. Its arguments are the fields of :class:`~.checks.SimilarityArgs`.
"""

from __future__ import annotations

from typing import Any

import torch

from ..._utils import signature_of
from . import ops as _ops  # noqa: F401  (registers torch.ops.sharpv.layer_similarity)
from .checks import SimilarityArgs

__all__ = ["layer_similarity"]


@signature_of(SimilarityArgs)
def layer_similarity(*args: Any, **kwargs: Any) -> None:
    """Per-sample visual similarity of one decoder layer, written into a device buffer.

    ``out[layer, b] = mean over i in [span_start[b], span_start[b] + span_len[b]) of
    cos(hidden[b, i], reference[b, i])``, accumulated in float32 (a zero row has cosine 0, an
    empty span gives 1.0), finite for every finite input (rows are scaled by their largest
    entry before the norm, so hidden states around 1e20 are fine). No host synchronisation
    on CUDA.

    Args:
        hidden: ``(B, S, d)`` float32/float16/bfloat16, the hidden state entering layer ``layer``
            (before its input norm); any strides.
        reference: ``(B, S, d)`` float32/float16/bfloat16, the embeddings entering layer 0.
        span_start, span_len: ``(B,)`` int32/int64, any strides, each sample's visual rows.
        out: ``(L, B)`` float32, any strides, written in row ``layer`` only.
        layer: ``0 <= layer < L``.

    Raises:
        TypeError/ValueError naming the bad argument (``out`` whose row aliases itself too);
        on CPU, spans outside ``[0, S)`` as well. ``out`` is then unchanged.

    Examples:
        >>> h = torch.randn(2, 10, 16)
        >>> out = torch.zeros(4, 2)
        >>> layer_similarity(h, 3.0 * h, torch.tensor([2, 0]), torch.tensor([5, 0]), out, 1)
        >>> [round(v, 4) for v in out[1].tolist()]
        [1.0, 1.0]
    """
    a = SimilarityArgs(*args, **kwargs)
    if isinstance(a.layer, bool) or not isinstance(a.layer, int):
        raise TypeError(f"layer must be an int, got {type(a.layer).__name__}")
    torch.ops.sharpv.layer_similarity(*a)
