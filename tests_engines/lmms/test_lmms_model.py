"""The lmms-eval ``sharpv`` model in process: registration, answers, statistics, scores."""

from __future__ import annotations

import json

import pytest
import torch

pytest.importorskip("lmms_eval")

from lmms_eval.api.instance import Instance  # noqa: E402
from lmms_tiny_task import N_FRAMES, TASK  # noqa: E402

from sharpv.engines.lmms_eval import SharpVLMM  # noqa: E402
from sharpv_kernels.vocab import budget_token_count  # noqa: E402

GEN = {"max_new_tokens": 5, "temperature": 0, "until": ["</s>"]}


def _docs(task_dir):
    return [json.loads(line) for line in (task_dir / "docs.jsonl").read_text().splitlines()]


def _lm(ckpt, task_dir, **args) -> SharpVLMM:
    lm = SharpVLMM(pretrained=str(ckpt), device="cpu", max_frames_num=N_FRAMES, **args)
    lm.task_dict = {TASK: {"test": _docs(task_dir)}}
    return lm


def _requests(task_dir, kind="generate_until", n=2):
    reqs = []
    for doc in _docs(task_dir)[:n]:
        second = GEN if kind == "generate_until" else (lambda d: d["answer"])
        args = (doc["question"], second, lambda d: [d["video"]], doc["id"], TASK, "test")
        reqs.append(
            Instance(
                request_type=kind,
                arguments=args,
                idx=0,
                metadata={"task": TASK, "doc_id": doc["id"], "repeats": 1},
            )
        )
    return reqs


def test_entry_point_registers_the_model():
    from lmms_eval.models import get_model

    assert get_model("sharpv") is SharpVLMM


def test_budget_mode_statistics_on_llava_onevision(llava_ov_ckpt, task_dir):
    lm = _lm(llava_ov_ckpt, task_dir, mode="budget", budget=0.3)
    out = lm.generate_until(_requests(task_dir))
    f = 4  # tokens per frame of the tiny LLaVA-OneVision (56 px, patch 14, 2x2 pooling)
    for res in out:
        assert isinstance(res.text, str)
        tc = res.token_counts.to_dict()
        assert tc["input_tokens"] > 0 and 0 <= tc["output_tokens"] <= GEN["max_new_tokens"]
        rec = tc["sharpv"]
        assert rec["method"] == "sharpv"
        assert len(rec["frame_ratios"]) == N_FRAMES
        assert rec["visual_tokens_in"] == N_FRAMES * f
        assert rec["visual_tokens_kept"] == budget_token_count(0.3, N_FRAMES, f)
        assert rec["VR"] == pytest.approx(rec["visual_tokens_kept"] / (N_FRAMES * f))
        assert 0.0 < rec["MR"] <= 1.0 and rec["dropped_layers"] is not None
        assert rec["token_budget"] == pytest.approx(rec["VR"] * rec["MR"])
        json.dumps(tc)  # lmms-eval writes it to the samples file
    means = lm.task_means.means()[TASK]
    assert means["samples"] == 2
    assert means["VR"] == pytest.approx(budget_token_count(0.3, N_FRAMES, f) / (N_FRAMES * f))


def test_full_budget_answers_as_the_dense_model(llava_ov_ckpt, task_dir):
    dense = _lm(llava_ov_ckpt, task_dir, dense=True).generate_until(_requests(task_dir))
    full = _lm(llava_ov_ckpt, task_dir, mode="budget", budget=1.0, memory=False).generate_until(
        _requests(task_dir)
    )
    assert [r.text for r in full] == [r.text for r in dense]
    for r in dense:
        assert r.token_counts.sharpv["method"] == "dense"
        assert r.token_counts.sharpv["token_budget"] == 1.0
    for r in full:
        assert r.token_counts.sharpv["VR"] == 1.0 and r.token_counts.sharpv["MR"] == 1.0


def test_batched_answers_match_one_at_a_time(llava_ov_ckpt, task_dir):
    one = _lm(llava_ov_ckpt, task_dir, mode="budget", budget=0.5).generate_until(
        _requests(task_dir, n=3)
    )
    two = _lm(llava_ov_ckpt, task_dir, mode="budget", budget=0.5, batch_size=2).generate_until(
        _requests(task_dir, n=3)
    )
    assert [r.text for r in two] == [r.text for r in one]
    assert [r.token_counts.sharpv["VR"] for r in two] == [r.token_counts.sharpv["VR"] for r in one]


@pytest.mark.parametrize("method,extra", [("uniform", {"keep_ratio": 0.5}), ("evs", {})])
def test_baselines_run(llava_ov_ckpt, task_dir, method, extra):
    out = _lm(llava_ov_ckpt, task_dir, method=method, **extra).generate_until(
        _requests(task_dir, n=1)
    )
    rec = out[0].token_counts.sharpv
    assert rec["method"] == method and rec["MR"] == 1.0 and rec["VR"] < 1.0
    if method == "uniform":
        assert rec["frame_counts"] == [2] * N_FRAMES  # ceil(0.5 * 4) in every frame


def test_qwen2_5_vl_prunes_temporal_groups(qwen_ckpt, task_dir):
    out = _lm(qwen_ckpt, task_dir, mode="budget", budget=0.5).generate_until(
        _requests(task_dir, n=1)
    )
    rec = out[0].token_counts.sharpv
    groups = N_FRAMES // 2  # temporal patch size 2
    assert len(rec["frame_ratios"]) == groups
    f = rec["tokens_per_frame"][0]
    assert rec["visual_tokens_kept"] == budget_token_count(0.5, groups, f)


def _reference_loglikelihood(lm: SharpVLMM, req: Instance) -> tuple[float, bool]:
    """Plain forward pass over prompt + continuation (the dense model, no generate)."""
    context, to_target, _, doc_id, task, split = req.args
    target = to_target(lm.task_dict[task][split][doc_id])
    inputs = lm._encode([context], [lm._visuals(req.args)])
    ids = lm.tokenizer(target, add_special_tokens=False).input_ids
    n = len(ids)
    cont = torch.tensor([ids])
    full = dict(inputs)
    full["input_ids"] = torch.cat([inputs["input_ids"], cont], dim=1)
    full["attention_mask"] = torch.cat([inputs["attention_mask"], torch.ones_like(cont)], dim=1)
    with torch.no_grad():
        logits = lm.model(**full).logits[0, -n - 1 : -1].double()
    logp = torch.log_softmax(logits, -1).gather(1, cont[0][:, None]).sum()
    return float(logp), bool((logits.argmax(-1) == cont[0]).all())


def test_loglikelihood_matches_a_forward_pass(llava_ov_ckpt, task_dir):
    lm = _lm(llava_ov_ckpt, task_dir, dense=True)
    reqs = _requests(task_dir, kind="loglikelihood")
    got = lm.loglikelihood(reqs)
    for (lp, greedy), req in zip(got, reqs, strict=True):
        ref_lp, ref_greedy = _reference_loglikelihood(lm, req)
        assert lp == pytest.approx(ref_lp, abs=1e-4)
        assert greedy == ref_greedy
    full = _lm(llava_ov_ckpt, task_dir, mode="budget", budget=1.0, memory=False).loglikelihood(reqs)
    assert [g for _, g in full] == [g for _, g in got]
    assert [lp for lp, _ in full] == pytest.approx([lp for lp, _ in got], abs=1e-4)
    pruned = _lm(llava_ov_ckpt, task_dir, mode="budget", budget=0.3).loglikelihood(reqs)
    assert all(lp < 0 and lp == lp for lp, _ in pruned)


def test_pruned_loglikelihood_matches_a_forward_pass_on_the_pruned_prompt(llava_ov_ckpt, task_dir):
    from sharpv.integration import prepare_sharpv_inputs

    lm = _lm(llava_ov_ckpt, task_dir, mode="budget", budget=0.3, memory=False)
    reqs = _requests(task_dir, kind="loglikelihood")
    got = lm.loglikelihood(reqs)
    model, config = lm.model, lm.options.config
    for (lp, greedy), req in zip(got, reqs, strict=True):
        context, to_target, _, doc_id, task, split = req.args
        inputs = lm._encode([context], [lm._visuals(req.args)])
        ids = inputs.pop("input_ids")
        prep = prepare_sharpv_inputs(model, config, ids, inputs.pop("attention_mask"), **inputs)
        target = to_target(lm.task_dict[task][split][doc_id])
        cont = torch.tensor([lm.tokenizer(target, add_special_tokens=False).input_ids])
        n = cont.shape[1]
        embeds = torch.cat([prep.inputs_embeds, model.get_input_embeddings()(cont)], dim=1)
        mask = torch.cat([prep.attention_mask, torch.ones_like(cont)], dim=1)
        with torch.no_grad():
            logits = model(inputs_embeds=embeds, attention_mask=mask).logits[0, -n - 1 : -1]
        logp = torch.log_softmax(logits.double(), -1).gather(1, cont[0][:, None]).sum()
        assert lp == pytest.approx(float(logp), abs=1e-4)
        assert greedy == bool((logits.argmax(-1) == cont[0]).all())


def test_unsupported_checkpoint_fails_before_loading_weights(tmp_path):
    from transformers import LlamaConfig

    LlamaConfig(hidden_size=16, num_hidden_layers=1, num_attention_heads=2).save_pretrained(
        tmp_path
    )
    with pytest.raises(ValueError, match="llava_onevision"):
        SharpVLMM(pretrained=str(tmp_path), device="cpu")


def test_bad_model_args_fail_before_loading(tmp_path):
    with pytest.raises(ValueError, match="budget"):
        SharpVLMM(pretrained=str(tmp_path / "missing"), dense=True, mode="budget", budget=0.3)


def test_a_document_of_frames_is_one_video(llava_ov_ckpt, task_dir):
    from PIL import Image

    from sharpv.video import synthetic_video

    frames = [Image.fromarray(f) for f in synthetic_video(2 * N_FRAMES, size=64, seed=5)]
    req = Instance(
        request_type="generate_until",
        arguments=("what moves ?", GEN, lambda d: frames, 0, TASK, "test"),
        idx=0,
        metadata={"task": TASK, "doc_id": 0, "repeats": 1},
    )
    rec = (
        _lm(llava_ov_ckpt, task_dir, mode="budget", budget=0.5)
        .generate_until([req])[0]
        .token_counts.sharpv
    )
    assert len(rec["frame_ratios"]) == N_FRAMES  # 16 frames sampled down to max_frames_num
    assert rec["visual_tokens_kept"] == budget_token_count(0.5, N_FRAMES, 4)
