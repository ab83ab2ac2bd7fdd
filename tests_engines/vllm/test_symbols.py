"""Every vLLM name the plugin relies on exists in the installed vLLM
(:mod:`sharpv.engines.vllm.vllm_symbols`; the lane runs the same on the newest vLLM)."""

from __future__ import annotations

from sharpv.engines.vllm import vllm_symbols


def test_every_symbol_the_plugin_relies_on_exists():
    assert vllm_symbols.missing_symbols() == []


def test_a_missing_symbol_fails_the_check(monkeypatch):
    extra = (("vllm.multimodal.processing", "BaseMultiModalProcessor._no_such_hook"),)
    monkeypatch.setattr(vllm_symbols, "REQUIRED", vllm_symbols.REQUIRED + extra)
    missing = vllm_symbols.missing_symbols()
    assert len(missing) == 1 and "_no_such_hook" in missing[0]
    gone = ((("vllm.no_such_module", "X"), ("vllm", "NoSuchName")),)
    monkeypatch.setattr(vllm_symbols, "REQUIRED", ())
    monkeypatch.setattr(vllm_symbols, "ONE_OF", gone)
    assert vllm_symbols.missing_symbols()[0].startswith("none of: vllm.no_such_module:X")


def test_the_plugins_imports_are_listed():
    """Each ``from vllm... import Name`` in the plugin's modules is in the list."""
    import ast
    from pathlib import Path

    listed = {(m, a.split(".")[0]) for m, a in vllm_symbols.REQUIRED}
    listed |= {(m, a.split(".")[0]) for g in vllm_symbols.ONE_OF for m, a in g}
    folder = Path(vllm_symbols.__file__).parent
    for path in folder.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("vllm"):
                for alias in node.names:
                    assert (node.module, alias.name) in listed, (path.name, node.module, alias.name)
