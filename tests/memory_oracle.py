"""Memory SharpV's test oracle (SPEC, Memory SharpV item 5), shared by the memory and
integration tests: the dense model decoding with the dropped layers' visual entries masked."""

from __future__ import annotations

import contextlib

import torch


@contextlib.contextmanager
def dense_masked(model, dropped: torch.Tensor, visual_mask: torch.Tensor):
    """The oracle: the dense model whose decode steps (not the prefill) see, in layer ``l``,
    no visual position of the samples ``b`` with ``dropped[l, b]``, through a per-layer 4-D
    additive mask. Padding comes from the 2-D mask the decoder stack receives."""
    from sharpv.hooks import cache_kwarg, find_text_model, get_cache

    text = find_text_model(model)
    name = cache_kwarg(text)
    st = {"decode": False, "pad": None}

    def text_pre(module, args, kwargs):
        cache = get_cache(kwargs, name)
        st["decode"] = cache is not None and cache.get_seq_length() > 0
        st["pad"] = kwargs.get("attention_mask")
        st["past"] = cache.get_seq_length() if cache is not None else 0

    def make(idx):
        def pre(module, args, kwargs):
            if not st["decode"]:
                return None
            h = kwargs["hidden_states"]
            bsz, q = h.shape[:2]
            total = st["past"] + q
            j = torch.arange(total)
            qpos = st["past"] + torch.arange(q)
            allowed = (j[None, :] <= qpos[:, None])[None].expand(bsz, q, total).clone()
            pad = st["pad"]
            if pad is not None:
                allowed &= pad[:, None, :total].bool()
            vis = torch.zeros(bsz, total, dtype=torch.bool)
            vis[:, : visual_mask.shape[1]] = visual_mask
            hide = vis & dropped[idx][:, None]
            allowed &= ~hide[:, None, :]
            mask = torch.zeros(bsz, 1, q, total, dtype=h.dtype)
            mask.masked_fill_(~allowed[:, None], torch.finfo(h.dtype).min)
            kwargs["attention_mask"] = mask
            return args, kwargs

        return pre

    handles = [text.register_forward_pre_hook(text_pre, with_kwargs=True)]
    for idx, layer in enumerate(text.layers):
        handles.append(layer.self_attn.register_forward_pre_hook(make(idx), with_kwargs=True))
    try:
        yield
    finally:
        for h in handles:
            h.remove()
