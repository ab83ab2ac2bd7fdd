"""SharpV statistics in lmms-eval: one record per logged sample, means per task for the run.

The record of a sample is :meth:`sharpv.stats.SampleStats.to_dict` (VR, MR, token budget,
per-frame keep ratios and counts, Memory SharpV's per-layer similarities and dropped layers)
plus the method that produced it. The dense model keeps every token: VR = MR = token
budget = 1.

:func:`throughput_metrics` names the numbers handed to lmms-eval's metric log once per
sample; lmms-eval averages every name over the entries that carry it, so the run's
``throughput`` summary holds ``avg_sharpv_VR`` (all samples) and ``avg_sharpv_VR/<task>``
(the samples of one task), and the same for ``MR`` and ``token_budget``.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from ...stats import SampleStats

__all__ = ["RATIO_KEYS", "sample_record", "dense_record", "throughput_metrics", "TaskMeans"]

#: Ratios averaged over samples and reported next to the scores (the paper's Table 3).
RATIO_KEYS = ("VR", "MR", "token_budget")


def sample_record(stats: SampleStats, method: str) -> dict[str, Any]:
    """JSON-friendly statistics of one pruned sample.

    Args:
        stats: the sample's entry of ``model.sharpv_stats``.
        method: ``"sharpv"`` or the baseline's name.

    Examples:
        >>> import torch
        >>> s = SampleStats(torch.tensor([0.5, 1.0]), torch.tensor([2, 4]), torch.tensor([4, 4]))
        >>> r = sample_record(s, "sharpv")
        >>> r["VR"], r["MR"], r["token_budget"], r["frame_ratios"]
        (0.75, 1.0, 0.75, [0.5, 1.0])
    """
    return {"method": method, **stats.to_dict()}


def dense_record() -> dict[str, Any]:
    """Record of a dense (unpruned) sample: every ratio is 1.

    Examples:
        >>> dense_record()["token_budget"]
        1.0
    """
    return {"method": "dense", "VR": 1.0, "MR": 1.0, "token_budget": 1.0, "frame_ratios": None}


def throughput_metrics(record: dict[str, Any], task: str) -> dict[str, float]:
    """Numbers of one sample for lmms-eval's metric log (see the module docstring).

    Examples:
        >>> throughput_metrics(dense_record(), "t")["sharpv_MR/t"]
        1.0
    """
    out: dict[str, float] = {}
    for key in RATIO_KEYS:
        value = float(record[key])
        out[f"sharpv_{key}"] = value
        out[f"sharpv_{key}/{task}"] = value
    return out


class TaskMeans:
    """Running means of :data:`RATIO_KEYS` per task, for the summary line in the log.

    Examples:
        >>> m = TaskMeans()
        >>> m.add("a", {"VR": 0.5, "MR": 1.0, "token_budget": 0.5})
        >>> m.add("a", {"VR": 0.3, "MR": 0.5, "token_budget": 0.15})
        >>> round(m.means()["a"]["VR"], 6), m.means()["a"]["samples"]
        (0.4, 2)
    """

    def __init__(self) -> None:
        self._sums: dict[str, dict[str, float]] = defaultdict(
            lambda: dict.fromkeys(RATIO_KEYS, 0.0)
        )
        self._counts: dict[str, int] = defaultdict(int)

    def add(self, task: str, record: dict[str, Any]) -> None:
        """Count one sample of ``task``."""
        sums = self._sums[task]
        for key in RATIO_KEYS:
            sums[key] += float(record[key])
        self._counts[task] += 1

    def means(self) -> dict[str, dict[str, float]]:
        """``{task: {"VR": ..., "MR": ..., "token_budget": ..., "samples": n}}``."""
        out = {}
        for task, sums in self._sums.items():
            n = self._counts[task]
            out[task] = {**{k: v / n for k, v in sums.items()}, "samples": n}
        return out

    def lines(self) -> list[str]:
        """One human-readable line per task, then the mean over tasks (the paper's average
        over datasets)."""
        means = self.means()
        out = [
            f"{task}: VR {m['VR']:.1%}  MR {m['MR']:.1%}  token budget {m['token_budget']:.1%}"
            f"  ({m['samples']} samples)"
            for task, m in means.items()
        ]
        if len(means) > 1:
            avg = {k: sum(m[k] for m in means.values()) / len(means) for k in RATIO_KEYS}
            out.append(
                f"mean over {len(means)} tasks: VR {avg['VR']:.1%}  MR {avg['MR']:.1%}  "
                f"token budget {avg['token_budget']:.1%}"
            )
        return out
