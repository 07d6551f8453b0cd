"""Peak memory of one full-size Paint-by-Example training step at batch 1 (512x512 images, 224x224 exemplar).

Every trained parameter (UNet, mapper, final norm, projection, unconditional vector: ~866 M) is in AdamW; the VAE and
the CLIP tower are frozen. Measures the peak CUDA allocation on a GPU, else the process's peak RSS on the CPU, for
fp32 and bf16-mixed, with and without gradient checkpointing (optionally with the frozen parts stored in bf16).
Each row runs in its own process (peaks do not mix; one row running out of memory does not stop the others).

    python bench/train_memory.py                      # every row, one after the other, then the table
    python bench/train_memory.py --rows bf16-mixed:ckpt bf16-mixed:ckpt:frozen-bf16
    python bench/train_memory.py --limit-gb 20        # a CPU row that needs more address space fails cleanly
    python bench/train_memory.py --activations-only   # for a box without RAM for the whole step (see below)

`--activations-only` (CPU): each gradient is dropped the moment it is accumulated and the optimizer does not step, so
the process only holds the weights and the activations; the peak of a real step is then that measured peak plus the
exact sizes of the gradients and of AdamW's two fp32 states (allocated before the next backward, so they coexist with
the activations from the second step on). A row on this 2-core CPU takes minutes (run it under `nice`).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from contextlib import nullcontext

GB = 1024**3
ROWS = ("32:no-ckpt", "32:ckpt", "bf16-mixed:no-ckpt", "bf16-mixed:ckpt", "bf16-mixed:ckpt:frozen-bf16")


def parse_row(row: str) -> tuple[str, bool, bool]:
    parts = row.split(":")
    if parts[0] not in ("32", "bf16-mixed") or len(parts) < 2 or parts[1] not in ("ckpt", "no-ckpt"):
        raise ValueError(
            f"row {row!r}: expected PRECISION:ckpt|no-ckpt[:frozen-bf16], PRECISION 32 or bf16-mixed"
        )
    return parts[0], parts[1] == "ckpt", "frozen-bf16" in parts[2:]


def peak_rss_gb() -> float:
    """VmHWM: the peak resident set since the last `reset_peak_rss` (or since the start)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024 / GB
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / GB


def current_rss_gb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024 / GB
    return 0.0


def reset_peak_rss() -> None:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # Linux: reset VmHWM to the current RSS
    except OSError:
        pass


def run_row(
    row: str, threads: int, activations_only: bool = False, config: dict | None = None, image_size: int = 512
) -> dict:
    import torch

    from pbe.training.module import PaintByExampleModule

    precision, checkpointing, frozen_bf16 = parse_row(row)
    torch.set_num_threads(threads)
    cuda = torch.cuda.is_available()
    device = torch.device("cuda" if cuda else "cpu")
    model_cfg = {
        "config": config or {},
        "gradient_checkpointing": checkpointing,
        "frozen_dtype": "bf16" if frozen_bf16 else None,
    }
    module = PaintByExampleModule(model_cfg, seed=0).to(device)
    module.train()
    optimizer = module.configure_optimizers()["optimizer"]
    trained = [p for g in optimizer.param_groups for p in g["params"]]
    all_params = list(module.model.parameters())
    g = torch.Generator().manual_seed(0)
    size, ex = image_size, module.model.encoder.config.vision.image_size
    mask = torch.ones(1, 1, size, size)
    mask[..., size // 4 : 3 * size // 4, 5 * size // 16 : 11 * size // 16] = 0
    batch = {
        "image": (torch.rand(1, 3, size, size, generator=g) * 2 - 1).to(device),
        "mask": mask.to(device),
        "exemplar": torch.randn(1, 3, ex, ex, generator=g).to(device),
    }
    activations_only = activations_only and not cuda
    if activations_only:
        for p in trained:
            p.register_post_accumulate_grad_hook(lambda p: setattr(p, "grad", None))
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    else:
        reset_peak_rss()
    before = torch.cuda.memory_allocated() / GB if cuda else current_rss_gb()
    bf16 = precision == "bf16-mixed"
    # cache_enabled=False as in Lightning's MixedPrecision plugin (no bf16 copies of the weights kept for the step)
    autocast = (
        torch.autocast(device.type, dtype=torch.bfloat16, cache_enabled=False) if bf16 else nullcontext()
    )
    t0 = time.perf_counter()
    draws = module.draw(1, module.latent_shape(batch["image"]))
    with autocast:
        loss, _ = module.losses(batch, draws)
    loss.backward()
    if not activations_only:
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    seconds = time.perf_counter() - t0
    peak = torch.cuda.max_memory_allocated() / GB if cuda else peak_rss_gb()
    grads_gb = sum(p.numel() * 4 for p in trained) / GB
    adamw_gb = sum(2 * p.numel() * 4 for p in trained) / GB
    return {
        "measured": "weights + activations (grads dropped)" if activations_only else "whole step",
        "step_peak_gb": round(peak + grads_gb + adamw_gb if activations_only else peak, 2),
        "row": row,
        "device": "cuda" if cuda else "cpu",
        "peak_gb": round(peak, 2),
        "before_step_gb": round(before, 2),
        "params_gb": round(sum(p.numel() * p.element_size() for p in all_params) / GB, 2),
        "trained_params": sum(p.numel() for p in trained),
        "grads_gb": round(grads_gb, 2),
        "adamw_gb": round(adamw_gb, 2),
        "seconds": round(seconds, 1),
        "loss": round(float(loss), 4),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rows", nargs="+", default=list(ROWS), help=f"rows to run (default: {' '.join(ROWS)})")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument(
        "--limit-gb", type=float, default=None, help="CPU: cap each row's address space (RLIMIT_AS)"
    )
    p.add_argument("--image-size", type=int, default=512)
    p.add_argument("--config", default="{}", help="JSON overrides of the model config (default: full size)")
    p.add_argument("--activations-only", action="store_true", help="CPU: see the module docstring")
    p.add_argument("--one", default=None, help=argparse.SUPPRESS)  # internal: run one row in this process
    args = p.parse_args(argv)
    if args.one:
        if args.limit_gb:
            cap = int(args.limit_gb * GB)
            resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
        print(
            json.dumps(
                run_row(
                    args.one, args.threads, args.activations_only, json.loads(args.config), args.image_size
                )
            ),
            flush=True,
        )
        return 0
    for row in args.rows:
        parse_row(row)  # bad rows fail before any work
    results = []
    for row in args.rows:
        cmd = [sys.executable, __file__, "--one", row, "--threads", str(args.threads)]
        if args.limit_gb:
            cmd += ["--limit-gb", str(args.limit_gb)]
        if args.activations_only:
            cmd.append("--activations-only")
        cmd += ["--config", args.config, "--image-size", str(args.image_size)]
        print(f"running {row} ...", file=sys.stderr, flush=True)
        out = subprocess.run(cmd, capture_output=True, text=True)
        lines = [line for line in out.stdout.splitlines() if line.startswith("{")]
        if out.returncode == 0 and lines:
            results.append(json.loads(lines[-1]))
        else:
            reason = (out.stderr.strip().splitlines() or [f"exit code {out.returncode}"])[-1]
            if out.returncode < 0:
                reason = f"killed by signal {-out.returncode} (out of memory?)"
            results.append({"row": row, "error": reason[:120]})
        print(json.dumps(results[-1]), file=sys.stderr, flush=True)
    header = f"{'row':<30} {'device':<6} {'step peak GB':>12} {'measured GB':>11} {'weights':>7} {'grads':>6}"
    print(header + f" {'AdamW':>6} {'activ.':>6} {'s/step':>7}")
    for r in results:
        if "error" in r:
            print(f"{r['row']:<30} failed: {r['error']}")
            continue
        activations = r["peak_gb"] - r["before_step_gb"]  # what the step added to the resident weights
        print(
            f"{r['row']:<30} {r['device']:<6} {r['step_peak_gb']:>12.2f} {r['peak_gb']:>11.2f} "
            f"{r['params_gb']:>7.2f} {r['grads_gb']:>6.2f} {r['adamw_gb']:>6.2f} {activations:>6.2f} {r['seconds']:>7.1f}"
        )
    if any(r.get("measured", "").startswith("weights") for r in results):
        print(
            "step peak = measured (weights + activations, gradients dropped as they arrive) + grads + AdamW states"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
