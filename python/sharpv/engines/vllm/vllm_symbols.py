"""Every vLLM name the plugin relies on, in one list, and a check that each exists.

The plugin subclasses vLLM's model, processor and processing-info classes and overrides
private hooks; a vLLM release that renames one breaks it silently (the override is never
called) or loudly (an import fails). :data:`REQUIRED` lists each name as
``(module, dotted attribute)``; :func:`missing_symbols` resolves them all and returns the
ones that are not there. The engine lane runs it on the tested vLLM and on the newest
release (``tests_engines/vllm/test_symbols.py``, ``scripts/check_vllm_newest.py``).
:data:`ONE_OF` holds alternatives of which at least one must exist (the model runner that
recomputes M-RoPE positions differs across versions). Keep this file in step with the
plugin's imports and overrides: a name used there and missing here is a bug.

Examples:
    >>> ("vllm.multimodal.inputs", "MultiModalFieldConfig.batched") in REQUIRED
    True
"""

from __future__ import annotations

import importlib

__all__ = ["ONE_OF", "REQUIRED", "missing_symbols", "resolve"]

_QWEN = "vllm.model_executor.models.qwen2_5_vl"
_LLAVA = "vllm.model_executor.models.llava_onevision"
_BASE = "vllm.multimodal.processing"

#: (module, attribute path) of every name the plugin imports, subclasses, calls or overrides
REQUIRED: tuple[tuple[str, str], ...] = (
    # registration (sharpv.engines.vllm.register)
    ("vllm", "ModelRegistry.register_model"),
    ("vllm", "ModelRegistry.get_supported_archs"),
    ("vllm.model_executor.models.config", "MODELS_CONFIG_MAP"),
    ("vllm.model_executor.models.config", "VerifyAndUpdateConfig.verify_and_update_model_config"),
    ("vllm.multimodal", "MULTIMODAL_REGISTRY.register_processor"),
    # the pruning switch (runner_patch.enable_multimodal_pruning)
    ("vllm.config.multimodal", "MultiModalConfig.is_multimodal_pruning_enabled"),
    ("vllm.config.multimodal", "MultiModalConfig.get_video_pruning_spec"),
    ("vllm.model_executor.models.interfaces", "supports_multimodal_pruning"),
    # processing (processing.SharpVProcessorMixin and the prompt updates)
    (_BASE, "PromptReplacement"),
    (_BASE, "PromptUpdate"),
    (_BASE, "BaseMultiModalProcessor._apply_hf_processor_main"),
    (_BASE, "BaseMultiModalProcessor._get_mm_fields_config"),
    (_BASE, "BaseMultiModalProcessor._get_prompt_updates"),
    ("vllm.multimodal.inputs", "MultiModalFieldConfig.batched"),
    ("vllm.multimodal.parse", "VideoProcessorItems.get_frame_size"),
    ("vllm.multimodal.parse", "VideoProcessorItems.get_num_frames"),
    ("vllm.multimodal.parse", "MultiModalDataItems.get_count"),
    ("vllm.multimodal.parse", "MultiModalDataItems.get_items"),
    # Qwen2.5-VL
    (_QWEN, "Qwen2_5_VLForConditionalGeneration.embed_multimodal"),
    (_QWEN, "Qwen2_5_VLForConditionalGeneration.get_mrope_input_positions"),
    (_QWEN, "Qwen2_5_VLForConditionalGeneration.recompute_mrope_positions"),
    (_QWEN, "Qwen2_5_VLForConditionalGeneration._postprocess_video_embeds_evs"),
    (_QWEN, "Qwen2_5_VLForConditionalGeneration._process_video_input"),
    (_QWEN, "Qwen2_5_VLMultiModalProcessor._get_prompt_updates"),
    (_QWEN, "Qwen2_5_VLProcessingInfo"),
    (_QWEN, "Qwen2_5_VLDummyInputsBuilder"),
    # LLaVA-OneVision
    (_LLAVA, "LlavaOnevisionForConditionalGeneration.embed_multimodal"),
    (_LLAVA, "LlavaOnevisionForConditionalGeneration._process_video_pixels"),
    (_LLAVA, "LlavaOnevisionForConditionalGeneration._video_pixels_to_features"),
    (_LLAVA, "LlavaOnevisionMultiModalProcessor._apply_hf_processor_main"),
    (_LLAVA, "LlavaOnevisionMultiModalProcessor._get_prompt_updates"),
    (_LLAVA, "LlavaOnevisionProcessingInfo._get_num_frame_tokens"),
    (_LLAVA, "LlavaOnevisionDummyInputsBuilder"),
)

#: groups of which at least one name must exist: the runner step that strips the position
#: channels and recomputes M-RoPE (v2's pruner; or 0.32's v1 CPU runner, which the plugin
#: patches, its GPU sibling reading the switch itself)
ONE_OF: tuple[tuple[tuple[str, str], ...], ...] = (
    (
        ("vllm.v1.worker.gpu.model_states.mm_pruning", "maybe_create_mm_pruner"),
        ("vllm.v1.worker.cpu_model_runner", "CPUModelRunner.load_model"),
    ),
)


def resolve(module: str, attribute: str) -> object:
    """Import ``module`` and walk ``attribute``; raises ``ImportError``/``AttributeError``."""
    obj: object = importlib.import_module(module)
    for part in attribute.split("."):
        obj = getattr(obj, part)
    return obj


def _exists(module: str, attribute: str) -> str | None:
    try:
        resolve(module, attribute)
    except (ImportError, AttributeError) as exc:
        return f"{module}:{attribute} ({type(exc).__name__}: {exc})"
    return None


def missing_symbols() -> list[str]:
    """``module:attribute (why)`` of each required name not found, and of each ``ONE_OF``
    group none of whose names is found; empty when the plugin has all it needs."""
    missing = [m for mod, attr in REQUIRED if (m := _exists(mod, attr)) is not None]
    for group in ONE_OF:
        reasons = [_exists(mod, attr) for mod, attr in group]
        if all(r is not None for r in reasons):
            missing.append("none of: " + "; ".join(r for r in reasons if r is not None))
    return missing
