"""Reports on trained models.

    python -m pbe.report small [--model DIR] [--edits 200] [--out docs/small_model]
    python -m pbe.report ablation --model small=DIR --model small_no_bottleneck=DIR ... [--out docs/small_model]
    python -m pbe.report objects --data DIR [--model DIR] [--run RUN_DIR] [--edits 200] [--out docs/objects_model]
    python -m pbe.report objects-ablation --data DIR --model full=RUN/checkpoints/step_0002000.ckpt --model NAME=DIR ...

`small`: scores the small model (default: the committed one, `pbe.assets.small_model_path()`) on held-out synthetic
edits and writes small_report.md / .json and small_edits.png. `ablation`: the same edits for several models, a
table (ablation.md / .json) and figures with one column per model (ablation_edits.png, ablation_copy_paste.png).
What each number means: `pbe.recipes.small.evaluate`.
`objects`: scores the objects model (default: the committed one, `pbe.assets.objects_model_path()`) on held-out
objects in held-out photos, judged by a separately trained judge (trained first when `--judge` is not there), and
with `--run` the identity figures of every checkpoint of that recipe run; writes objects_table.md / objects_report.json
and heldout_edits_*.png. What each number means: `pbe.recipes.objects.evaluate`.
`objects-ablation`: the objects models given (a model folder, or a recipe run's `.ckpt`) on the same held-out edits,
with paired differences against the first (`pbe.recipes.objects.ablation`); writes objects_ablation.md / .json and
objects_ablation_edits.png (default --out docs/objects_model/ablation).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from pbe.recipes.small.evaluate import GenerationSettings


def parse_models(items: list[str]) -> dict[str, str]:
    models = {}
    for item in items:
        name, sep, path = item.partition("=")
        if not sep or not name or not path:
            raise ValueError(f"--model {item!r}: expected NAME=DIR")
        if not Path(path).exists():
            raise FileNotFoundError(f"--model {name}: not found: {path}")
        models[name] = path
    return models


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m pbe.report", description=__doc__.split("\n")[0])
    parser.add_argument("what", choices=["small", "ablation", "objects", "objects-ablation"])
    parser.add_argument("--data", help="objects: the folder of `python -m pbe.data.fetch objects DIR`")
    parser.add_argument("--run", help="objects: a recipe run folder, to score each of its checkpoints too")
    parser.add_argument(
        "--judge",
        default="docs/objects_model/judge.safetensors",
        help="objects: the judge's weights (trained there first when missing)",
    )
    parser.add_argument(
        "--curve-edits", type=int, default=100, help="objects: edits per checkpoint with --run"
    )
    parser.add_argument(
        "--curve-every", type=int, default=1, help="objects: the checkpoints whose step is a multiple of this"
    )
    parser.add_argument(
        "--model",
        action="append",
        default=[],
        help="small / objects: DIR; ablation: NAME=DIR, objects-ablation: NAME=DIR or NAME=RUN/checkpoints/X.ckpt (repeat)",
    )
    parser.add_argument("--edits", type=int, default=200, help="held-out edits (default 200)")
    parser.add_argument(
        "--copy-edits", type=int, default=100, help="same-class edits for copy-paste (default 100)"
    )
    parser.add_argument(
        "--mask-scenes", type=int, default=50, help="scenes for generate_mask IoU (default 50)"
    )
    parser.add_argument(
        "--cache",
        help="objects-ablation: keep each model's figures here and reuse them (same path, edits, settings)",
    )
    parser.add_argument("--steps", type=int, default=25, help="DDIM steps (default 25)")
    parser.add_argument("--guidance", type=float, default=5.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--out", help="output folder (default docs/small_model, or docs/objects_model for objects)"
    )
    args = parser.parse_args(argv)
    if args.edits < 1 or args.copy_edits < 1 or args.steps < 1 or args.mask_scenes < 0:
        parser.error("--edits, --copy-edits and --steps must be >= 1, --mask-scenes >= 0")
    torch.set_num_threads(max(1, torch.get_num_threads()))
    settings = GenerationSettings(steps=args.steps, guidance=args.guidance, seed=args.seed)
    default_out = {"objects": "docs/objects_model", "objects-ablation": "docs/objects_model/ablation"}
    out = Path(args.out or default_out.get(args.what, "docs/small_model"))
    try:
        if args.what.startswith("objects") and (
            not args.data or not (Path(args.data) / "manifest.jsonl").is_file()
        ):
            raise FileNotFoundError(
                f"--data: {args.data!r} is not a fetched objects folder (no manifest.jsonl); "
                "get one with `python -m pbe.data.fetch objects DIR`"
            )
        if args.what == "objects-ablation":
            from pbe.recipes.objects.ablation import ablation_table, run_objects_ablation
            from pbe.recipes.objects.evaluate import Settings

            settings = Settings(steps=args.steps, guidance=args.guidance, seed=args.seed)
            scores = run_objects_ablation(
                parse_models(args.model), args.data, args.judge, out, args.edits, settings, args.cache
            )
            print(ablation_table(scores))
        elif args.what == "objects":
            from pbe.recipes.objects.evaluate import Settings
            from pbe.recipes.objects.scorecard import objects_table, run_objects_report

            if len(args.model) > 1:
                raise ValueError("objects: give at most one --model DIR")
            if args.run and not (Path(args.run) / "checkpoints").is_dir():
                raise FileNotFoundError(f"--run: {args.run} has no checkpoints/ folder (a recipe run folder)")
            from pbe.assets import objects_model_path

            model = args.model[0] if args.model else objects_model_path()
            if not Path(model).exists():
                raise FileNotFoundError(f"--model: not found: {model}")
            settings = Settings(steps=args.steps, guidance=args.guidance, seed=args.seed)
            scores = run_objects_report(
                model,
                args.data,
                out,
                args.judge,
                args.edits,
                settings,
                args.mask_scenes,
                args.run,
                args.curve_edits,
                args.curve_every,
            )
            print(objects_table(scores))
        elif args.what == "small":
            from pbe.assets import small_model_path
            from pbe.recipes.small.scorecard import run_small_report, small_table

            if len(args.model) > 1:
                raise ValueError("small: give at most one --model DIR")
            model = args.model[0] if args.model else small_model_path()
            if not Path(model).exists():
                raise FileNotFoundError(f"--model: not found: {model}")
            scores = run_small_report(model, out, args.edits, args.copy_edits, settings, args.mask_scenes)
            print(small_table(scores))
        else:
            from pbe.recipes.small.scorecard import ablation_table, run_ablation_report

            models = parse_models(args.model)
            if not models:
                raise ValueError("ablation: give the models as --model NAME=DIR (at least one)")
            scores = run_ablation_report(models, out, args.edits, args.copy_edits, settings)
            print(f"shape classifier accuracy on real crops: {scores['classifier_accuracy']:.3f}")
            print(ablation_table(scores["models"]))
    except (ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    print(f"written to {out}/")
    return scores


if __name__ == "__main__":
    main()
