"""Pieces of the lmms-eval ``sharpv`` model that do not import lmms-eval.

:mod:`.options` validates ``--model_args``; :mod:`.records` turns SharpV's statistics into
the per-sample records and the run summary. The model class itself is
:mod:`sharpv.engines.lmms_eval`.
"""

from __future__ import annotations

from typing import Any

__all__ = ["manifest", "MODEL_ID"]

#: Name of the model in ``lmms-eval eval --model sharpv``.
MODEL_ID = "sharpv"


def manifest() -> Any:
    """lmms-eval's ``ModelManifest`` of the ``sharpv`` model (entry point ``lmms_eval.models``).

    Registered by this distribution's ``setup.py``; lmms-eval calls it when it builds its model
    registry. Only lmms-eval's registry module is imported here; the model class
    (:class:`sharpv.engines.lmms_eval.SharpVLMM`) is imported when a run selects it.
    """
    from lmms_eval.models.registry_v2 import ModelManifest

    return ModelManifest(model_id=MODEL_ID, simple_class_path="sharpv.engines.lmms_eval.SharpVLMM")
