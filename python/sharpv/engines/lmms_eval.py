"""The lmms-eval model ``sharpv``: any checkpoint SharpV supports, dense, SharpV or a baseline.

Registered through the ``lmms_eval.models`` entry point of this distribution (see
:func:`sharpv.engines.lmms.manifest`), so after ``pip install sharpv-kernels lmms-eval``::

    lmms-eval eval --model sharpv \\
        --model_args pretrained=llava-hf/llava-onevision-qwen2-7b-ov-hf,max_frames_num=32 \\
        --tasks videomme --batch_size 1 --log_samples --output_path results/

``--model_args`` are validated by :func:`sharpv.engines.lmms.options.parse_model_args`
(``method=`` and that method's options, checked by :func:`sharpv.methods.validate` before
the checkpoint is loaded; ``dense=true``). The
checkpoint's ``config.model_type`` picks the adapter (LLaVA-OneVision / LLaVA-Video,
LLaVA-NeXT-Video, Qwen2-VL, Qwen2.5-VL); videos are decoded with
:func:`sharpv.video.read_video` (PyAV), not decord. Each answer is returned with its
statistics (see :mod:`sharpv.engines.lmms.records`), which lmms-eval writes into the logged
sample under ``token_counts[0]["sharpv"]``.

This module imports lmms-eval; ``import sharpv`` never imports it.
"""

from __future__ import annotations

import copy
import json
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from lmms_eval.api.instance import GenerationResult, Instance, TokenCounts
from lmms_eval.api.model import lmms
from lmms_eval.models.model_utils.gen_metrics import log_metrics
from loguru import logger
from tqdm import tqdm

from ..adapters import load_model
from ..integration import apply_sharpv
from ..video import read_video, sample_indices
from .lmms.options import LmmsOptions, parse_model_args
from .lmms.records import TaskMeans, dense_record, sample_record, throughput_metrics

__all__ = ["SharpVLMM", "SharpVTokenCounts"]


@dataclass
class SharpVTokenCounts(TokenCounts):
    """lmms-eval's per-request token counts with SharpV's record of the sample attached.

    lmms-eval logs ``to_dict()`` of the first response of every sample, so the record lands
    in the samples file as ``token_counts[0]["sharpv"]``.
    """

    sharpv: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {**super().to_dict(), "sharpv": self.sharpv}


def _dtype(name: str, device: str) -> torch.dtype:
    if name == "auto":
        return torch.bfloat16 if device.startswith("cuda") else torch.float32
    return getattr(torch, name)


def _is_image(v: Any) -> bool:
    """A PIL image (duck-typed: lmms-eval's tasks hand PIL images)."""
    return hasattr(v, "convert") and hasattr(v, "size")


def _stop_at(text: str, until: Sequence[str]) -> str:
    """``text`` cut before the first of the stop strings."""
    for term in until:
        if term:
            text = text.split(term)[0]
    return text


class _ForceTokens:
    """Logits processor that forces the next tokens to be ``targets`` (``(B, n)`` ids).

    Used by :meth:`SharpVLMM.loglikelihood` so that the continuation is scored by the very
    ``generate`` that SharpV patched (pruned prompt, Memory SharpV's compacted cache).
    """

    def __init__(self, targets: torch.Tensor, prompt_len: int) -> None:
        self.targets = targets
        self.prompt_len = prompt_len

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        step = input_ids.shape[1] - self.prompt_len
        forced = torch.full_like(scores, float("-inf"))
        forced.scatter_(1, self.targets[:, step : step + 1].to(scores.device), 0.0)
        return forced


class SharpVLMM(lmms):
    """lmms-eval model running a Hugging Face video LLM dense, with SharpV, or a baseline.

    Args:
        pretrained: hub id or local folder.
        device: torch device (lmms-eval's ``--device``; ``None``: CUDA when available).
        batch_size: prompts per ``generate`` call (lmms-eval's ``--batch_size``).
        **model_args: the rest of ``--model_args`` (see
            :func:`sharpv.engines.lmms.options.parse_model_args`).

    Raises:
        ValueError: a bad ``--model_args`` entry (named), or a checkpoint whose
            ``model_type`` SharpV does not support (``UnsupportedModelError``).

    Examples:
        ``--model_args pretrained=PATH,mode=budget,budget=0.3`` runs SharpV's ``budget``
        mode; ``...,dense=true`` the unpruned model;
        ``...,method=dycoke_ttm,prune_ratio=0.7`` DyCoke's stage 1.
    """

    is_simple = True

    def __init__(
        self,
        pretrained: str,
        device: str | None = None,
        batch_size: int | str | None = 1,
        **model_args: Any,
    ) -> None:
        super().__init__()
        opts = parse_model_args(
            {"pretrained": pretrained, "device": device, "batch_size": batch_size, **model_args}
        )
        self.options: LmmsOptions = opts
        device_name = opts.device or ("cuda" if torch.cuda.is_available() else "cpu")
        self._device = torch.device(device_name)
        self._model, self._processor = self._load(opts, device_name)
        self._tokenizer = getattr(self._processor, "tokenizer", self._processor)
        self._tokenizer.padding_side = "left"
        if not opts.dense:
            apply_sharpv(self._model, opts.config)
        self.method = "dense" if opts.dense else opts.config.method
        self.task_means = TaskMeans()
        logger.info(f"sharpv: {opts.pretrained} on {device_name}, {self._describe()}")

    # ------------------------------------------------------------------ loading
    @staticmethod
    def _load(opts: LmmsOptions, device: str) -> tuple[torch.nn.Module, Any]:
        from transformers import AutoProcessor

        kwargs: dict[str, Any] = {}
        if opts.attn_implementation is not None:
            kwargs["attn_implementation"] = opts.attn_implementation
        model, _ = load_model(opts.pretrained, dtype=_dtype(opts.dtype, device), device=device,
                              **kwargs)  # fmt: skip
        processor = AutoProcessor.from_pretrained(opts.pretrained)
        return model, processor

    def _describe(self) -> str:
        if self.options.dense:
            return "dense (no pruning)"
        c = self.options.config
        opts = {k: v for k, v in c.to_dict().items() if v is not None}
        return f"method={c.method} " + json.dumps(opts, sort_keys=True)

    # ------------------------------------------------------------------ properties
    @property
    def model(self) -> torch.nn.Module:
        return self._model

    @property
    def tokenizer(self) -> Any:
        return self._tokenizer

    @property
    def device(self) -> torch.device:
        return self._device

    @property
    def batch_size(self) -> int:
        return self.options.batch_size

    # ------------------------------------------------------------------ inputs
    def _visuals(self, req_args: tuple) -> list[Any]:
        doc_to_visual, doc_id, task, split = req_args[2:6]
        if doc_to_visual is None:
            return []
        out = doc_to_visual(self.task_dict[task][split][doc_id])
        if out is None:
            return []
        return list(out) if isinstance(out, (list, tuple)) else [out]

    def _content(self, visuals: list[Any], text: str) -> tuple[list[dict], list, list]:
        """Chat content, videos (frames) and images of one prompt."""
        content: list[dict] = []
        videos: list[Any] = []
        images: list[Any] = []
        if self.options.frames_as_video and len(visuals) > 1 and all(map(_is_image, visuals)):
            # a video stored as frames (MVBench's frame subsets): one video, sampled uniformly
            keep = sample_indices(len(visuals), self.options.max_frames_num)
            frames = [np.asarray(visuals[i].convert("RGB")) for i in keep]
            if len({f.shape for f in frames}) != 1:
                raise ValueError("sharpv: the frames of a video must all have the same size")
            content = [{"type": "video"}, {"type": "text", "text": text}]
            return content, [np.stack(frames)], []
        for v in visuals:
            if isinstance(v, (str, os.PathLike)):
                videos.append(read_video(v, self.options.max_frames_num))
                content.append({"type": "video"})
            elif _is_image(v):
                images.append(v.convert("RGB"))
                content.append({"type": "image"})
            else:
                raise ValueError(
                    f"sharpv: unsupported visual {type(v).__name__}; expected a video path or "
                    "a PIL image"
                )
        content.append({"type": "text", "text": text})
        return content, videos, images

    def _encode(self, contexts: Sequence[str], visuals: Sequence[list[Any]]) -> dict[str, Any]:
        texts, videos, images = [], [], []
        for ctx, vis in zip(contexts, visuals, strict=True):
            content, vids, imgs = self._content(vis, ctx)
            messages = [{"role": "user", "content": content}]
            texts.append(
                self._processor.apply_chat_template(
                    messages, add_generation_prompt=True, tokenize=False
                )
            )
            videos.extend(vids)
            images.extend(imgs)
        kwargs: dict[str, Any] = {"text": texts, "return_tensors": "pt", "padding": True}
        if videos:
            kwargs["videos"] = videos
        if images:
            kwargs["images"] = images
        batch = self._processor(**kwargs)
        dtype = next(self._model.parameters()).dtype
        return {
            k: (v.to(self._device, dtype) if v.is_floating_point() else v.to(self._device))
            if isinstance(v, torch.Tensor)
            else v
            for k, v in batch.items()
        }

    def _record(self, i: int) -> dict[str, Any]:
        if self.options.dense:
            return dense_record()
        return sample_record(self._model.sharpv_stats[i], self.method)

    def _pad_id(self) -> int:
        pid = self._tokenizer.pad_token_id
        return int(pid if pid is not None else self._tokenizer.eos_token_id)

    # ------------------------------------------------------------------ lmms API
    def generate_until(self, requests: list[Instance]) -> list[GenerationResult]:
        """Answer every request; each result carries its token counts and SharpV record."""
        results: list[GenerationResult | None] = [None] * len(requests)
        groups: dict[str, list[int]] = {}
        for i, req in enumerate(requests):
            key = json.dumps(req.args[1], sort_keys=True, default=str)
            groups.setdefault(key, []).append(i)
        bar = tqdm(total=len(requests), desc="sharpv generate", disable=self.rank != 0)
        for idx in groups.values():
            for start in range(0, len(idx), self.batch_size):
                chunk = idx[start : start + self.batch_size]
                answers = self._generate_chunk([requests[i] for i in chunk])
                for i, res in zip(chunk, answers, strict=True):
                    results[i] = res
                bar.update(len(chunk))
        bar.close()
        for line in self.task_means.lines():
            logger.info(f"sharpv statistics ({self.method}) {line}")
        return results  # type: ignore[return-value]

    def _generate_chunk(self, reqs: list[Instance]) -> list[GenerationResult]:
        contexts = [r.args[0] for r in reqs]
        gen_kwargs = dict(reqs[0].args[1] or {})
        until = gen_kwargs.pop("until", None) or []
        if isinstance(until, str):
            until = [until]
        inputs = self._encode(contexts, [self._visuals(r.args) for r in reqs])
        temperature = float(gen_kwargs.get("temperature", 0) or 0)
        gen: dict[str, Any] = {
            "max_new_tokens": int(gen_kwargs.get("max_new_tokens", self.options.max_new_tokens)),
            "num_beams": int(gen_kwargs.get("num_beams", 1) or 1),
            "do_sample": temperature > 0,
            "pad_token_id": self._pad_id(),
        }
        if temperature > 0:
            gen["temperature"] = temperature
            if gen_kwargs.get("top_p") is not None:
                gen["top_p"] = float(gen_kwargs["top_p"])
        t0 = time.perf_counter()
        with torch.inference_mode():
            out = self._model.generate(**inputs, **gen)
        elapsed = time.perf_counter() - t0
        prompt_len = inputs["input_ids"].shape[1]
        new = out[:, prompt_len:]
        texts = self._tokenizer.batch_decode(new, skip_special_tokens=True)
        n_in = inputs["attention_mask"].sum(dim=1).tolist()
        n_out = (new != self._pad_id()).sum(dim=1).tolist()
        results = []
        for i, (req, text) in enumerate(zip(reqs, texts, strict=True)):
            text = _stop_at(text, until)
            record = self._record(i)
            self.task_means.add(req.task_name, record)
            log_metrics(
                total_elapsed_time=elapsed / len(reqs),
                total_gen_tokens=int(n_out[i]),
                avg_speed=n_out[i] / elapsed if elapsed > 0 else 0.0,
                additional_metrics=throughput_metrics(record, req.task_name),
            )
            self.cache_hook.add_partial("generate_until", (req.args[0], req.args[1]), text)
            counts = SharpVTokenCounts(
                input_tokens=int(n_in[i]), output_tokens=int(n_out[i]), sharpv=record
            )
            results.append(GenerationResult(text=text, token_counts=counts))
        return results

    def loglikelihood(self, requests: list[Instance]) -> list[tuple[float, bool]]:
        """Log-probability of each continuation after its (pruned) prompt, and whether greedy
        decoding would produce it.

        The continuation is forced through the model's ``generate``, so SharpV prunes the
        prompt and Memory SharpV compacts the cache exactly as when answering.
        """
        out: list[tuple[float, bool]] = []
        for req in tqdm(requests, desc="sharpv loglikelihood", disable=self.rank != 0):
            context, doc_to_target, _, doc_id, task, split = req.args
            target = doc_to_target
            if callable(doc_to_target):
                target = doc_to_target(self.task_dict[task][split][doc_id])
            if isinstance(target, (list, tuple)):
                target = target[0]
            inputs = self._encode([context], [self._visuals(req.args)])
            ids = self._tokenizer(str(target), add_special_tokens=False).input_ids
            if not ids:
                raise ValueError(f"sharpv: empty continuation {target!r} of doc {doc_id}")
            targets = torch.tensor([ids], device=self._device)
            prompt_len = inputs["input_ids"].shape[1]
            gen_config = copy.deepcopy(self._model.generation_config)
            gen_config.eos_token_id = None  # a forced end-of-text token must not stop it
            with torch.inference_mode():
                res = self._model.generate(
                    **inputs,
                    generation_config=gen_config,
                    max_new_tokens=len(ids),
                    do_sample=False,
                    num_beams=1,
                    pad_token_id=self._pad_id(),
                    logits_processor=[_ForceTokens(targets, prompt_len)],
                    output_logits=True,
                    return_dict_in_generate=True,
                )
            logits = torch.stack(res.logits, dim=1)[0].float()  # (n, vocab), unprocessed
            if logits.shape[0] != len(ids):
                raise RuntimeError(f"sharpv: scored {logits.shape[0]} of {len(ids)} tokens")
            logp = torch.log_softmax(logits, dim=-1)
            tgt = targets[0].to(logp.device)
            total = float(logp.gather(1, tgt[:, None]).sum())
            greedy = bool((logits.argmax(dim=-1) == tgt).all())
            self.task_means.add(req.task_name, self._record(0))
            self.cache_hook.add_partial("loglikelihood", (context, target), (total, greedy))
            out.append((total, greedy))
        return out

    def generate_until_multi_round(self, requests: list[Instance]) -> list[str]:
        raise NotImplementedError("sharpv: multi-round generation is not supported")
