"""The worked example of docs/methods.md (``examples/every_kth.py``, a user's method
registered through the public API) run by the lmms-eval ``sharpv`` model in process."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import pytest

pytest.importorskip("lmms_eval")

from test_lmms_model import _lm, _requests  # noqa: E402

from sharpv.methods import MethodOptionError  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]


def _example() -> None:
    """``examples/every_kth.py`` imported as ``every_kth`` (it registers the method; the
    vLLM lane imports it under the same name through ``SHARPV_METHOD_MODULES``)."""
    if str(ROOT / "examples") not in sys.path:
        sys.path.insert(0, str(ROOT / "examples"))
    importlib.import_module("every_kth")


def test_user_method_runs_in_the_lmms_model(llava_ov_ckpt, task_dir):
    _example()
    lm = _lm(llava_ov_ckpt, task_dir, method="every_kth", k=2)
    out = lm.generate_until(_requests(task_dir, n=1))
    rec = out[0].token_counts.sharpv
    assert rec["VR"] == pytest.approx(0.5)


def test_user_method_options_fail_before_loading(tmp_path):
    _example()
    from sharpv.engines.lmms_eval import SharpVLMM

    with pytest.raises(MethodOptionError, match="option k of method every_kth must be"):
        SharpVLMM(pretrained=str(tmp_path / "missing"), method="every_kth", k=0)
