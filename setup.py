"""Build script for the ``sharpv-kernels`` distribution.

Installs two import packages:

* ``sharpv_kernels`` -- Triton kernels, their launchers, plain-PyTorch references and
  the ``torch.ops.sharpv.*`` operators (depends on torch and triton only);
* ``sharpv`` (from ``python/sharpv``) -- the model-facing integration and the ``sharpv``
  command line.

On a machine without a GPU install the CPU build of torch first
(``pip install torch==2.13.0``); a bare ``torch`` requirement would otherwise pull the
CUDA wheels.

The upper bounds of torch, triton and transformers are one past the newest minor series CI
tests; they equal ``TESTED`` in ``python/sharpv/_hosts.py`` (``tests/test_host_versions.py``
checks), which also warns at ``import sharpv`` about a newer release installed anyway.
"""

from setuptools import find_packages, setup

_kernel_pkgs = find_packages(include=["sharpv_kernels", "sharpv_kernels.*"])
_model_pkgs = ["sharpv"] + ["sharpv." + p for p in find_packages(where="python/sharpv")]

setup(
    name="sharpv-kernels",
    version="0.1.0",
    description="Fused Triton kernels and Hugging Face integration for SharpV video-token pruning",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=_kernel_pkgs + _model_pkgs,
    package_dir={"sharpv": "python/sharpv"},
    # the native CPU kernel's C source, compiled on first use (sharpv_kernels/_native.py)
    package_data={"sharpv_kernels.ops.visual_prune": ["*.c"]},
    install_requires=["torch>=2.5,<2.15", "triton>=3.1,<3.10", "numpy"],
    extras_require={
        "hf": ["transformers>=4.57,<5.26", "av", "matplotlib", "tqdm", "pillow"],
        "test": ["pytest", "hypothesis", "pytest-benchmark", "ruff"],
        "bench": ["pytest-benchmark", "matplotlib"],
        "flash": ["flash-attn"],
    },
    entry_points={
        "console_scripts": ["sharpv=sharpv.cli:main"],
        # lmms-eval finds the ``sharpv`` model here (``lmms-eval eval --model sharpv``)
        "lmms_eval.models": ["sharpv = sharpv.engines.lmms:manifest"],
        # vLLM calls this at start-up in every process; it imports vllm only there
        "vllm.general_plugins": ["sharpv = sharpv.engines.vllm:register"],
    },
    # an SPDX expression (PEP 639); a "License ::" classifier beside it is deprecated
    license_expression="Apache-2.0",
    classifiers=["Programming Language :: Python :: 3"],
)
