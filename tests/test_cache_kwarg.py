"""The KV-cache keyword across transformers releases (``past_key_values`` before 5.24, ``cache``
from 5.24), found in one place (``sharpv.hooks``), and the hooks failing at once, naming the
installed transformers, when the model runs with a cache other than the one they installed."""

from __future__ import annotations

import pytest
import torch

import sharpv
from sharpv._hosts import TESTED, installed, release
from sharpv.hooks import CACHE_KWARGS, HostMismatchError, cache_kwarg, find_text_model, get_cache

from .test_memory_sharpv import BATCH1, SEQ, greedy, make_batch, tiny_lm

pytest.importorskip("transformers")


def _module(param: str | None) -> torch.nn.Module:
    src = f"def forward(self, hidden_states, {param}=None):\n    return hidden_states\n"
    if param is None:
        src = "def forward(self, hidden_states, **kwargs):\n    return hidden_states\n"
    ns: dict = {}
    exec(src, ns)  # noqa: S102 - a forward with the parameter under test
    return type("M", (torch.nn.Module,), {"forward": ns["forward"]})()


@pytest.mark.parametrize("name", CACHE_KWARGS)
def test_cache_kwarg_reads_the_signature(name):
    assert cache_kwarg(_module(name)) == name


def test_cache_kwarg_prefers_the_newest_name():
    def forward(self, hidden_states, cache=None, past_key_values=None):
        return hidden_states

    m = type("M", (torch.nn.Module,), {"forward": forward})()
    assert cache_kwarg(m) == "cache"


def test_cache_kwarg_missing_names_the_host():
    with pytest.raises(HostMismatchError, match=r"takes no KV-cache argument.*transformers"):
        cache_kwarg(_module(None))


def test_running_release_is_read_from_the_model():
    """The decoder stack of the installed transformers takes the name this release uses."""
    model = tiny_lm("qwen2", "eager")
    text = find_text_model(model)
    major_minor = release(installed(TESTED["transformers"]))[:2]
    assert cache_kwarg(text) == ("cache" if major_minor >= (5, 24) else "past_key_values")
    assert cache_kwarg(text.layers[0].self_attn) in CACHE_KWARGS


def test_get_cache_under_the_wrong_name_fails():
    marker = object()
    assert get_cache({"cache": marker}, "cache") is marker
    assert get_cache({}, "cache") is None
    with pytest.raises(HostMismatchError, match="passed as 'past_key_values'"):
        get_cache({"past_key_values": marker}, "cache")


def _swap_cache(text, when: str):
    """A pre-hook on the decoder stack that hands the model a fresh DynamicCache at the
    prefill or at decode steps (what a renamed argument did to Memory SharpV)."""
    from transformers import DynamicCache

    name = cache_kwarg(text)
    seen = {"decode": None}

    def pre(module, args, kwargs):
        cache = kwargs.get(name)
        decoding = cache is not None and cache.get_seq_length() > 0
        if (when == "prefill") == (not decoding):
            if when == "decode" and seen["decode"] is None:
                seen["decode"] = DynamicCache()
                for layer in range(len(text.layers)):  # a filled foreign cache
                    k = torch.zeros(1, 2, cache.get_seq_length(), 8)
                    seen["decode"].update(k, k, layer)
            kwargs[name] = seen["decode"] if when == "decode" else DynamicCache()
            return args, kwargs
        return None

    return text.register_forward_pre_hook(pre, with_kwargs=True, prepend=False)


@pytest.mark.parametrize("when", ["prefill", "decode"])
def test_memory_sharpv_refuses_a_foreign_cache(when):
    model = tiny_lm("qwen2", "eager")
    emb, attn, vis = make_batch(BATCH1, SEQ)
    text = find_text_model(model)
    host = TESTED["transformers"]
    with sharpv.memory_sharpv(model, vis, threshold=2.0):  # drops every layer >= 1
        handle = _swap_cache(text, when)
        try:
            with pytest.raises(HostMismatchError) as err:
                greedy(model, emb, attn, n_new=3)
        finally:
            handle.remove()
    msg = str(err.value)
    assert f"transformers {installed(host)} is installed" in msg
    assert host.spec in msg
