"""One full-size UNet call, pbe vs diffusers, on identical random weights, side by side in one process.

SD v1 UNet with Paint by Example's 9-channel input, batch 2 (a guided step: [uncond; exemplar] context of one token
each), latents 32x32 and 64x64, fp32 and bf16. Variants, timed in interleaved rounds (each round runs every variant
once, in rotating order, plus a large GEMM that measures what the machine gives right then), medians reported:

- diffusers: `UNet2DConditionModel(cat([x, x, cond]), t, context)`, its default SDPA attention processor;
- pbe: `unet(cat(...), t, context)` with the default exact speedups (single-token cross-attention);
- pbe prepared: the pipeline's call, `unet(x, t, prepared=unet.prepare(cond, context))` (per-edit constants and the
  guidance halves' shared prefix; `prepare` itself runs once per edit and is timed separately);
- pbe NHWC: `pbe prepared` with the weights in channels_last (NHWC) layout (`PaintByExamplePipeline(
  channels_last=True)`, an option);
- diffusers NHWC: diffusers with the same channels_last weights and input (not its default either);
- pbe exact off (--exact-off): `unet(cat(...))` with every speedup off (the plain computation, for reference).

Each call's wall time and this process's CPU time are recorded; on a machine shared with other work the CPU time
ratio is the steadier one (it still counts OpenMP threads spinning while their partner is descheduled).

FLOPs per call come from torch.utils.flop_counter (matmuls, convolutions, attention). Output agreement: max |pbe -
diffusers| over the output, fp32 within 1e-3 expected; bf16 is compared with the fp32 result of each implementation.

    .venv/bin/python bench/unet_step.py [--sizes 32 64] [--dtypes fp32 bf16] [--rounds 5] [--threads 2]
        [--channels-last] [--compile] [--autocast]

`--profile N`: instead of timing, torch.profiler over one call of diffusers and of pbe prepared per size and dtype,
the top N ops by self CPU time (what the speedups were chosen from).

`--options-effect`: pbe alone, its prepared fp32 call eager vs channels_last vs bf16 autocast (vs torch.compile with
--compile), interleaved; lines `ratio option_<name>_<size> <time / eager fp32 time>`.

Last lines: `ratio unet_<dtype>_<size> <pbe prepared / diffusers>` (the headline: the pipeline's call vs diffusers'
UNet call, both in their default layout), `ratio unet_nhwc_... <pbe NHWC / diffusers NHWC>`, `ratio unet_plain_...`
and the CPU-time ratio of the headline.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time
from collections.abc import Callable

import torch
from torch.utils.flop_counter import FlopCounterMode, sdpa_flop_count

from pbe.checkpoints.diffusers_keys import unet_to_diffusers
from pbe.models import UNet, UNetConfig
from pbe.models.attention import speedups

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}
GEMM_N = 2048
TIMESTEP = 500


def diffusers_unet(config: UNetConfig):
    """diffusers' UNet2DConditionModel for this config, on the meta device (weights come from pbe's)."""
    from diffusers import UNet2DConditionModel

    with torch.device("meta"):
        return UNet2DConditionModel(
            sample_size=64,
            in_channels=config.in_channels,
            out_channels=config.out_channels,
            block_out_channels=config.channels,
            down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
            up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
            layers_per_block=config.num_res_blocks,
            attention_head_dim=config.num_heads,
            cross_attention_dim=config.context_dim,
        ).eval()


def share_weights(pbe_unet: UNet, ref) -> None:
    """Point diffusers' parameters at pbe's tensors (no copy: both read the same memory)."""
    ref.load_state_dict(unet_to_diffusers(pbe_unet.state_dict()), strict=True, assign=True)


def gemm_gflops(dtype: torch.dtype) -> Callable[[], float]:
    a, b = torch.randn(GEMM_N, GEMM_N, dtype=dtype), torch.randn(GEMM_N, GEMM_N, dtype=dtype)

    def run() -> float:
        t0 = time.perf_counter()
        torch.mm(a, b)
        return 2 * GEMM_N**3 / (time.perf_counter() - t0) / 1e9

    return run


def cpu_flash_attention_flops(query_shape, key_shape, value_shape, *args, **kwargs) -> int:
    """torch's flop counter has formulas for the CUDA attention kernels but not the CPU one SDPA uses here."""
    return sdpa_flop_count(query_shape, key_shape, value_shape)


def counted(fn: Callable[[], torch.Tensor]) -> tuple[torch.Tensor, int]:
    """fn's output and its FLOPs (torch's flop counter, with the CPU attention kernel added)."""
    mapping = {torch.ops.aten._scaled_dot_product_flash_attention_for_cpu: cpu_flash_attention_flops}
    counter = FlopCounterMode(display=False, custom_mapping=mapping)
    with counter:
        out = fn()
    return out, counter.get_total_flops()


def timed(fn: Callable[[], torch.Tensor]) -> tuple[float, float]:
    """(wall seconds, this process's CPU seconds) of one call."""
    t0, c0 = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - t0, time.process_time() - c0


def inputs(size: int, dtype: torch.dtype, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(1, 4, size, size, generator=g).to(dtype)
    cond = torch.randn(1, 5, size, size, generator=g).to(dtype).repeat(2, 1, 1, 1)
    context = torch.randn(2, 1, 768, generator=g).to(dtype)
    return x, cond, context


def plain_input(x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
    """The 9-channel input of a plain guided call: [x; x] with the constant channels."""
    return torch.cat([x.repeat(2, 1, 1, 1), cond], dim=1)


def bench_case(unet: UNet, ref, size: int, dtype: torch.dtype, args, unet_nhwc=None, ref_nhwc=None) -> dict:
    """`unet_nhwc` / `ref_nhwc`: the same weights in channels_last layout (the pipeline's default on CPU)."""
    x, cond, context = inputs(size, dtype)
    full = plain_input(x, cond)
    if args.channels_last:
        full = full.contiguous(memory_format=torch.channels_last)
    t = torch.tensor(TIMESTEP)
    pbe_call = torch.compile(unet) if args.compile else unet
    ref_call = torch.compile(ref) if args.compile else ref
    autocast = torch.autocast("cpu", dtype=torch.bfloat16, enabled=args.autocast)

    t0 = time.perf_counter()
    with torch.no_grad(), autocast:
        prepared = unet.prepare(cond, context)
    prepare_s = time.perf_counter() - t0

    def off():
        with speedups(
            single_token_attention=False, precomputed_conditioning=False, shared_guidance_prefix=False
        ):
            return pbe_call(full, t, context)

    variants = {
        "diffusers": lambda: ref_call(full, t, encoder_hidden_states=context, return_dict=False)[0],
        "pbe": lambda: pbe_call(full, t, context),
        "pbe prepared": lambda: pbe_call(x, t, prepared=prepared),
    }
    if unet_nhwc is not None:
        full_nhwc = full.contiguous(memory_format=torch.channels_last)
        with torch.no_grad(), autocast:
            prepared_nhwc = unet_nhwc.prepare(cond, context)
        variants["diffusers NHWC"] = lambda: ref_nhwc(
            full_nhwc, t, encoder_hidden_states=context, return_dict=False
        )[0]
        variants["pbe NHWC"] = lambda: unet_nhwc(x, t, prepared=prepared_nhwc)
    if args.exact_off:
        variants["pbe exact off"] = off
    results = {name: {"times": [], "cpu": []} for name in variants}
    gemm = gemm_gflops(dtype)
    gemm_rates = []
    with torch.no_grad(), autocast:
        for name, fn in variants.items():  # first call: warm-up, FLOPs and the output
            if args.compile:
                fn()
            out, results[name]["flops"] = counted(fn)
            results[name]["out"] = out.float()
        for r in range(args.rounds):
            names = list(variants)
            names = names[r % len(names) :] + names[: r % len(names)]
            for name in names:
                wall, cpu = timed(variants[name])
                results[name]["times"].append(wall)
                results[name]["cpu"].append(cpu)
            gemm_rates.append(gemm())
    for res in results.values():
        res["median"] = statistics.median(res["times"])
        res["cpu_median"] = statistics.median(res["cpu"])
    return {"variants": results, "gemm": statistics.median(gemm_rates), "prepare_s": prepare_s}


def report(size: int, dtype_name: str, case: dict, reference: dict | None) -> list[str]:
    lines = []
    variants = case["variants"]
    base = variants["diffusers"]
    print(
        f"\n== latents {size}x{size}, batch 2, {dtype_name}; large GEMM ({GEMM_N}^3): {case['gemm']:.0f} GFLOP/s"
    )
    print(f"   pbe prepare (once per edit): {case['prepare_s'] * 1e3:.0f} ms")
    header = f"{'variant':<16}{'median s':>10}{'runs (s)':>34}{'ratio':>8}{'cpu s':>8}{'ratio':>7}"
    print(header + f"{'TFLOP':>8}{'GFLOP/s':>9}{'max|d|':>10}" + ("  vs fp32" if reference else ""))
    for name, res in variants.items():
        runs = " ".join(f"{s:.2f}" for s in res["times"])
        diff = (res["out"] - base["out"]).abs().max().item()
        line = (
            f"{name:<16}{res['median']:>10.2f}{runs:>34}{res['median'] / base['median']:>8.3f}"
            f"{res['cpu_median']:>8.2f}{res['cpu_median'] / base['cpu_median']:>7.3f}"
            f"{res['flops'] / 1e12:>8.3f}{res['flops'] / res['median'] / 1e9:>9.0f}{diff:>10.2e}"
        )
        if reference:
            line += f"  {(res['out'] - reference['variants'][name]['out']).abs().max().item():.2e}"
        print(line, flush=True)
    head = "pbe prepared"
    lines.append(f"ratio unet_{dtype_name}_{size} {variants[head]['median'] / base['median']:.3f}")
    if "diffusers NHWC" in variants:
        same = variants["pbe NHWC"]["median"] / variants["diffusers NHWC"]["median"]
        lines.append(f"ratio unet_nhwc_{dtype_name}_{size} {same:.3f}")
    lines.append(f"ratio unet_plain_{dtype_name}_{size} {variants['pbe']['median'] / base['median']:.3f}")
    cpu_ratio = variants[head]["cpu_median"] / base["cpu_median"]
    lines.append(f"ratio unet_cpu_time_{dtype_name}_{size} {cpu_ratio:.3f}")
    return lines


def compare_options(unet: UNet, size: int, args) -> list[str]:
    """pbe's prepared call in eager fp32 (contiguous) vs channels_last, bf16 autocast and, with --compile,
    torch.compile: interleaved rounds, medians, each option's time relative to plain eager."""
    x, cond, context = inputs(size, torch.float32)
    t = torch.tensor(TIMESTEP)
    cl = copy.deepcopy(unet).to(memory_format=torch.channels_last)
    with torch.no_grad():
        prepared = unet.prepare(cond, context)
        prepared_cl = cl.prepare(cond, context)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            autocast_prepared = unet.prepare(cond, context)

    def autocast_call():
        with torch.autocast("cpu", dtype=torch.bfloat16):
            return unet(x, t, prepared=autocast_prepared)

    options = {
        "eager fp32": lambda: unet(x, t, prepared=prepared),
        "channels_last": lambda: cl(x.contiguous(memory_format=torch.channels_last), t, prepared=prepared_cl),
        "bf16 autocast": autocast_call,
    }
    if args.compile:
        compiled = torch.compile(unet)
        options["torch.compile"] = lambda: compiled(x, t, prepared=prepared)
    times = {name: [] for name in options}
    with torch.no_grad():
        outs = {name: fn().float() for name, fn in options.items()}  # warm-up (and compilation)
        for r in range(args.rounds):
            names = list(options)[r % len(options) :] + list(options)[: r % len(options)]
            for name in names:
                times[name].append(timed(options[name])[0])
    base = statistics.median(times["eager fp32"])
    print(
        f"\n== pbe options, latents {size}x{size}, batch 2 (prepared call), {args.rounds} interleaved rounds"
    )
    lines = []
    for name, ts in times.items():
        med = statistics.median(ts)
        diff = (outs[name] - outs["eager fp32"]).abs().max().item()
        print(f"{name:<16}{med:>10.2f} s  x{med / base:.3f}  max|d| vs eager fp32 {diff:.2e}", flush=True)
        lines.append(f"ratio option_{name.replace(' ', '_').replace('.', '_')}_{size} {med / base:.3f}")
    return lines


def profile_case(unet: UNet, ref, size: int, dtype: torch.dtype, top: int) -> None:
    """torch.profiler over one call each (after a warm-up): the top ops by self CPU time, diffusers then pbe."""
    from torch.profiler import ProfilerActivity, profile

    x, cond, context = inputs(size, dtype)
    full, t = plain_input(x, cond), torch.tensor(TIMESTEP)
    with torch.no_grad():
        prepared = unet.prepare(cond, context)
        calls = {
            "diffusers": lambda: ref(full, t, encoder_hidden_states=context, return_dict=False)[0],
            "pbe prepared": lambda: unet(x, t, prepared=prepared),
        }
        for name, fn in calls.items():
            fn()
            with profile(activities=[ProfilerActivity.CPU]) as prof:
                wall, _ = timed(fn)
            print(f"\n== {name}, latents {size}x{size}, batch 2, {dtype}: {wall:.2f} s wall")
            print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=top))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[32, 64])
    parser.add_argument("--dtypes", nargs="+", choices=sorted(DTYPES), default=["fp32", "bf16"])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--channels-last", action="store_true", help="both models and inputs channels_last (no NHWC variants)"
    )
    parser.add_argument(
        "--no-nhwc", action="store_true", help="skip the channels_last variants (pbe NHWC, diffusers NHWC)"
    )
    parser.add_argument("--compile", action="store_true", help="torch.compile both (CPU inductor)")
    parser.add_argument("--autocast", action="store_true", help="fp32 weights under bf16 autocast (both)")
    parser.add_argument("--exact-off", action="store_true", help="also time pbe with every speedup off")
    parser.add_argument(
        "--options-effect",
        action="store_true",
        help="instead: pbe alone in eager fp32 vs channels_last, bf16 autocast (and torch.compile with --compile)",
    )
    parser.add_argument(
        "--profile",
        type=int,
        metavar="N",
        default=0,
        help="instead: torch.profiler over one call of each, the top N ops by self CPU time",
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    t0 = time.perf_counter()
    unet = UNet(UNetConfig()).eval().requires_grad_(False)
    ref = diffusers_unet(unet.config).requires_grad_(False)
    print(
        f"built the full-size UNet (859.5 M parameters) in {time.perf_counter() - t0:.0f} s; threads {args.threads}"
    )
    if args.options_effect:
        lines = [line for size in args.sizes for line in compare_options(unet, size, args)]
        print("\n" + "\n".join(lines))
        return
    if args.profile:
        for dtype_name in args.dtypes:
            unet.to(DTYPES[dtype_name])
            share_weights(unet, ref)
            for size in args.sizes:
                profile_case(unet, ref, size, DTYPES[dtype_name], args.profile)
        return
    options = [o for o in ("channels_last", "compile", "autocast") if getattr(args, o)]
    print("options: " + (", ".join(options) if options else "none (eager, contiguous)"))
    lines, fp32_cases = [], {}
    for dtype_name in sorted(args.dtypes, key=lambda d: d != "fp32"):  # fp32 first: the bf16 reference
        unet.to(DTYPES[dtype_name])
        if args.channels_last:
            unet.to(memory_format=torch.channels_last)
        share_weights(unet, ref)
        unet_nhwc = ref_nhwc = None
        if not (args.channels_last or args.no_nhwc):
            unet_nhwc = copy.deepcopy(unet).to(memory_format=torch.channels_last)
            ref_nhwc = diffusers_unet(unet.config).requires_grad_(False)
            share_weights(unet_nhwc, ref_nhwc)
        for size in args.sizes:
            case = bench_case(unet, ref, size, DTYPES[dtype_name], args, unet_nhwc, ref_nhwc)
            lines += report(size, dtype_name, case, fp32_cases.get(size) if dtype_name != "fp32" else None)
            if dtype_name == "fp32":
                fp32_cases[size] = case
    print()
    print("\n".join(lines))


if __name__ == "__main__":
    main()
