"""Tiny video LLMs with random weights, built from transformers config classes.

Used by ``sharpv demo`` and the tests: nothing is downloaded. Token ids follow one small
convention shared by every builder: ``0`` pad, ``1`` bos, ``2`` eos, ``3`` image placeholder,
``4`` video placeholder, ``5``/``6`` vision start/end (Qwen-VL only), text from ``8`` on.
"""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import Iterator
from typing import Any

import torch

__all__ = [
    "PAD_ID",
    "BOS_ID",
    "EOS_ID",
    "IMAGE_ID",
    "VIDEO_ID",
    "VISION_START_ID",
    "VISION_END_ID",
    "FIRST_TEXT_ID",
    "tiny_llava_onevision",
    "tiny_llava_next_video",
    "tiny_qwen2_5_vl",
    "tiny_qwen2_vl",
    "tiny_tokenizer",
]

PAD_ID, BOS_ID, EOS_ID, IMAGE_ID, VIDEO_ID, VISION_START_ID, VISION_END_ID = range(7)
FIRST_TEXT_ID = 8


def _text_kwargs(hidden: int, layers: int, vocab: int, heads: int, kv_heads: int) -> dict[str, Any]:
    return {
        "vocab_size": vocab,
        "hidden_size": hidden,
        "intermediate_size": 2 * hidden,
        "num_hidden_layers": layers,
        "num_attention_heads": heads,
        "num_key_value_heads": kv_heads,
        "max_position_embeddings": 4096,
        "pad_token_id": PAD_ID,
        "bos_token_id": BOS_ID,
        "eos_token_id": EOS_ID,
    }


@contextlib.contextmanager
def _seeded(seed: int) -> Iterator[None]:
    """Run the block with the CPU RNG seeded with ``seed``; the caller's RNG state is restored
    afterwards (transformers initialises weights from the global generator)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


def _rope_kwargs(config_cls: type, theta: float, mrope_section: list[int]) -> dict[str, Any]:
    """M-RoPE settings under the name ``config_cls`` takes: ``rope_parameters`` (transformers
    5) or ``rope_scaling`` plus ``rope_theta`` (4.x)."""
    params = {"rope_type": "default", "mrope_section": list(mrope_section)}
    if "rope_parameters" in inspect.signature(config_cls.__init__).parameters:
        return {"rope_parameters": {**params, "rope_theta": theta}}
    return {"rope_scaling": params, "rope_theta": theta}


def _finish(model: torch.nn.Module, dtype: torch.dtype) -> torch.nn.Module:
    model = model.to(dtype).eval()
    gc = model.generation_config
    gc.pad_token_id, gc.bos_token_id, gc.eos_token_id = PAD_ID, BOS_ID, EOS_ID
    return model


def tiny_llava_onevision(
    *,
    hidden: int = 64,
    layers: int = 4,
    vocab: int = 128,
    image_size: int = 56,
    patch_size: int = 14,
    vision_hidden: int = 32,
    vision_layers: int = 1,
    attn_implementation: str = "eager",
    seed: int = 0,
    dtype: torch.dtype = torch.float32,
) -> torch.nn.Module:
    """A ``LlavaOnevisionForConditionalGeneration`` (Qwen2 LM, SigLIP tower), random weights.

    A frame of ``image_size`` pixels gives ``ceil(p / 2) ** 2`` video tokens with
    ``p = image_size // patch_size`` (4 for the defaults), plus one newline per video.
    Weights come from ``seed``; the caller's random state is left as it was.

    Examples:
        >>> model = tiny_llava_onevision(layers=2)
        >>> model.config.model_type, model.config.text_config.num_hidden_layers
        ('llava_onevision', 2)
    """
    from transformers import (
        LlavaOnevisionConfig,
        LlavaOnevisionForConditionalGeneration,
        Qwen2Config,
        SiglipVisionConfig,
    )

    vision = SiglipVisionConfig(
        hidden_size=vision_hidden,
        intermediate_size=2 * vision_hidden,
        num_hidden_layers=vision_layers,
        num_attention_heads=2,
        image_size=image_size,
        patch_size=patch_size,
        vision_use_head=False,
    )
    text = Qwen2Config(**_text_kwargs(hidden, layers, vocab, 4, 2))
    config = LlavaOnevisionConfig(
        vision_config=vision,
        text_config=text,
        image_token_index=IMAGE_ID,
        video_token_index=VIDEO_ID,
        vision_feature_select_strategy="full",
        vision_feature_layer=-1,
        image_grid_pinpoints=[[image_size, image_size], [image_size, 2 * image_size]],
    )
    config._attn_implementation = attn_implementation
    with _seeded(seed):
        model = LlavaOnevisionForConditionalGeneration(config)
    return _finish(model, dtype)


def tiny_llava_next_video(
    *,
    hidden: int = 64,
    layers: int = 4,
    vocab: int = 128,
    image_size: int = 56,
    patch_size: int = 14,
    vision_hidden: int = 32,
    vision_layers: int = 1,
    attn_implementation: str = "eager",
    seed: int = 0,
    dtype: torch.dtype = torch.float32,
) -> torch.nn.Module:
    """A ``LlavaNextVideoForConditionalGeneration`` (Llama LM, CLIP tower), random weights.

    A frame gives ``(p // 2) ** 2`` video tokens (average pooling, stride 2), no newline.
    Weights come from ``seed``; the caller's random state is left as it was.

    Examples:
        >>> tiny_llava_next_video().config.model_type
        'llava_next_video'
    """
    from transformers import (
        CLIPVisionConfig,
        LlamaConfig,
        LlavaNextVideoConfig,
        LlavaNextVideoForConditionalGeneration,
    )

    vision = CLIPVisionConfig(
        hidden_size=vision_hidden,
        intermediate_size=2 * vision_hidden,
        num_hidden_layers=vision_layers,
        num_attention_heads=2,
        image_size=image_size,
        patch_size=patch_size,
        projection_dim=vision_hidden,
    )
    text = LlamaConfig(**_text_kwargs(hidden, layers, vocab, 4, 2))
    config = LlavaNextVideoConfig(
        vision_config=vision,
        text_config=text,
        image_token_index=IMAGE_ID,
        video_token_index=VIDEO_ID,
        vision_feature_select_strategy="default",
        vision_feature_layer=-1,
        spatial_pool_stride=2,
        spatial_pool_mode="average",
        image_grid_pinpoints=[[image_size, image_size], [image_size, 2 * image_size]],
        image_seq_length=(image_size // patch_size) ** 2,
        video_seq_length=(image_size // patch_size // 2) ** 2,
    )
    config._attn_implementation = attn_implementation
    with _seeded(seed):
        model = LlavaNextVideoForConditionalGeneration(config)
    return _finish(model, dtype)


def _qwen_vl(
    family: str,
    *,
    hidden: int,
    layers: int,
    vocab: int,
    vision_hidden: int,
    vision_layers: int,
    attn_implementation: str,
    seed: int,
    dtype: torch.dtype,
    rope_theta: float,
    initializer_range: float,
) -> torch.nn.Module:
    import transformers

    head_dim = hidden // 4
    # mrope sections (t, h, w) sum to head_dim // 2
    half = head_dim // 2
    section = [half - 2 * (half // 4), half // 4, half // 4]
    text = _text_kwargs(hidden, layers, vocab, 4, 2)
    text["initializer_range"] = initializer_range
    vision: dict[str, Any] = {
        "depth": vision_layers,
        "hidden_size": vision_hidden,
        "num_heads": 2,
        "in_chans": 3,
        "patch_size": 14,
        "spatial_merge_size": 2,
        "temporal_patch_size": 2,
        "out_hidden_size": hidden,
    }
    if family == "qwen2_5_vl":
        vision.update(
            intermediate_size=2 * vision_hidden,
            window_size=56,
            fullatt_block_indexes=[vision_layers - 1],
            tokens_per_second=2,
        )
        cfg_cls = transformers.Qwen2_5_VLConfig
        text_cls = transformers.Qwen2_5_VLTextConfig
        model_cls = transformers.Qwen2_5_VLForConditionalGeneration
    else:
        vision.update(embed_dim=vision_hidden, mlp_ratio=2, hidden_size=hidden)
        vision.pop("out_hidden_size")
        cfg_cls = transformers.Qwen2VLConfig
        text_cls = transformers.Qwen2VLTextConfig
        model_cls = transformers.Qwen2VLForConditionalGeneration
    text.update(_rope_kwargs(text_cls, rope_theta, section))
    config = cfg_cls(
        text_config=text,
        vision_config=vision,
        image_token_id=IMAGE_ID,
        video_token_id=VIDEO_ID,
        vision_start_token_id=VISION_START_ID,
        vision_end_token_id=VISION_END_ID,
        initializer_range=initializer_range,
    )
    config._attn_implementation = attn_implementation
    with _seeded(seed):
        model = model_cls(config)
    return _finish(model, dtype)


def tiny_qwen2_5_vl(
    *,
    hidden: int = 64,
    layers: int = 4,
    vocab: int = 128,
    vision_hidden: int = 32,
    vision_layers: int = 2,
    attn_implementation: str = "eager",
    seed: int = 0,
    dtype: torch.dtype = torch.float32,
    rope_theta: float = 10000.0,
    initializer_range: float = 0.02,
) -> torch.nn.Module:
    """A ``Qwen2_5_VLForConditionalGeneration`` with random weights (patch 14, merge 2).

    Weights come from ``seed``; the caller's random state is left as it was. With the
    defaults (weights of std 0.02, RoPE base 10000) attention is nearly uniform and the
    answers hardly depend on positions; a small ``rope_theta`` (e.g. 10) and a larger
    ``initializer_range`` (e.g. 0.2) make them depend on every M-RoPE row.

    Examples:
        >>> tiny_qwen2_5_vl(layers=1).config.model_type
        'qwen2_5_vl'
    """
    return _qwen_vl(
        "qwen2_5_vl",
        hidden=hidden,
        layers=layers,
        vocab=vocab,
        vision_hidden=vision_hidden,
        vision_layers=vision_layers,
        attn_implementation=attn_implementation,
        seed=seed,
        dtype=dtype,
        rope_theta=rope_theta,
        initializer_range=initializer_range,
    )


def tiny_qwen2_vl(
    *,
    hidden: int = 64,
    layers: int = 4,
    vocab: int = 128,
    vision_hidden: int = 32,
    vision_layers: int = 2,
    attn_implementation: str = "eager",
    seed: int = 0,
    dtype: torch.dtype = torch.float32,
    rope_theta: float = 10000.0,
    initializer_range: float = 0.02,
) -> torch.nn.Module:
    """A ``Qwen2VLForConditionalGeneration`` with random weights (patch 14, merge 2).

    Weights come from ``seed``; the caller's random state is left as it was; see
    :func:`tiny_qwen2_5_vl` for ``rope_theta`` and ``initializer_range``.

    Examples:
        >>> tiny_qwen2_vl(layers=1).config.model_type
        'qwen2_vl'
    """
    return _qwen_vl(
        "qwen2_vl",
        hidden=hidden,
        layers=layers,
        vocab=vocab,
        vision_hidden=vision_hidden,
        vision_layers=vision_layers,
        attn_implementation=attn_implementation,
        seed=seed,
        dtype=dtype,
        rope_theta=rope_theta,
        initializer_range=initializer_range,
    )


#: Words of the tiny tokenizer's vocabulary (ids ``FIRST_TEXT_ID`` on).
_WORDS = (
    "the a an is are was of in on at to and or what who where when why how which this that "
    "video image frame scene camera person people man woman dog cat car house sky grass "
    "square disc yellow black red blue green white moving static moves cut happens describe "
    "answer question user assistant system you i it there here first then after before end "
    "start left right up down one two three many some no yes not do does did see shown "
    "color shape object background foreground fast slow big small room outside inside ? . ,"
).split()


def tiny_tokenizer(vocab: int = 128):
    """A ``PreTrainedTokenizerFast`` (word-level, whitespace split) built in code.

    Specials: ``<pad>`` 0, ``<s>`` 1, ``</s>`` 2, ``<image>`` 3, ``<video>`` 4,
    ``<|vision_start|>`` 5, ``<|vision_end|>`` 6, ``<unk>`` 7; then plain words up to
    ``vocab`` entries. ``tokenizer.save_pretrained(folder)`` makes the folder loadable with
    ``AutoTokenizer``.

    Examples:
        >>> tiny_tokenizer()("what is the video ?").input_ids
        [21, 11, 8, 30, 104]
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    specials = [
        "<pad>",
        "<s>",
        "</s>",
        "<image>",
        "<video>",
        "<|vision_start|>",
        "<|vision_end|>",
        "<unk>",
    ]
    words = list(dict.fromkeys(_WORDS))[: vocab - len(specials)]
    table = {tok: i for i, tok in enumerate(specials + words)}
    tk = Tokenizer(models.WordLevel(vocab=table, unk_token="<unk>"))
    tk.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Punctuation()]
    )
    tk.decoder = decoders.WordPiece(prefix="##", cleanup=False)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=tk,
        pad_token="<pad>",
        bos_token="<s>",
        eos_token="</s>",
        unk_token="<unk>",
        additional_special_tokens=specials[3:7],
    )
    tokenizer.padding_side = "left"
    return tokenizer
