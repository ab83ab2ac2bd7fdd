"""A tiny random-weight checkpoint (model, tokenizer, processor) and a local video QA task.

Everything is built in code and written to disk, so ``lmms-eval eval --model sharpv`` can
run offline on the CPU. Used by the tests of this folder and by ``scripts/lane-lmms.sh``::

    python tests_engines/lmms/lmms_tiny_task.py OUT_DIR   # OUT_DIR/llava_ov, OUT_DIR/task, ...
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

#: Frames of every test video and of ``max_frames_num`` in the tests.
N_FRAMES = 8
#: Side of the tiny towers' input, pixels (a 4 x 4 patch grid at patch size 14).
IMAGE_SIZE = 56
#: Name of the local task.
TASK = "sharpv_tiny_videoqa"


def chat_template(video: str = "<video>", image: str = "<image>") -> str:
    """One user turn: visual placeholders, then the text; an ``assistant :`` generation
    prompt. Qwen-VL wraps each placeholder in ``<|vision_start|> ... <|vision_end|>``."""
    return (
        "{% for message in messages %}{{ message['role'] }} : "
        "{% if message['content'] is string %}{{ message['content'] }}{% else %}"
        "{% for c in message['content'] %}"
        f"{{% if c['type'] == 'video' %}}{video} {{% elif c['type'] == 'image' %}}{image} "
        "{% else %}{{ c['text'] }}{% endif %}{% endfor %}{% endif %} </s> {% endfor %}"
        "{% if add_generation_prompt %}assistant : {% endif %}"
    )


CHAT_TEMPLATE = chat_template()
_QWEN_TEMPLATE = chat_template(
    "<|vision_start|> <video> <|vision_end|>", "<|vision_start|> <image> <|vision_end|>"
)

_QUESTIONS = [
    ("what moves in the video ?", "square"),
    ("what color is the disc ?", "black"),
    ("is there a cut in the video ?", "yes"),
    ("what is shown at the start ?", "house"),
]


def _tokenizer(template: str = CHAT_TEMPLATE, named_placeholders: bool = False):
    """The tiny word-level tokenizer; ``named_placeholders`` records ``<image>``/``<video>``
    as its ``image_token``/``video_token`` (Qwen-VL processors look them up there)."""
    from transformers import PreTrainedTokenizerFast

    from sharpv.tiny_models import tiny_tokenizer

    tok = tiny_tokenizer()
    if named_placeholders:
        tok = PreTrainedTokenizerFast(
            tokenizer_object=tok.backend_tokenizer,
            pad_token="<pad>",
            bos_token="<s>",
            eos_token="</s>",
            unk_token="<unk>",
            extra_special_tokens={"image_token": "<image>", "video_token": "<video>"},
        )
        tok.padding_side = "left"
    tok.chat_template = template
    return tok


def write_llava_onevision(folder: str | os.PathLike) -> Path:
    """Tiny ``LlavaOnevisionForConditionalGeneration`` with its processor, saved to ``folder``."""
    from transformers import (
        LlavaOnevisionImageProcessor,
        LlavaOnevisionProcessor,
        LlavaOnevisionVideoProcessor,
    )

    from sharpv.tiny_models import tiny_llava_onevision

    folder = Path(folder)
    model = tiny_llava_onevision(image_size=IMAGE_SIZE, attn_implementation="sdpa")
    model.save_pretrained(folder)
    size = {"height": IMAGE_SIZE, "width": IMAGE_SIZE}
    processor = LlavaOnevisionProcessor(
        image_processor=LlavaOnevisionImageProcessor(
            size=size, image_grid_pinpoints=[[IMAGE_SIZE, IMAGE_SIZE]]
        ),
        video_processor=LlavaOnevisionVideoProcessor(size=size),
        tokenizer=_tokenizer(),
        num_image_tokens=(IMAGE_SIZE // 14) ** 2,
        vision_feature_select_strategy="full",
        chat_template=CHAT_TEMPLATE,
    )
    processor.save_pretrained(folder)
    return folder


def write_qwen2_5_vl(folder: str | os.PathLike) -> Path:
    """Tiny ``Qwen2_5_VLForConditionalGeneration`` with its processor, saved to ``folder``."""
    from transformers import Qwen2_5_VLProcessor, Qwen2VLImageProcessor, Qwen2VLVideoProcessor

    from sharpv.tiny_models import tiny_qwen2_5_vl

    folder = Path(folder)
    model = tiny_qwen2_5_vl(attn_implementation="sdpa")
    model.save_pretrained(folder)
    pixels = IMAGE_SIZE * IMAGE_SIZE
    processor = Qwen2_5_VLProcessor(
        image_processor=Qwen2VLImageProcessor(min_pixels=pixels, max_pixels=pixels),
        video_processor=Qwen2VLVideoProcessor(min_pixels=pixels, max_pixels=pixels),
        tokenizer=_tokenizer(_QWEN_TEMPLATE, named_placeholders=True),
        chat_template=_QWEN_TEMPLATE,
    )
    processor.save_pretrained(folder)
    return folder


def write_task(folder: str | os.PathLike, n_docs: int = 4) -> Path:
    """``n_docs`` synthetic videos and the lmms-eval task YAML (``dataset_path: json``) that
    asks one question about each, scored by exact match."""
    from sharpv.video import synthetic_video, write_video

    folder = Path(folder)
    (folder / "videos").mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(n_docs):
        path = folder / "videos" / f"clip{i}.mp4"
        write_video(path, synthetic_video(N_FRAMES + 4 * i, size=64, seed=i))
        question, answer = _QUESTIONS[i % len(_QUESTIONS)]
        rows.append({"id": i, "video": str(path), "question": question, "answer": answer})
    data = folder / "docs.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    (folder / "utils.py").write_text(
        "def doc_to_visual(doc):\n    return [doc['video']]\n\n\n"
        "def doc_to_text(doc, lmms_eval_specific_kwargs=None):\n"
        "    return doc['question'] + ' answer with one word .'\n"
    )
    (folder / f"{TASK}.yaml").write_text(
        f"task: {TASK}\n"
        "dataset_path: json\n"
        f"dataset_kwargs:\n  data_files:\n    test: {data}\n"
        "test_split: test\n"
        "output_type: generate_until\n"
        "doc_to_visual: !function utils.doc_to_visual\n"
        "doc_to_text: !function utils.doc_to_text\n"
        "doc_to_target: answer\n"
        "generation_kwargs:\n  max_new_tokens: 4\n  temperature: 0\n  until: ['</s>']\n"
        "metric_list:\n"
        "  - metric: exact_match\n    aggregation: mean\n    higher_is_better: true\n"
        "    ignore_case: true\n    ignore_punctuation: true\n"
        "metadata:\n  version: 0.0\n"
    )
    return folder


if __name__ == "__main__":
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "lmms-tiny")
    write_llava_onevision(out / "llava_ov")
    write_task(out / "task")
    print(out)
