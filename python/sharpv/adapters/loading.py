"""Loading a supported checkpoint with any tested transformers release."""

from __future__ import annotations

import inspect
import os
from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:  # pragma: no cover
    from .base import Adapter

__all__ = ["dtype_kwargs", "load_model"]


def dtype_kwargs(dtype: torch.dtype | str | None) -> dict[str, Any]:
    """``from_pretrained`` keyword for ``dtype`` under the installed transformers.

    Releases since 4.56 take ``dtype`` (and warn on ``torch_dtype``); older ones take only
    ``torch_dtype`` and pass an unknown ``dtype`` on to the config, loading float32 weights.
    The configuration class says which: it stores the dtype under the same name.

    Examples:
        >>> dtype_kwargs(torch.bfloat16)
        {'dtype': torch.bfloat16}
        >>> dtype_kwargs(None)
        {}
    """
    if dtype is None:
        return {}
    from transformers import PretrainedConfig

    params = inspect.signature(PretrainedConfig.__init__).parameters
    takes_dtype = "dtype" in params or hasattr(PretrainedConfig(), "dtype")
    return {"dtype" if takes_dtype else "torch_dtype": dtype}


def load_model(
    name: str,
    *,
    dtype: torch.dtype | str | None = None,
    device: str | torch.device = "cpu",
    **kwargs: Any,
) -> tuple[torch.nn.Module, Adapter]:
    """A supported video LLM from a local folder or a hub name, in eval mode, and its adapter.

    The model class is the checkpoint's own (``config.architectures[0]``) when transformers
    has it, else ``AutoModelForImageTextToText``. The adapter is looked up from the config
    before any weight is read, so an unsupported model fails fast.

    Args:
        name: ``from_pretrained`` name or folder.
        dtype: weights' dtype (``None``: the checkpoint's default).
        device: where the model goes.
        **kwargs: more ``from_pretrained`` arguments (``attn_implementation``, ...).

    Raises:
        FileNotFoundError: ``name`` is a folder without ``config.json`` (transformers 4.x
            would otherwise guess a model type from the folder's name).
        sharpv.adapters.UnsupportedModelError: the checkpoint's ``model_type`` has no adapter.

    Examples:
        >>> from sharpv.tiny_models import tiny_qwen2_vl
        >>> import tempfile
        >>> folder = tempfile.mkdtemp()
        >>> tiny_qwen2_vl().save_pretrained(folder)
        >>> model, adapter = load_model(folder, dtype=torch.bfloat16)
        >>> model.dtype, type(adapter).__name__
        (torch.bfloat16, 'QwenVLAdapter')
    """
    import transformers

    from . import get_adapter

    if os.path.isdir(name) and not os.path.isfile(os.path.join(name, "config.json")):
        raise FileNotFoundError(f"model folder {name!r} has no config.json")
    config = transformers.AutoConfig.from_pretrained(name)
    adapter = get_adapter(config)
    archs = getattr(config, "architectures", None) or []
    cls = getattr(transformers, archs[0], None) if archs else None
    cls = cls or transformers.AutoModelForImageTextToText
    model = cls.from_pretrained(name, **dtype_kwargs(dtype), **kwargs)
    return model.to(device).eval(), adapter
