"""What a CPU machine can check of the SharpV plugin on a vLLM without a CPU build (0.34+).

Run by ``scripts/lane-vllm.sh`` in the newest-vLLM venv (``SHARPV_VLLM034_VENV``): no engine
starts (vLLM's CUDA build has no CPU platform), but everything before the model runner does:

1. the plugin is found under ``vllm.general_plugins`` and loads with vLLM's own loader;
2. both SharpV architectures are in vLLM's model registry;
3. every vLLM name the plugin relies on exists (:mod:`sharpv.engines.vllm.vllm_symbols`);
4. vLLM's ``ModelConfig`` accepts both architectures on tiny checkpoints, and for
   Qwen2.5-VL the multimodal pruning switch is on (v2's ``MultiModalPruner`` is built from
   it); a bad ``sharpv`` block is refused;
5. the registered processors give the budget formula's counts, with the server's settings
   and with per-request ``mm_processor_kwargs={"sharpv": ...}``, and a bad request block
   fails that request with the start-up check's message.

Prints one line per check and exits non-zero on the first failure.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

QWEN = "SharpVQwen2_5_VLForConditionalGeneration"
LLAVA = "SharpVLlavaOnevisionForConditionalGeneration"
BUDGET = 0.3


def _ok(msg: str) -> None:
    print(f"check-vllm-newest: ok   {msg}", flush=True)


def _model_config(path: Path, arch: str, block: dict | None):
    from vllm.config import ModelConfig

    overrides: dict = {"architectures": [arch]}
    if block is not None:
        overrides["sharpv"] = block
    return ModelConfig(
        model=str(path), dtype="float32", max_model_len=2048, hf_overrides=overrides,
        limit_mm_per_prompt={"video": 2, "image": 0}, mm_processor_cache_gb=0,
    )  # fmt: skip


def _video_count(processor, prompt: str, videos: list, kwargs: dict | None, token: int) -> int:
    items = processor.info.parse_mm_data({"video": videos if len(videos) > 1 else videos[0]})
    out = processor(prompt, items, hf_processor_mm_kwargs=kwargs or {})
    return list(out["prompt_token_ids"]).count(token)


def main() -> int:
    from importlib.metadata import entry_points

    import vllm
    from vllm import ModelRegistry
    from vllm.multimodal import MULTIMODAL_REGISTRY
    from vllm.plugins import load_general_plugins

    from sharpv.engines.vllm import checkpoints
    from sharpv.engines.vllm.vllm_symbols import missing_symbols
    from sharpv_kernels import budget_token_count

    print(f"check-vllm-newest: vllm {vllm.__version__}", flush=True)
    names = [e.value for e in entry_points(group="vllm.general_plugins")]
    assert "sharpv.engines.vllm:register" in names, names
    load_general_plugins()
    _ok("plugin found under vllm.general_plugins and loaded")

    archs = set(ModelRegistry.get_supported_archs())
    assert {QWEN, LLAVA} <= archs, sorted(a for a in archs if "SharpV" in a)
    _ok("both architectures registered")

    missing = missing_symbols()
    assert not missing, "missing vLLM symbols:\n  " + "\n  ".join(missing)
    _ok("every vLLM symbol the plugin relies on exists")

    with tempfile.TemporaryDirectory() as tmp:
        qwen_dir = checkpoints.write_qwen2_5_vl(Path(tmp) / "qwen")
        llava_dir = checkpoints.write_llava_onevision(Path(tmp) / "llava")

        qcfg = _model_config(qwen_dir, QWEN, {"budget": BUDGET})
        assert qcfg.multimodal_config.is_multimodal_pruning_enabled()
        assert ModelRegistry.resolve_model_cls([QWEN], qcfg)[0].__name__ == QWEN
        _ok("SharpV Qwen2.5-VL accepted, multimodal pruning enabled, class resolves")
        lcfg = _model_config(llava_dir, LLAVA, {"budget": BUDGET})
        assert ModelRegistry.resolve_model_cls([LLAVA], lcfg)[0].__name__ == LLAVA
        _ok("SharpV LLaVA-OneVision accepted, class resolves")
        try:
            _model_config(qwen_dir, QWEN, {"budget": 1.5})
        except Exception as exc:  # vLLM wraps it in a pydantic ValidationError
            assert "option budget of method sharpv must be a number in (0, 1]" in str(exc), exc
        else:
            raise AssertionError("a bad sharpv block was accepted")
        _ok("a bad sharpv block is refused at start-up")

        qwen_video = "<|vision_start|><|video_pad|><|vision_end|>"
        cases = [  # (config, placeholder, frames per temporal group, f, extra tokens)
            (qcfg, qwen_video, 2, checkpoints.QWEN_TOKENS_PER_GROUP, 0),
            (lcfg, "<video>", 1, checkpoints.LLAVA_TOKENS_PER_FRAME, 1),
        ]  # fmt: skip
        for cfg, placeholder, group, f, extra in cases:
            processor = MULTIMODAL_REGISTRY.create_processor(cfg)
            is_qwen = cfg is qcfg
            for frames in ([8], [4, 12]):
                videos = [checkpoints.make_video(n, seed=n) for n in frames]
                if is_qwen:
                    videos = [(v, checkpoints.qwen_video_metadata(v.shape[0])) for v in videos]
                prompt = " ".join([placeholder] * len(frames)) + " what happens ?"
                for block in (None, {"budget": 0.5}, {"budget": 0.1, "min_keep": 2}):
                    kwargs = None if block is None else {"sharpv": block}
                    budget = BUDGET if block is None else block["budget"]
                    min_keep = 1 if block is None else block.get("min_keep", 1)
                    got = _video_count(processor, prompt, videos, kwargs, 4)
                    want = sum(
                        budget_token_count(budget, n // group, f, min_keep) + extra for n in frames
                    )
                    assert got == want, (cfg.architecture, frames, block, got, want)
            try:
                _video_count(processor, placeholder, videos[:1], {"sharpv": {"budget": 0}}, 4)
            except ValueError as exc:
                assert "option budget of method sharpv must be a number in (0, 1]" in str(exc), exc
            else:
                raise AssertionError("a bad per-request block was accepted")
            _ok(f"{cfg.architecture}: processor counts = budget formula (server and per request)")
    print("check-vllm-newest: PASS", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
