"""Adapter registry, keyed by ``config.model_type`` (in the spirit of Liger-Kernel's).

``get_adapter(model)`` returns the adapter serving ``model.config.model_type`` and raises
:class:`UnsupportedModelError` (a ``ValueError``) listing the supported types otherwise.
Third-party code may add a family with ``@register_adapter("my_model_type")``.
``load_model(name, dtype=...)`` loads a supported checkpoint with any tested transformers
release (the ``dtype`` keyword is spelled as the release takes it).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .loading import load_model

if TYPE_CHECKING:  # pragma: no cover
    from .base import Adapter

__all__ = [
    "load_model",
    "UnsupportedModelError",
    "register_adapter",
    "get_adapter",
    "supported_model_types",
]

_REGISTRY: dict[str, type[Adapter]] = {}
# modules whose import registers the built-in adapters
_BUILTIN = ("llava", "qwen_vl")


class UnsupportedModelError(ValueError):
    """The model's ``model_type`` has no SharpV adapter."""


def register_adapter(*model_types: str) -> Callable[[type[Adapter]], type[Adapter]]:
    """Class decorator registering an :class:`~sharpv.adapters.base.Adapter` subclass.

    Examples:
        >>> from sharpv.adapters.llava import LlavaOnevisionAdapter
        >>> @register_adapter("my_llava_video")
        ... class MyAdapter(LlavaOnevisionAdapter):
        ...     model_types = ("my_llava_video",)
        >>> "my_llava_video" in supported_model_types()
        True
    """

    def deco(cls: type[Adapter]) -> type[Adapter]:
        for mt in model_types:
            _REGISTRY[mt] = cls
        return cls

    return deco


def _load_builtin() -> None:
    for name in _BUILTIN:
        importlib.import_module(f".{name}", __name__)


def supported_model_types() -> list[str]:
    """Sorted ``model_type`` values with an adapter.

    Examples:
        >>> "qwen2_5_vl" in supported_model_types()
        True
    """
    _load_builtin()
    return sorted(_REGISTRY)


def _model_type(obj: Any) -> str | None:
    cfg = getattr(obj, "config", obj)
    return getattr(cfg, "model_type", None)


def get_adapter(model_or_config: Any) -> Adapter:
    """Adapter instance for a model (or its config).

    Raises:
        UnsupportedModelError: no adapter is registered for its ``model_type``.

    Examples:
        >>> from transformers import Qwen2VLConfig
        >>> type(get_adapter(Qwen2VLConfig())).__name__
        'QwenVLAdapter'
    """
    _load_builtin()
    mt = _model_type(model_or_config)
    cls = _REGISTRY.get(mt) if mt is not None else None
    if cls is None:
        raise UnsupportedModelError(
            f"SharpV does not support model type {mt!r}; supported model types: "
            + ", ".join(sorted(_REGISTRY))
        )
    return cls()
