"""Tiny random-weight checkpoints on disk (config, safetensors, tokenizer, processors).

vLLM loads models from a folder, so the engine tests and ``python -m bench vllm`` write one
with the builders of :mod:`sharpv.tiny_models` and the processor classes of transformers
(transformers with torchvision required). Nothing is downloaded; vLLM is not imported.
Frames of ``FRAME_SIZE`` pixels give 16 tokens per frame in both families: LLaVA-OneVision
pools the ``8 x 8`` patch grid to ``4 x 4``; Qwen2.5-VL merges ``2 x 2`` of its ``8 x 8``
patches and two frames per temporal group.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from sharpv.tiny_models import tiny_llava_onevision, tiny_qwen2_5_vl, tiny_tokenizer

__all__ = [
    "FRAME_SIZE",
    "HIDDEN",
    "LLAVA_TOKENS_PER_FRAME",
    "QWEN_TOKENS_PER_GROUP",
    "QWEN_FPS",
    "make_video",
    "write_llava_onevision",
    "write_qwen2_5_vl",
    "qwen_video_metadata",
]

FRAME_SIZE = 112
#: LM width: 4 heads of 32, the smallest head size vLLM's CPU attention supports
HIDDEN = 128
LLAVA_TOKENS_PER_FRAME = 16
QWEN_TOKENS_PER_GROUP = 16
#: frames per second of the test videos: two frames per temporal group = one second
QWEN_FPS = 2.0


def make_video(n_frames: int, seed: int, size: int = FRAME_SIZE) -> np.ndarray:
    """``(n, size, size, 3)`` uint8: a smooth random background with a moving bright square,
    so frames differ by different amounts (SharpV's budget split has work to do)."""
    g = np.random.default_rng(seed)
    base = g.integers(0, 256, size=(1, size // 8, size // 8, 3)).astype(np.float32)
    base = np.kron(base, np.ones((1, 8, 8, 1), np.float32))
    video = np.repeat(base, n_frames, axis=0)
    video += g.normal(0, 6, size=video.shape).astype(np.float32)
    for t in range(n_frames):
        step = int(g.integers(0, 3)) * 16  # some frames jump, some stay still
        x = (t * step) % (size - 32)
        video[t, 20 : 20 + 32, x : x + 32] = 255.0
    return np.clip(video, 0, 255).astype(np.uint8)


def qwen_video_metadata(n_frames: int) -> dict:
    """The metadata vLLM's Qwen2.5-VL wants beside the frames (no resampling)."""
    return {
        "fps": QWEN_FPS,
        "duration": n_frames / QWEN_FPS,
        "total_num_frames": n_frames,
        "frames_indices": list(range(n_frames)),
        "video_backend": "opencv",
    }


def _set_architecture_fields(folder: Path) -> None:
    cfg_path = folder / "config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg["torch_dtype"] = "float32"
    cfg_path.write_text(json.dumps(cfg, indent=1))


def _hub_vision_names(folder: Path) -> None:
    """Rename ``vision_tower.*`` to ``vision_tower.vision_model.*``, the layout of the
    published LLaVA-OneVision checkpoints that vLLM's loader expects (transformers 5.19
    saves the tower without the ``vision_model`` level; both load it back)."""
    from safetensors.torch import load_file, save_file

    path = folder / "model.safetensors"
    tensors = load_file(path)
    prefix = "vision_tower."
    renamed = {
        (prefix + "vision_model." + k[len(prefix) :] if k.startswith(prefix) else k): v
        for k, v in tensors.items()
    }
    save_file(renamed, path, metadata={"format": "pt"})


def _qwen_named_tokenizer():
    """:func:`sharpv.tiny_models.tiny_tokenizer` with Qwen's placeholder names
    (``<|image_pad|>`` 3, ``<|video_pad|>`` 4), which the Qwen processors look for."""
    from tokenizers import Tokenizer
    from transformers import PreTrainedTokenizerFast

    base = tiny_tokenizer()
    names = {"<image>": "<|image_pad|>", "<video>": "<|video_pad|>"}
    spec = base.backend_tokenizer.to_str()
    for old, new in names.items():
        spec = spec.replace(f'"{old}"', f'"{new}"')
    specials = ["<|image_pad|>", "<|video_pad|>", "<|vision_start|>", "<|vision_end|>"]
    tok = PreTrainedTokenizerFast(
        tokenizer_object=Tokenizer.from_str(spec),
        pad_token="<pad>",
        bos_token="<s>",
        eos_token="</s>",
        unk_token="<unk>",
        additional_special_tokens=specials,
    )
    tok.padding_side = "left"
    return tok


def write_llava_onevision(folder: str | Path, seed: int = 0) -> Path:
    """A LLaVA-OneVision checkpoint (Qwen2 LM, SigLIP tower, 112-pixel frames).

    Examples:
        >>> import tempfile
        >>> path = write_llava_onevision(tempfile.mkdtemp())  # doctest: +SKIP
    """
    from transformers import (
        LlavaOnevisionImageProcessor,
        LlavaOnevisionProcessor,
        LlavaOnevisionVideoProcessor,
    )

    folder = Path(folder)
    model = tiny_llava_onevision(hidden=HIDDEN, image_size=FRAME_SIZE, seed=seed)
    model.save_pretrained(folder)
    _set_architecture_fields(folder)
    _hub_vision_names(folder)
    tok = tiny_tokenizer()
    size = {"height": FRAME_SIZE, "width": FRAME_SIZE}
    processor = LlavaOnevisionProcessor(
        image_processor=LlavaOnevisionImageProcessor(
            size=size,
            image_grid_pinpoints=model.config.image_grid_pinpoints,
        ),
        video_processor=LlavaOnevisionVideoProcessor(size=size),
        tokenizer=tok,
        num_image_tokens=(FRAME_SIZE // 14) ** 2,
        vision_feature_select_strategy="full",
    )
    processor.save_pretrained(folder)
    return folder


def write_qwen2_5_vl(folder: str | Path, seed: int = 0, frame_size: int = FRAME_SIZE) -> Path:
    """A Qwen2.5-VL checkpoint (patch 14, merge 2, ``frame_size``-pixel frames, tokenizer
    with the Qwen placeholder names mapped to the tiny ids).

    Examples:
        >>> import tempfile
        >>> path = write_qwen2_5_vl(tempfile.mkdtemp())  # doctest: +SKIP
    """
    from transformers import Qwen2_5_VLProcessor, Qwen2VLImageProcessor, Qwen2VLVideoProcessor

    folder = Path(folder)
    model = tiny_qwen2_5_vl(hidden=HIDDEN, seed=seed)
    model.save_pretrained(folder)
    _set_architecture_fields(folder)
    tok = _qwen_named_tokenizer()
    pixels = frame_size * frame_size
    size = {"shortest_edge": pixels, "longest_edge": pixels}
    common = dict(size=size, patch_size=14, temporal_patch_size=2, merge_size=2)
    common["cap_pixels_per_frame"] = False
    processor = Qwen2_5_VLProcessor(
        image_processor=Qwen2VLImageProcessor(**common),
        video_processor=Qwen2VLVideoProcessor(**common, fps=QWEN_FPS, do_sample_frames=False),
        tokenizer=tok,
    )
    processor.save_pretrained(folder)
    return folder
