"""Prune a synthetic batch of two videos with Visual SharpV and print what was kept.

Runs on CPU (vectorized PyTorch path) or, when available, on a CUDA GPU (Triton kernels).
"""

from __future__ import annotations

import torch

from sharpv_kernels import visual_prune


def synthetic_video(frames: int, f: int, d: int, seed: int) -> torch.Tensor:
    """A static scene with a moving object and a scene cut two thirds of the way in."""
    g = torch.Generator().manual_seed(seed)
    scene, other = torch.randn(f, d, generator=g), torch.randn(f, d, generator=g)
    video = scene.repeat(frames, 1, 1)
    for t in range(frames):
        video[t, (3 * t) % f : (3 * t) % f + 4] += 2.0 * torch.randn(4, d, generator=g)
    video[2 * frames // 3 :] = other
    return video


def main() -> None:
    device = "cuda" if torch.cuda.is_available() else "cpu"
    a, b = synthetic_video(12, 196, 896, seed=0), synthetic_video(8, 196, 896, seed=1)
    features = torch.cat([a, b]).to(device=device, dtype=torch.bfloat16)
    out = visual_prune(features, cu_frames=[0, 12, 20])
    print(f"device: {device}; input {tuple(features.shape)} -> kept {tuple(out.tokens.shape)}")
    cu = out.cu_tokens.tolist()
    for v in range(len(cu) - 1):
        print(f"video {v}: kept {cu[v + 1] - cu[v]} tokens")
    print("per-frame keep ratio r_t:", [round(r, 3) for r in out.ratios.tolist()])
    print("per-frame kept tokens:  ", out.counts.tolist())
    vr = out.tokens.shape[0] / (features.shape[0] * features.shape[1])
    print(f"VR (visual tokens kept / in): {vr:.1%}")


if __name__ == "__main__":
    main()
