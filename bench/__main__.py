"""``python -m bench [ops|e2e|report|model|vllm|vllm-serve] ...``: the benchmarks' entry point.

* ``ops`` (default): microbenchmarks of every ``torch.ops.sharpv`` operator against its
  eager reference, ``torch.compile`` of it and (``kv_compact_``) gather-then-contiguous;
* ``e2e``: LLaVA-OneVision (random weights) end to end: dense, SharpV and the baselines;
* ``report``: markdown tables and PNG plots from result JSON files;
* ``model``: the static GPU performance model (predicted, no GPU needed);
* ``vllm``: dense vs SharpV vs vLLM's EVS inside vLLM's CPU build (run with the vLLM lane's
  venv, ``.venv-vllm/bin/python -m bench vllm``);
* ``vllm-serve``: the same three methods behind the real ``vllm serve`` under concurrent
  load (same venv).

Each sub-command takes ``--help``.
"""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    cmd = argv.pop(0) if argv and not argv[0].startswith("-") else "ops"
    if cmd == "ops":
        from .bench_ops import main as run
    elif cmd == "e2e":
        from .bench_e2e import main as run
    elif cmd == "report":
        from .report import main as run
    elif cmd == "model":
        from .model import main as run
    elif cmd == "vllm":
        from .bench_vllm import main as run
    elif cmd == "vllm-serve":
        from .bench_vllm_serve import main as run
    else:
        usage = "python -m bench [ops|e2e|report|model|vllm|vllm-serve] ..."
        print(f"usage: {usage}; unknown command {cmd!r}")
        return 2
    return run(argv)


if __name__ == "__main__":
    raise SystemExit(main())
