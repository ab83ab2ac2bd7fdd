"""Memory SharpV on tiny random Qwen2/Llama models: exact against dense masked decoding."""

from __future__ import annotations

import contextlib
import traceback

import pytest
import torch

import sharpv
from sharpv.hooks import GenerationHooks, cache_kwarg, find_text_model, get_cache, visual_spans
from sharpv_kernels.ops.layer_similarity import layer_similarity_reference

from .memory_oracle import dense_masked

pytest.importorskip("transformers")

# ---------------------------------------------------------------- models and the oracle

HIDDEN = 32
LAYERS = 4


def tiny_lm(arch: str, attn: str, *, seed: int = 0, dtype=torch.float32) -> torch.nn.Module:
    """A 4-layer decoder-only LM with random weights (large enough init that the visual
    similarity actually decays across layers)."""
    from transformers import LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM

    kw = dict(
        vocab_size=64, hidden_size=HIDDEN, intermediate_size=64, num_hidden_layers=LAYERS,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
        initializer_range=0.15, attn_implementation=attn, pad_token_id=0, bos_token_id=1,
        eos_token_id=2,
    )  # fmt: skip
    torch.manual_seed(seed)
    if arch == "qwen2":
        model = Qwen2ForCausalLM(Qwen2Config(**kw))
    else:
        model = LlamaForCausalLM(LlamaConfig(**kw))
    model = model.to(dtype).eval()
    model.generation_config.pad_token_id = 0
    model.generation_config.eos_token_id = None  # always decode the requested length
    return model


def make_batch(spans: list[tuple[int, int, int]], seq: int, *, seed: int = 0):
    """Left-padded prompt embeddings for samples ``(n_pad, visual_start, visual_len)``.

    Returns ``(inputs_embeds, attention_mask, visual_mask)``; the visual start is counted from
    the sequence start (after the padding).
    """
    g = torch.Generator().manual_seed(seed)
    bsz = len(spans)
    emb = torch.randn(bsz, seq, HIDDEN, generator=g) * 0.3
    attn = torch.ones(bsz, seq, dtype=torch.long)
    vis = torch.zeros(bsz, seq, dtype=torch.bool)
    for b, (pad, start, n) in enumerate(spans):
        attn[b, :pad] = 0
        emb[b, :pad] = 0
        vis[b, start : start + n] = True
    return emb, attn, vis


def greedy(model, emb, attn, n_new: int = 16):
    out = model.generate(
        inputs_embeds=emb, attention_mask=attn, max_new_tokens=n_new, do_sample=False,
        output_logits=True, return_dict_in_generate=True, use_cache=True,
    )  # fmt: skip
    return out.sequences, torch.stack(out.logits, 1)


# ---------------------------------------------------------------- tests

BATCH1 = [(0, 2, 10)]  # (n_pad, visual_start, visual_len) in a 16-token prompt
BATCH3 = [(0, 2, 10), (3, 5, 6), (1, 1, 12)]
SEQ = 16


@pytest.fixture(scope="module", params=["qwen2", "llama"])
def arch(request):
    return request.param


def _mixed_threshold(sims: torch.Tensor) -> float:
    """A threshold between the similarities of layers >= 1, so some pairs drop and some not."""
    vals = sims[1:].flatten().sort().values
    mid = vals.numel() // 2
    return float((vals[mid - 1] + vals[mid]) / 2)


def _run(model, batch, threshold, chunk_size=8):
    emb, attn, vis = make_batch(batch, SEQ)
    with sharpv.memory_sharpv(model, vis, threshold=threshold, chunk_size=chunk_size) as state:
        seq, logits = greedy(model, emb, attn)
    return state, seq, logits, (emb, attn, vis)


@pytest.mark.parametrize("attn", ["eager", "sdpa"])
@pytest.mark.parametrize("batch", [BATCH1, BATCH3], ids=["batch1", "padded3"])
def test_exact_against_dense_masked_decoding(arch, attn, batch):
    model = tiny_lm(arch, attn)
    state0, _, _, _ = _run(model, batch, -1.0)
    thr = _mixed_threshold(state0.similarities)
    state, seq, logits, (emb, attn_mask, vis) = _run(model, batch, thr)
    dropped = state.dropped
    assert dropped.any() and not dropped[1:].all(), "the test needs a mixed drop pattern"
    with dense_masked(model, dropped, vis):
        want_seq, want_logits = greedy(model, emb, attn_mask)
    assert torch.equal(seq, want_seq)
    torch.testing.assert_close(logits, want_logits, atol=1e-5, rtol=0)
    # the first token comes from the (unchanged) prefill
    dense_seq, dense_logits = greedy(model, emb, attn_mask)
    torch.testing.assert_close(logits[:, 0], dense_logits[:, 0], atol=0, rtol=0)


@pytest.mark.parametrize("attn", ["eager", "sdpa"])
def test_threshold_extremes(arch, attn):
    model = tiny_lm(arch, attn)
    emb, attn_mask, vis = make_batch(BATCH3, SEQ)
    dense_seq, dense_logits = greedy(model, emb, attn_mask)
    state, seq, logits, _ = _run(model, BATCH3, -1.0)
    assert not state.dropped.any()
    assert torch.equal(seq, dense_seq)
    torch.testing.assert_close(logits, dense_logits, atol=0, rtol=0)
    assert torch.equal(state.memory_ratio, torch.ones(3))

    state, seq, logits, _ = _run(model, BATCH3, 2.0)
    assert not state.dropped[0].any() and state.dropped[1:].all()
    want = torch.full((3,), 1.0 / LAYERS)
    torch.testing.assert_close(state.memory_ratio, want)
    assert seq.shape == dense_seq.shape and torch.isfinite(logits).all()
    with dense_masked(model, state.dropped, vis):
        want_seq, want_logits = greedy(model, emb, attn_mask)
    assert torch.equal(seq, want_seq)
    torch.testing.assert_close(logits, want_logits, atol=1e-5, rtol=0)


def test_similarities_match_reference_and_layer0_is_one(arch):
    model = tiny_lm(arch, "sdpa")
    emb, attn_mask, vis = make_batch(BATCH3, SEQ)
    state, _, _, _ = _run(model, BATCH3, 0.2)
    sims = state.similarities
    assert sims.shape == (LAYERS, 3) and sims.dtype == torch.float32
    assert torch.equal(sims[0], torch.ones(3))
    with torch.no_grad():
        hs = model(inputs_embeds=emb, attention_mask=attn_mask, output_hidden_states=True)
    start, length = visual_spans(vis)
    for layer in range(1, LAYERS):
        want = layer_similarity_reference(hs.hidden_states[layer], emb, start, length)
        torch.testing.assert_close(sims[layer], want, atol=1e-5, rtol=0)
    assert torch.equal(state.dropped, (sims < 0.2) & (torch.arange(LAYERS) > 0)[:, None])
    kept = (~state.dropped).sum(0) / LAYERS
    torch.testing.assert_close(state.memory_ratio, kept.float())


def test_cache_bytes_match_kept_entries(arch):
    model = tiny_lm(arch, "eager")
    emb, attn_mask, vis = make_batch(BATCH3, SEQ)
    chunk = 4
    row = 3 * 2 * 8 * 4  # batch * kv_heads * head_dim * float32 bytes
    for thr, n_new in ((2.0, 1), (2.0, 16), (-1.0, 1)):
        with sharpv.memory_sharpv(model, vis, threshold=thr, chunk_size=chunk) as state:
            model.generate(
                inputs_embeds=emb, attention_mask=attn_mask, max_new_tokens=n_new,
                do_sample=False,
            )  # fmt: skip
        cache = state.cache
        lengths = torch.tensor(cache.lengths_host)
        spans = visual_spans(vis)[1]
        # the entries each (layer, sample) keeps: its prompt and generated tokens, minus the
        # visual span in dropped layers
        logical = SEQ + n_new - 1
        want_len = logical - torch.where(state.dropped, spans[None, :], 0)
        assert torch.equal(lengths, want_len)
        needed = 2 * row * int(want_len.max(1).values.sum())
        assert cache.needed_bytes() == needed
        assert needed <= cache.nbytes() < needed + LAYERS * 2 * row * chunk
        if thr > 1:
            assert cache.nbytes() < 2 * row * logical * LAYERS


def test_block_restores_model_exactly():
    model = tiny_lm("qwen2", "sdpa")
    emb, attn_mask, vis = make_batch(BATCH3, SEQ)
    before_seq, before_logits = greedy(model, emb, attn_mask)
    params = {k: v.clone() for k, v in model.state_dict().items()}

    def hooks():
        return [(len(m._forward_pre_hooks), len(m._forward_hooks)) for m in model.modules()]

    hooks_before = hooks()
    impl = model.config._attn_implementation
    with sharpv.memory_sharpv(model, vis, threshold=2.0):
        greedy(model, emb, attn_mask)
    assert hooks() == hooks_before
    assert model.config._attn_implementation == impl
    for k, v in model.state_dict().items():
        assert torch.equal(v, params[k])
    seq, logits = greedy(model, emb, attn_mask)
    assert torch.equal(seq, before_seq)
    torch.testing.assert_close(logits, before_logits, atol=0, rtol=0)

    with pytest.raises(RuntimeError, match="boom"):
        with sharpv.memory_sharpv(model, vis, threshold=2.0):
            raise RuntimeError("boom")
    assert hooks() == hooks_before


def test_two_generations_in_one_block():
    model = tiny_lm("llama", "eager")
    emb, attn_mask, vis = make_batch(BATCH1, SEQ)
    with sharpv.memory_sharpv(model, vis, threshold=2.0) as state:
        a = greedy(model, emb, attn_mask, n_new=4)
        cache_a = state.cache
        b = greedy(model, emb, attn_mask, n_new=4)
    assert state.cache is not cache_a
    assert torch.equal(a[0], b[0])
    torch.testing.assert_close(a[1], b[1], atol=0, rtol=0)


def test_llava_style_wrapper():
    from sharpv.tiny_models import tiny_llava_onevision

    model = tiny_llava_onevision(hidden=32, layers=3, attn_implementation="sdpa")
    text = find_text_model(model)
    assert text is model.model.language_model
    emb, attn_mask, vis = make_batch(BATCH3, SEQ)
    assert text.config.hidden_size == HIDDEN
    model.generation_config.eos_token_id = None
    with sharpv.memory_sharpv(model, vis, threshold=2.0) as state:
        seq, logits = greedy(model, emb, attn_mask, n_new=4)
    assert state.dropped[1:].all() and not state.dropped[0].any()
    with dense_masked(model, state.dropped, vis):
        want_seq, want_logits = greedy(model, emb, attn_mask, n_new=4)
    assert torch.equal(seq, want_seq)
    torch.testing.assert_close(logits, want_logits, atol=1e-5, rtol=0)


def test_bad_arguments():
    model = tiny_lm("qwen2", "eager")
    emb, attn_mask, vis = make_batch(BATCH1, SEQ)
    bad = vis.clone()
    bad[0, 14] = True
    with pytest.raises(ValueError, match="contiguous"):
        with sharpv.memory_sharpv(model, bad):
            pass
    with pytest.raises(ValueError, match="visual_mask"):
        with sharpv.memory_sharpv(model, vis.long()):
            pass
    with pytest.raises(TypeError, match="threshold"):
        with sharpv.memory_sharpv(model, vis, threshold="0.2"):
            pass
    with pytest.raises(ValueError, match="visual_mask"):
        with sharpv.memory_sharpv(model, vis[:, :8]):
            greedy(model, emb, attn_mask, n_new=2)
    with pytest.raises(ValueError, match="model"):
        with sharpv.memory_sharpv(torch.nn.Linear(2, 2), vis):
            pass
    with pytest.raises(ValueError, match="chunk_size"):
        sharpv.memory_sharpv(model, vis, chunk_size=0)  # raised when called, before any hook
    model.config._attn_implementation = "flex_attention"
    try:
        with pytest.raises(ValueError, match="attention"):
            with sharpv.memory_sharpv(model, vis):
                pass
    finally:
        model.config._attn_implementation = "eager"


# ---------------------------------------------------------------- host synchronisation

#: what reads a tensor's values on the host (a device-to-host sync on a GPU) or makes a tensor
#: from host data (a host-to-device copy)
_HOST_READS = ("item", "tolist", "__bool__", "__int__", "__float__", "__index__", "cpu", "numpy")
_HOST_MAKERS = ("tensor", "as_tensor")
_OUR_CODE = ("/sharpv/", "/sharpv_kernels/")


@contextlib.contextmanager
def _record_host_traffic(log: list[tuple[str, bool]]):
    """Patch the tensor methods and factories above to append ``(name, ours)`` to ``log``,
    ``ours`` when a frame of the call stack lies in this project's packages."""
    saved_methods = {n: getattr(torch.Tensor, n) for n in _HOST_READS}
    saved_makers = {n: getattr(torch, n) for n in _HOST_MAKERS}

    def record(name: str) -> None:
        files = [frame.filename for frame in traceback.extract_stack()[:-2]]
        log.append((name, any(part in f for f in files for part in _OUR_CODE)))

    def wrap(name, fn):
        def patched(*args, **kwargs):
            record(name)
            return fn(*args, **kwargs)

        return patched

    try:
        for n, fn in saved_methods.items():
            setattr(torch.Tensor, n, wrap(n, fn))
        for n, fn in saved_makers.items():
            setattr(torch, n, wrap(n, fn))
        yield
    finally:
        for n, fn in saved_methods.items():
            setattr(torch.Tensor, n, fn)
        for n, fn in saved_makers.items():
            setattr(torch, n, fn)


def _decode_host_traffic(model, context, emb, attn_mask, n_new=4):
    """Run ``greedy`` inside ``context`` and log the host traffic of every decode step's
    forward of the decoder stack (the prefill may synchronise). Returns
    ``(state, sequences, log, decode_steps)``."""
    text = find_text_model(model)
    forward = text.forward
    log: list[tuple[str, bool]] = []
    steps = []

    name = cache_kwarg(text)

    def watched_forward(*args, **kwargs):
        cache = get_cache(kwargs, name)
        if cache is None or cache.get_seq_length() == 0:
            return forward(*args, **kwargs)
        steps.append(cache.get_seq_length())
        with _record_host_traffic(log):
            return forward(*args, **kwargs)

    text.forward = watched_forward
    try:
        with context as state:
            seq, _ = greedy(model, emb, attn_mask, n_new=n_new)
    finally:
        del text.forward
    return state, seq, log, steps


@pytest.mark.parametrize("attn", ["eager", "sdpa"])
def test_no_host_sync_inside_decode_steps(attn):
    """Every decode step's forward of the decoder stack, with every layer compacted for a
    padded batch (masks rebuilt in every layer but 0), reads no tensor value on the host and
    makes no tensor from host data in Memory SharpV's code (CPU stand-in for
    ``torch.cuda.set_sync_debug_mode``)."""
    model = tiny_lm("qwen2", attn)
    emb, attn_mask, vis = make_batch(BATCH3, SEQ)
    context = sharpv.memory_sharpv(model, vis, threshold=2.0)
    state, seq, log, steps = _decode_host_traffic(model, context, emb, attn_mask)
    assert state.dropped[1:].all() and len(steps) == 3
    # only this project's code is held to it: transformers' own decode path makes a host
    # tensor per step on some releases (5.19), none on others (5.23)
    assert [name for name, ours in log if ours] == []
    # the recorder sees host reads and host-made tensors, and tells this project's code apart
    log.clear()
    with _record_host_traffic(log):
        torch.tensor([True, False], device=seq.device)
        visual_spans(vis)
    assert log[0] == ("tensor", False) and ("cpu", True) in log


def test_fastv_decode_steps_have_no_host_sync():
    """The FastV baseline, on the same base, reads nothing on the host while decoding."""
    from sharpv.baselines import fastv

    model = tiny_lm("llama", "eager")
    emb, attn_mask, vis = make_batch(BATCH1, SEQ)
    context = fastv(model, vis, layer=2, keep_ratio=0.5)
    state, _, log, steps = _decode_host_traffic(model, context, emb, attn_mask)
    assert state.kept.shape == (1, 5) and len(steps) == 3
    assert [name for name, ours in log if ours] == []


# ---------------------------------------------------------------- the hooks base


class _Recorder(GenerationHooks):
    """Records which decision the base calls, in order."""

    name = "recorder"

    def __init__(self, model, visual_mask, *, fail_install=False):
        super().__init__(model, visual_mask)
        self.events: list[tuple] = []
        self.fail_install = fail_install

    def layer_hooks(self):
        return (0, 2)

    def attention_hooks(self):
        return (1,)

    def install(self):
        if self.fail_install:
            raise RuntimeError("install failed")

    def start_prefill(self, args, kwargs):
        self.events.append(("start", self.phase))

    def prefill_layer(self, idx, module, args, kwargs):
        self.events.append(("layer", idx, self.phase))

    def end_prefill(self):
        self.events.append(("end", self.phase))

    def decode_attention(self, idx, module, args, kwargs):
        self.events.append(("attn", idx, kwargs["hidden_states"].shape[1]))

    def uninstall(self):
        self.events.append(("uninstall",))


def test_generation_hooks_base_calls_each_decision_in_its_phase():
    model = tiny_lm("llama", "eager")
    emb, attn_mask, vis = make_batch(BATCH1, SEQ)

    def hooks():
        return [(len(m._forward_pre_hooks), len(m._forward_hooks)) for m in model.modules()]

    before = hooks()
    rec = _Recorder(model, vis)
    assert rec.num_layers == LAYERS and rec.span_start.tolist() == [2]
    with rec as bound:
        assert bound is rec and hooks() != before
        with pytest.raises(RuntimeError, match="already installed"):
            rec.__enter__()
        greedy(model, emb, attn_mask, n_new=3)
        assert rec.phase == "decode"
    assert rec.events == [
        ("start", "idle"),
        ("layer", 0, "prefill"),
        ("layer", 2, "prefill"),
        ("end", "prefill"),
        ("attn", 1, 1),
        ("attn", 1, 1),
        ("uninstall",),
    ]
    assert hooks() == before and rec.phase == "idle"
    # a failing install leaves no hook behind
    with pytest.raises(RuntimeError, match="install failed"):
        with _Recorder(model, vis, fail_install=True):
            pass
    assert hooks() == before
    # the prefill must have the mask's shape
    with pytest.raises(ValueError, match=r"\(batch, sequence\)"):
        with _Recorder(model, vis[:, :8]):
            greedy(model, emb, attn_mask, n_new=1)
    assert hooks() == before
