"""SharpV as a vLLM general plugin: two model architectures, chosen with ``--hf-overrides``.

The distribution declares ``register`` under the ``vllm.general_plugins`` entry-point group,
so every vLLM process calls it at start-up. It registers, by name (the model modules are
imported only when a checkpoint selects them):

* ``SharpVLlavaOnevisionForConditionalGeneration`` (LLaVA-OneVision, LLaVA-Video);
* ``SharpVQwen2_5_VLForConditionalGeneration`` (Qwen2.5-VL),

a start-up check of the ``sharpv`` block for both (which also turns vLLM's multimodal
pruning switch on for Qwen2.5-VL, so the model runner recomputes its M-RoPE positions), and,
on vLLM 0.32's v1 CPU runner only, the patch that makes that runner honour the switch
(:mod:`sharpv.engines.vllm.runner_patch`). A request may override the server's block with
``mm_processor_kwargs={"sharpv": {...}}`` (:mod:`sharpv.engines.vllm.processing`).

Examples:
    A checkpoint selects an architecture and passes the settings through vLLM's own flag::

        vllm serve Qwen/Qwen2.5-VL-7B-Instruct --hf-overrides \\
          '{"architectures": ["SharpVQwen2_5_VLForConditionalGeneration"],
            "sharpv": {"budget": 0.3}}'

    or in Python::

        LLM(model=path, hf_overrides={
            "architectures": ["SharpVLlavaOnevisionForConditionalGeneration"],
            "sharpv": {"budget": 0.3}})
"""

from __future__ import annotations

__all__ = ["ARCHITECTURES", "MROPE_ARCHITECTURES", "register"]

#: architecture name -> ``module:class`` of its implementation
ARCHITECTURES: dict[str, str] = {
    "SharpVLlavaOnevisionForConditionalGeneration": (
        "sharpv.engines.vllm.llava_onevision:SharpVLlavaOnevisionForConditionalGeneration"
    ),
    "SharpVQwen2_5_VLForConditionalGeneration": (
        "sharpv.engines.vllm.qwen2_5_vl:SharpVQwen2_5_VLForConditionalGeneration"
    ),
}

#: the architectures with M-RoPE, whose positions vLLM must recompute after pruning
MROPE_ARCHITECTURES: frozenset[str] = frozenset({"SharpVQwen2_5_VLForConditionalGeneration"})


def _config_check(mrope: bool) -> type:
    """A ``VerifyAndUpdateConfig`` run when vLLM builds the model config (in the process that
    calls ``LLM(...)`` / ``vllm serve``): it validates the ``sharpv`` block and, for an M-RoPE
    architecture, turns on vLLM's multimodal pruning switch."""
    from vllm.model_executor.models.config import VerifyAndUpdateConfig

    from .runner_patch import enable_multimodal_pruning
    from .settings import settings_from_hf_config

    class SharpVConfigCheck(VerifyAndUpdateConfig):
        @staticmethod
        def verify_and_update_model_config(model_config) -> None:
            settings = settings_from_hf_config(model_config.hf_config)
            if mrope:
                enable_multimodal_pruning(model_config, settings.engine.options.get("budget", 1.0))

    return SharpVConfigCheck


def register() -> None:
    """Entry point of ``vllm.general_plugins`` (idempotent)."""
    from vllm import ModelRegistry
    from vllm.model_executor.models.config import MODELS_CONFIG_MAP

    from .runner_patch import patch_model_runners

    supported = set(ModelRegistry.get_supported_archs())
    for arch, target in ARCHITECTURES.items():
        if arch not in supported:
            ModelRegistry.register_model(arch, target)
        if arch not in MODELS_CONFIG_MAP:
            MODELS_CONFIG_MAP[arch] = _config_check(arch in MROPE_ARCHITECTURES)
    patch_model_runners()
