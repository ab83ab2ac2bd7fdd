"""What an adapter tells the integration about one family of Hugging Face video LLMs.

The integration (:mod:`sharpv.integration`) is model-agnostic: it asks the adapter for the
video features exactly as they enter the LLM, one ``(frames, f, d)`` tensor per video, for
the image features of mixed prompts, and (M-RoPE models only) for the positions of the dense
sequence. Everything else (pruning, rebuilding the padded sequence, the memory stage,
statistics) is shared.
"""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

__all__ = [
    "VideoFeatures",
    "Adapter",
    "call_with_supported",
    "pooled",
    "pooled_rows",
    "expand_placeholder",
]


@dataclass
class VideoFeatures:
    """Video features of a batch, videos in prompt order (row-major over the batch).

    Attributes:
        frames: per video, ``(T_i, f_i, d)`` frame tokens as they enter the LLM.
        extras: per video, ``(e_i, d)`` tokens placed after the frame tokens that SharpV
            always keeps (LLaVA-OneVision's newline); ``(0, d)`` when there are none.
    """

    frames: list[torch.Tensor]
    extras: list[torch.Tensor] = field(default_factory=list)

    def token_counts(self) -> list[int]:
        """Placeholder tokens each video occupies in the prompt."""
        pairs = zip(self.frames, self.extras, strict=True)
        return [fr.shape[0] * fr.shape[1] + ex.shape[0] for fr, ex in pairs]


def pooled(out: Any) -> Any:
    """The features of a ``get_*_features`` result, whatever the transformers version.

    Since transformers 5 the getters return a ``BaseModelOutputWithPooling`` whose
    ``pooler_output`` holds the projected features; 4.x returns the tensor (or tuple of
    tensors) itself.

    Examples:
        >>> pooled(torch.ones(2, 3)).shape
        torch.Size([2, 3])
    """
    if hasattr(out, "pooler_output") and out.pooler_output is not None:
        return out.pooler_output
    return out


def pooled_rows(out: Any) -> torch.Tensor:
    """``pooled(out)`` as one ``(N, d)`` tensor of feature rows, in order.

    The getters return one ``(1, N, d)`` tensor, a ``(frames, f, d)`` tensor, or a tuple of
    per-item tensors of either kind depending on the model and the transformers version (e.g.
    LLaVA-NeXT-Video's ``get_video_features`` gives a tuple of ``(T, f, d)`` tensors up to
    5.19 and one ``(1, T * f, d)`` tensor since); all of them flatten to the same rows.

    Examples:
        >>> pooled_rows((torch.ones(2, 4, 8), torch.ones(1, 4, 8))).shape
        torch.Size([12, 8])
    """
    feats = pooled(out)
    if isinstance(feats, (list, tuple)):
        feats = torch.cat([x.reshape(-1, x.shape[-1]) for x in feats], dim=0)
    return feats.reshape(-1, feats.shape[-1])


def call_with_supported(fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
    """Call ``fn`` with the keyword arguments its signature accepts (``None`` values dropped).

    A keyword that ``fn`` does not name is left out, except ``return_dict``, which also goes
    through ``**kwargs``: the optional arguments of the feature getters differ between
    transformers versions (``return_dict`` and ``mm_token_type_ids`` exist only in 5.x,
    ``second_per_grid_ts`` only for Qwen2.5-VL). Required inputs, whose names differ too
    (``pixel_values`` before 5.18, ``pixel_values_videos`` since), go positionally.

    Examples:
        >>> call_with_supported(lambda x, scale=1: x * scale, 3, scale=2, return_dict=True)
        6
    """
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):  # pragma: no cover - builtins
        params = {}
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    named = {n for n, p in params.items() if p.kind is not inspect.Parameter.VAR_KEYWORD}
    chosen = {
        k: v for k, v in kwargs.items() if v is not None and (k in named or k == "return_dict")
    }
    if not takes_any:
        chosen = {k: v for k, v in chosen.items() if k in named}
    return fn(*args, **chosen)


class Adapter:
    """Base class; subclasses register themselves with :func:`sharpv.adapters.register_adapter`.

    Attributes:
        model_types: the ``config.model_type`` values this adapter serves.
        vision_keys: ``generate`` keyword arguments the adapter consumes (pixel inputs and the
            metadata that goes with them); they are not forwarded to the wrapped ``generate``.
    """

    model_types: tuple[str, ...] = ()
    vision_keys: tuple[str, ...] = ()

    # ---- token ids -------------------------------------------------------------------
    def video_token_id(self, model: torch.nn.Module) -> int:
        """Id of the video placeholder token."""
        cfg = model.config
        tid = getattr(cfg, "video_token_id", None)
        return int(tid if tid is not None else cfg.video_token_index)

    def image_token_id(self, model: torch.nn.Module) -> int | None:
        """Id of the image placeholder token (``None`` if the model has none)."""
        cfg = model.config
        tid = getattr(cfg, "image_token_id", None)
        if tid is None:
            tid = getattr(cfg, "image_token_index", None)
        return None if tid is None else int(tid)

    # ---- features --------------------------------------------------------------------
    def has_video(self, kwargs: dict[str, Any]) -> bool:
        """Whether this ``generate`` call carries video pixels."""
        return kwargs.get("pixel_values_videos") is not None

    def video_features(
        self,
        model: torch.nn.Module,
        kwargs: dict[str, Any],
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
    ) -> VideoFeatures:
        """Video features exactly as the dense model would scatter them into the prompt.

        Args:
            model: the ``...ForConditionalGeneration`` model.
            kwargs: the ``generate`` keyword arguments (vision inputs included).
            input_ids: ``(batch, seq)`` prompt ids with video placeholders.
            attention_mask: ``(batch, seq)`` 0/1 padding mask.
        """
        raise NotImplementedError

    def image_features(self, model: torch.nn.Module, kwargs: dict[str, Any]) -> torch.Tensor | None:
        """``(n_image_tokens, d)`` image features in prompt order, or ``None`` without images."""
        return None

    # ---- positions (M-RoPE models) ---------------------------------------------------
    def dense_position_ids(
        self,
        model: torch.nn.Module,
        kwargs: dict[str, Any],
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
    ) -> torch.Tensor | None:
        """Positions of the dense prompt, ``(rows, batch, seq)``; ``None`` when the model's
        ordinary 1-D positions (recomputed from the pruned attention mask) are right."""
        return None

    def generating(
        self,
        model: torch.nn.Module,
        position_ids: torch.Tensor | None,
        next_positions: torch.Tensor | None,
    ) -> contextlib.AbstractContextManager[None]:
        """Context around the wrapped ``generate`` of one pruned prompt.

        M-RoPE adapters feed ``position_ids`` (``(rows, batch, seq')``, the dense positions
        of the kept tokens) to the prefill and continue each sample at ``next_positions``
        (``(rows, batch)``) during decoding. On exit the model is exactly as before: every
        attribute the adapter or the model's own generate set per call (Qwen-VL's
        ``rope_deltas``) has its old value back. The default does nothing.
        """
        return contextlib.nullcontext()

    # ---- command line without a processor --------------------------------------------
    def build_inputs(
        self, model: torch.nn.Module, tokenizer: Any, frames: Any, prompt: str
    ) -> dict[str, torch.Tensor]:
        """Processor-free inputs for one video and one prompt (``sharpv run`` fallback when
        the checkpoint's processor cannot be used, e.g. without torchvision).

        Args:
            frames: ``(T, H, W, 3)`` uint8 frames.
        """
        raise NotImplementedError(
            f"{type(self).__name__} needs the checkpoint's processor (install torchvision)"
        )


def expand_placeholder(ids: list[int], token_id: int, count: int) -> list[int]:
    """Replace the single ``token_id`` in ``ids`` with ``count`` copies (a processor's job).

    Raises:
        ValueError: ``token_id`` is not in ``ids`` exactly once.

    Examples:
        >>> expand_placeholder([1, 4, 9], token_id=4, count=3)
        [1, 4, 4, 4, 9]
    """
    where = [i for i, t in enumerate(ids) if t == token_id]
    if len(where) != 1:
        raise ValueError(f"expected one video placeholder in the prompt, found {len(where)}")
    i = where[0]
    return ids[:i] + [token_id] * count + ids[i + 1 :]
