"""The operators, one folder each: ``visual_prune`` (with its score pass ``visual_scores``),
``layer_similarity`` and ``kv_compact`` (the op ``kv_compact_``).

Every folder has the same files, by role: ``checks.py`` (the contract: the arguments and their
checks), ``naive.py`` (the reference, written to be read), ``torch_path.py`` (the vectorized
PyTorch backend), ``kernels.py`` + ``launch.py`` (the Triton backend), ``native.py`` where an
op has a native CPU kernel, ``ops.py`` (the ``torch.ops.sharpv`` registration and the one
place that picks the backend) and ``api.py`` (the public function). Shared infrastructure
stays at the package top (``_utils``, ``_gpu``, ``_native``, ``vocab``, ``warmup``).

This package binds no names of its own: ``sharpv_kernels.visual_prune`` is the public
function, ``sharpv_kernels.ops.visual_prune`` its folder.
"""
