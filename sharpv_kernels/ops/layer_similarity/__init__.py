"""``layer_similarity``: per-layer visual similarity of Memory SharpV (SPEC, Memory SharpV).

One folder, one op: ``checks.py`` (the contract: :class:`SimilarityArgs` and its checks),
``naive.py`` (the reference), ``torch_path.py``, ``kernels.py`` + ``launch.py`` (Triton),
``ops.py`` (``torch.ops.sharpv.layer_similarity`` and the backend choice), ``api.py`` (the
public function). Importing this package registers the operator.
"""

from .api import layer_similarity
from .checks import SimilarityArgs
from .launch import layer_similarity_triton
from .naive import layer_similarity_reference
from .torch_path import layer_similarity_torch

__all__ = [
    "SimilarityArgs",
    "layer_similarity",
    "layer_similarity_reference",
    "layer_similarity_torch",
    "layer_similarity_triton",
]
