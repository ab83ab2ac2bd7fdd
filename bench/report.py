"""Markdown tables and PNG plots from benchmark JSON files (``python -m bench report``).

    python -m bench report bench/results/ops-cpu-*.json bench/results/e2e-cpu-*.json \
        --out-dir docs/img

For every file it writes ``<out-dir>/<file stem>.md`` (the table with the device, versions
and the command that made it) and ``<out-dir>/<file stem>.png``, and prints the markdown.
Nothing is measured here: every figure comes from the JSON.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

PROVIDER_ORDER = ("naive", "eager", "compiled", "gather", "sharpv")
METHOD_LABELS = {
    "dense": "dense",
    "sharpv_adaptive": "SharpV (Adaptive)",
    "sharpv_manual": "SharpV (Manual, K=1.6)",
    "uniform": "uniform (ratio at SharpV's VR)",
    "random_per_frame": "V-Random† (per frame)",
    "random_video": "V-Random* (whole video)",
    "evs": "EVS (rate 1 - VR)",
    "dycoke_ttm_0.7": "DyCoke TTM (K=0.7)",
    "dycoke_ttm_0.5": "DyCoke TTM (K=0.5)",
    "fastv": "FastV (K=3, 30 %)",
}


def _env_line(payload: dict[str, Any]) -> str:
    env = payload.get("env", {})
    parts = [
        f"device `{env.get('device_name', env.get('device', '?'))}`",
        f"torch {env.get('torch', '?')}",
        f"triton {env.get('triton', '?')}",
    ]
    if "transformers" in env:
        parts.append(f"transformers {env['transformers']}")
    if "cpu_threads" in env:
        parts.append(f"{env['cpu_threads']} CPU threads")
    if env.get("cuda"):
        parts.append(f"CUDA {env['cuda']}, driver {env.get('driver', '?')}")
    parts.append(f"commit `{str(env.get('git_commit', '?'))[:12]}`")
    parts.append(f"{env.get('date_utc', '?')}")
    return "; ".join(parts)


def _ms(s: float | None) -> str:
    return "n/a" if s is None else f"{s * 1e3:.3f}"


def ops_markdown(payload: dict[str, Any]) -> str:
    """One table over every (op, case): time per provider, GB/s, speed-up of ``sharpv``."""
    rows = payload["rows"]
    bw = payload.get("copy_bw_bytes_per_s")
    lines = [
        f"Command: `{payload.get('command', '?').strip()}`  ",
        f"Environment: {_env_line(payload)}  ",
        "Copy bandwidth: "
        + (f"{bw / 1e9:.0f} GB/s (device-to-device, measured)" if bw else "not measured (CPU)"),
        "",
        "| op | case | provider | median ms | min ms | reps | bytes floor | GB/s"
        + (" | % copy bw" if bw else "")
        + " | x vs eager |",
        "|---|---|---|---:|---:|---:|---:|---:" + ("|---:" if bw else "") + "|---:|",
    ]
    eager = {
        (r["op"], r["case"]): r["median_s"]
        for r in rows
        if r.get("provider") == "eager" and "median_s" in r
    }
    order = {p: i for i, p in enumerate(PROVIDER_ORDER)}
    seen: list[tuple[str, str]] = []
    for r in rows:
        if (r["op"], r["case"]) not in seen:
            seen.append((r["op"], r["case"]))
    for op, case in seen:
        group = sorted(
            (r for r in rows if (r["op"], r["case"]) == (op, case)),
            key=lambda r: order.get(r["provider"], 99),
        )
        for r in group:
            if "error" in r:
                err = " ".join(r["error"].split()).replace("|", "/")[:80]
                lines.append(f"| {op} | {case} | {r['provider']} | error: `{err}` |")
                continue
            e = eager.get((op, case))
            x = f"{e / r['median_s']:.2f}" if e else ""
            pct = f" | {r['pct_of_copy_bw']:.1f}" if bw else ""
            lines.append(
                f"| {op} | {case} | {r['provider']} | {_ms(r['median_s'])} | {_ms(r['min_s'])} "
                f"| {r['reps']} | {r['bytes_floor']:,} | {r['gbps']:.2f}{pct} | {x} |"
            )
    return "\n".join(lines) + "\n"


def e2e_markdown(payload: dict[str, Any]) -> str:
    """Table 3's efficiency columns per (model, frames, batch), then the goals."""
    rows = payload["rows"]
    preset = payload.get("preset", {})
    lines = [
        f"Command: `{payload.get('command', '?')}` (wall time {payload.get('wall_s', 0):.0f} s)  ",
        f"Environment: {_env_line(payload)}  ",
        f"Model: {payload.get('note', '')}; {preset.get('new_tokens', '?')} new tokens, "
        f"median of {preset.get('repeats', '?')} run(s).",
        "",
    ]
    keys: list[tuple[str, int, int, int]] = []
    for r in rows:
        k = (r["model"], r["layers"], r["frames"], r["batch"])
        if k not in keys:
            keys.append(k)
    for model, layers, frames, batch in keys:
        group = [
            r for r in rows if (r["model"], r["layers"], r["frames"], r["batch"]) ==
            (model, layers, frames, batch)
        ]  # fmt: skip
        dense = next((r for r in group if r["method"] == "dense"), None)
        lines += [
            f"**{model}, {layers} decoder layers, {frames} frames x 196 tokens, batch {batch}**",
            "",
            "| method | VR | MR | token budget | LLM prompt tokens | TTFT ms (x dense) "
            "| TPOT ms | peak mem MiB | prune ms (% TTFT) | prefill TFLOPs run / full depth |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for r in group:
            sp = f" ({dense['ttft_s'] / r['ttft_s']:.2f}x)" if dense else ""
            share = r.get("prune_share_of_ttft") or 0.0
            lines.append(
                f"| {METHOD_LABELS.get(r['method'], r['method'])} | {r['VR']:.1%} | {r['MR']:.1%} "
                f"| {r['token_budget']:.1%} | {max(r['prompt_tokens_llm'])} "
                f"| {r['ttft_s'] * 1e3:.0f}{sp} | {r['tpot_s'] * 1e3:.1f} "
                f"| {r['peak_mem_bytes'] / 2**20:.0f} | {r['prune_s'] * 1e3:.1f} ({share:.1%}) "
                f"| {r['prefill_tflops']:.3f} / {r['prefill_tflops_full_depth']:.2f} |"
            )
        lines.append("")
    if payload.get("goals"):
        lines += [
            "Goals at SharpV's adaptive budget (TTFT >= 1.65x dense; TPOT below dense; "
            "pruning < 2 % of TTFT):",
            "",
            "| model | frames | batch | TTFT speed-up | TPOT adaptive / dense | pruning share |",
            "|---|---:|---:|---:|---:|---:|",
        ]
        for g in payload["goals"]:
            lines.append(
                f"| {g['model']} | {g['frames']} | {g['batch']} "
                f"| {g['ttft_speedup']:.2f}x {'met' if g['ttft_goal_1.65x'] else 'missed'} "
                f"| {g['tpot_ratio']:.2f} {'met' if g['tpot_better'] else 'missed'} "
                f"| {g['prune_share']:.1%} {'met' if g['prune_under_2pct'] else 'missed'} |"
            )
    return "\n".join(lines) + "\n"


def ops_plot(payload: dict[str, Any], path: Path) -> Path:
    """Horizontal bars of the median time per (op, case), one bar per provider, log scale."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in payload["rows"] if "median_s" in r]
    groups: list[tuple[str, str]] = []
    for r in rows:
        if (r["op"], r["case"]) not in groups:
            groups.append((r["op"], r["case"]))
    providers = [p for p in PROVIDER_ORDER if any(r["provider"] == p for r in rows)]
    h = 0.8 / max(len(providers), 1)
    fig, ax = plt.subplots(figsize=(9, 0.55 * len(groups) * max(len(providers), 2) * 0.45 + 1.5))
    for j, p in enumerate(providers):
        ys, xs = [], []
        for i, g in enumerate(groups):
            r = next((r for r in rows if (r["op"], r["case"]) == g and r["provider"] == p), None)
            if r is not None:
                ys.append(i + j * h)
                xs.append(r["median_s"] * 1e3)
        ax.barh(ys, xs, height=h, label=p)
    ax.set_yticks([i + 0.4 - h / 2 for i in range(len(groups))])
    ax.set_yticklabels([f"{o}\n{c}" for o, c in groups], fontsize=7)
    ax.invert_yaxis()
    ax.set_xscale("log")
    ax.set_xlabel("median time (ms, log scale)")
    env = payload.get("env", {})
    ax.set_title(f"sharpv ops on {env.get('device_name', env.get('device'))}", fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def e2e_plot(payload: dict[str, Any], path: Path) -> Path:
    """TTFT per method and frame count (batch 1 and the others as separate panels)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = payload["rows"]
    batches = sorted({r["batch"] for r in rows})
    methods = list(dict.fromkeys(r["method"] for r in rows))
    fig, axes = plt.subplots(1, len(batches), figsize=(6 * len(batches), 4.5), squeeze=False)
    for ax, b in zip(axes[0], batches, strict=True):
        frames = sorted({r["frames"] for r in rows if r["batch"] == b})
        w = 0.8 / max(len(methods), 1)
        for j, m in enumerate(methods):
            xs, ys = [], []
            for i, fr in enumerate(frames):
                r = next(
                    (r for r in rows if (r["batch"], r["frames"], r["method"]) == (b, fr, m)),
                    None,
                )
                if r is not None:
                    xs.append(i + j * w)
                    ys.append(r["ttft_s"])
            ax.bar(xs, ys, width=w, label=METHOD_LABELS.get(m, m))
        ax.set_xticks([i + 0.4 - w / 2 for i in range(len(frames))])
        ax.set_xticklabels([f"{fr} frames" for fr in frames])
        ax.set_ylabel("TTFT (s)")
        ax.set_title(f"batch {b}", fontsize=9)
    axes[0][-1].legend(fontsize=6)
    env = payload.get("env", {})
    fig.suptitle(
        f"{rows[0]['model']} ({rows[0]['layers']} layers, random weights) on "
        f"{env.get('device_name', env.get('device'))}",
        fontsize=9,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def render(path: Path, out_dir: Path) -> tuple[str, Path, Path]:
    """Write ``<stem>.md`` and ``<stem>.png`` for one result file; returns (md, md_path, png)."""
    payload = json.loads(path.read_text())
    kind = payload.get("kind") or ("e2e" if "goals" in payload else "ops")
    out_dir.mkdir(parents=True, exist_ok=True)
    md = ops_markdown(payload) if kind == "ops" else e2e_markdown(payload)
    md = f"Source: `{path.as_posix()}`  \n" + md
    md_path = out_dir / f"{path.stem}.md"
    md_path.write_text(md)
    png = out_dir / f"{path.stem}.png"
    (ops_plot if kind == "ops" else e2e_plot)(payload, png)
    return md, md_path, png


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench report", description=__doc__.split("\n\n")[0])
    p.add_argument("files", nargs="+", type=Path, help="result JSON files")
    p.add_argument("--out-dir", type=Path, default=None, help="default: beside each file")
    args = p.parse_args(argv)
    for f in args.files:
        md, md_path, png = render(f, args.out_dir or f.parent)
        print(md)
        print(f"wrote {md_path} and {png}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
