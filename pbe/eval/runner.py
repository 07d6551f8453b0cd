"""Edit every benchmark item (Lightning predict loop, one device or many), then score the results.

A run folder OUT holds `results/{id}.png` (one per item, written atomically: a PNG exists only when complete),
`meta/{id}.json` (its seed and seconds), `run_config.json` (what the results depend on, written once every input is
checked), and after scoring `results.json`, `per_item.json`, `table.md` and `contact_sheet.png`. A rerun with the same
OUT edits only the items whose PNG is missing (so an interrupted run resumes) and refuses an OUT holding results made
with another model or other generation settings. A folder without `run_config.json` was not written by a run: its
files are kept (an error before the model loads) unless `overwrite=true`, and result files in it are never taken as
done.

Determinism whatever the world size: items are cut into fixed batches in bench order (`batch_size`, default 1), batch
k belongs to rank k % world_size, and an item's noise comes from its own CPU generator seeded by
`item_seed(seed, id)`. With batch_size 1 an item's result equals
`pipe(image, mask, reference, generator=torch.Generator().manual_seed(item_seed(seed, id)))`.
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path

import lightning as L
import torch
from PIL import Image
from torch.utils.data import DataLoader
from torchvision.transforms import functional as tvF

from pbe import edit_options as opt
from pbe.checkpoints.formats import DTYPES, Checkpoint
from pbe.diffusion import check_steps_for
from pbe.eval.bench import BenchItem, item_seed, load_bench, meta_path, result_path
from pbe.eval.metrics import ClipConfig, normalize
from pbe.files import check_folder_writable, check_new_file, json_text, sha256_of, write_files, write_json

EXEMPLAR_MODES = ("authors", "clip")
RUN_CONFIG = "run_config.json"  # marks a folder that a pbe.eval run wrote
REPORT_FILES = ("results.json", "per_item.json", "table.md")  # and contact_sheet.png when contact_sheet > 0


@dataclass
class EditSettings:
    """What the edited images depend on (besides the model and the items); checked as sample.py checks the same
    options (pbe.edit_options), in pbe.eval's words where its messages always differed."""

    # each item's seed is derived from (seed, item id): see pbe.eval.bench.item_seed
    seed: int = opt.seed_option()
    steps: int = opt.steps_option(what="a positive integer")
    guidance: float = opt.guidance_option(what=">= 0")
    eta: float = 0.0
    sampler: str | None = opt.sampler_option()  # None: the checkpoint's own (PLMS for the released model)
    batch_size: int = opt.option(
        1, "items per pipeline call", partial(opt.integer, low=1, what="a positive integer")
    )
    dtype: str = opt.dtype_option()
    # authors: the reference stretched to the encoder's size (PIL resize) as the authors' test-bench loader does;
    # clip: CLIPImageProcessor preprocessing (short side, centre crop) as in diffusers
    exemplar: str = opt.option(
        "authors",
        "authors: the reference stretched as in the authors' loader; clip: CLIPImageProcessor crop",
        partial(opt.choice, valid=EXEMPLAR_MODES),
    )


EDIT_SCHEMA = "eval_edit_options"  # configs/eval.yaml's base in Hydra's ConfigStore: EditSettings' defaults
opt.register_schema(EDIT_SCHEMA, EditSettings)


@dataclass
class MetricSettings:
    compute: bool = True
    clip: ClipConfig = field(default_factory=ClipConfig)
    real: str | None = None  # folder of real images (already squared), or .npz with features or mu / sigma
    gmm: str | None = None  # mixture .npz (weights, means, covariances)


@dataclass
class EvalArgs:
    weights: Path
    bench: Path
    out: Path
    edit: EditSettings
    metrics: MetricSettings
    trainer: dict
    limit: int | None = None
    contact_sheet: int = 8
    progress: bool = True
    overwrite: bool = False  # replace report files in an OUT that no pbe.eval run wrote


def parse_args(cfg) -> EvalArgs:
    """Check the config (types and ranges) before anything heavy."""
    from omegaconf import OmegaConf

    values = OmegaConf.to_container(cfg, resolve=True) if not isinstance(cfg, dict) else dict(cfg)
    for key in ("weights", "bench"):
        if not values.get(key) or values[key] == "???":
            raise ValueError(f"{key} is required: pass {key}=PATH")
    edit = EditSettings(**opt.check_values(EditSettings, values))
    overwrite = values.get("overwrite", False)
    if not isinstance(overwrite, bool):
        raise ValueError(f"overwrite must be true or false, got {overwrite!r}")
    m = dict(values.get("metrics") or {})
    try:
        clip = ClipConfig(**(m.get("clip") or {}))
    except TypeError as e:
        raise ValueError(f"metrics.clip: {e}; valid keys: {sorted(asdict(ClipConfig()))}") from None
    metrics = MetricSettings(
        compute=bool(m.get("compute", True)), clip=clip, real=m.get("real"), gmm=m.get("gmm")
    )
    return EvalArgs(
        weights=Path(values["weights"]).expanduser(),
        bench=Path(values["bench"]).expanduser(),
        out=Path(values.get("out") or "outputs/eval").expanduser(),
        edit=edit,
        metrics=metrics,
        trainer=dict(values.get("trainer") or {}),
        limit=values.get("limit"),
        contact_sheet=int(values.get("contact_sheet", 8)),
        progress=bool(values.get("progress", True)),
        overwrite=overwrite,
    )


def read_checkpoint(weights: Path) -> Checkpoint:
    """The checkpoint's config, scheduler and memory-mapped tensors (no model is built), or a clear error."""
    from pbe.checkpoints.formats import load_checkpoint

    if not weights.exists():
        raise FileNotFoundError(f"weights: {weights} not found")
    try:
        return load_checkpoint(weights)
    except ValueError as e:
        raise ValueError(f"weights: {e}") from None


def min_image_side(ckpt: Checkpoint) -> int:
    """The smallest image side the pipeline edits: one latent pixel of the checkpoint's autoencoder."""
    return ckpt.config.vae.downsample_factor


# ----------------------------------------------------------------------------------------------- files


def report_paths(args: EvalArgs) -> list[Path]:
    sheet = ["contact_sheet.png"] if args.contact_sheet > 0 else []
    return [args.out / name for name in (*REPORT_FILES, *sheet)]


def input_paths(args: EvalArgs, items: list[BenchItem]) -> list[Path]:
    """Every file the run reads."""
    m = args.metrics
    given = [args.weights, args.bench, m.clip.weights, m.real, m.gmm]
    files = [Path(p).expanduser() for p in given if p is not None]
    return files + [p for i in items for p in (i.image, i.mask, i.reference)]


def check_out(args: EvalArgs, items: list[BenchItem]) -> None:
    """Before the model loads: OUT is (or can be made) a writable folder, no output would replace an input, and a
    folder that no pbe.eval run wrote keeps its files (`check_unrecorded_files`)."""
    out = args.out
    if out.exists() and not out.is_dir():
        raise ValueError(f"out: {out} is a file; name a folder for the run (e.g. out=outputs/eval/NAME)")
    check_folder_writable(out)
    per_item = [p for i in items for p in (result_path(out, i), meta_path(out, i))]
    refuse_inputs([out / RUN_CONFIG, *report_paths(args), *per_item], input_paths(args, items))
    if read_run_config(out) is None:
        check_unrecorded_files(args, per_item)


def refuse_inputs(outputs: list[Path], inputs: list[Path]) -> None:
    """No output is one of the inputs (compared by real path: links resolved)."""
    real = {os.path.realpath(p): p for p in inputs}
    for path in outputs:
        source = real.get(os.path.realpath(path))
        if source is not None:
            raise ValueError(f"out: {path} is an input ({source}); choose another out=")


def check_unrecorded_files(args: EvalArgs, per_item: list[Path]) -> None:
    """In a folder without a run record, result files are refused (nothing tells how they were made) and the
    report files pbe would write are replaced only with overwrite=true."""
    out = args.out
    foreign = [p for p in per_item if p.exists()]
    if foreign:
        raise FileExistsError(
            f"out: {out} holds result files that no pbe.eval run recorded (no {RUN_CONFIG}), e.g. {foreign[0]}; "
            "choose another out= (results of unknown origin must not be mixed in)"
        )
    taken = [p for p in report_paths(args) if p.exists() or p.is_symlink()]
    if taken and not args.overwrite:
        raise FileExistsError(
            f"out: {out} holds {', '.join(p.name for p in taken)}, which no pbe.eval run wrote (no {RUN_CONFIG}); "
            f"pass overwrite=true to replace {'it' if len(taken) == 1 else 'them'}, or choose another out="
        )
    for path in taken:
        check_new_file(path, overwrite=True)  # never a folder or a symbolic link


def read_run_config(out: Path) -> dict | None:
    """The run record in OUT (None when there is none); a run_config.json that pbe did not write is an error."""
    path = out / RUN_CONFIG
    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError):
        record = None
    if not isinstance(record, dict) or "model_sha256" not in record:
        raise ValueError(f"out: {path} is not a pbe.eval run record; choose another out=")
    return record


def has_results(out: Path) -> bool:
    return any(not p.name.startswith(".") for p in (out / "results").glob("*.png"))  # not a temporary sibling


def claim_run_folder(out: Path, identity: dict) -> None:
    """OUT belongs to one model + generation settings: recorded in run_config.json once every input is checked,
    compared on every later run while the folder holds results (a record without results is simply replaced)."""
    previous = read_run_config(out)
    if previous == identity:
        return
    if previous is not None and has_results(out):
        changed = sorted(k for k in set(previous) | set(identity) if previous.get(k) != identity.get(k))
        raise ValueError(
            f"out: {out} holds results made with other settings ({', '.join(changed)} differ); choose "
            "another out= (results of different settings must not be mixed)"
        )
    write_json(out / RUN_CONFIG, identity, overwrite=True)


# ----------------------------------------------------------------------------------------------- editing


def _identity_collate(batch):
    return batch


def open_as(path: Path, mode: str) -> Image.Image:
    """The decoded image in `mode`; a file that fails to decode (e.g. a truncated JPEG) is a ValueError naming it."""
    try:
        with Image.open(path) as img:
            return img.convert(mode)
    except OSError as e:
        raise ValueError(f"bench: {path} cannot be decoded ({e})") from None


def authors_exemplar(path: Path, size: int) -> torch.Tensor:
    """The authors' test-bench reference: PIL resize to size x size, RGB, CLIP-normalised (no crop)."""
    with Image.open(path) as img:
        return normalize(tvF.to_tensor(img.resize((size, size)).convert("RGB")))


def open_rgb(path: Path) -> Image.Image:
    return open_as(path, "RGB")


def open_mask(path: Path) -> Image.Image:
    return open_as(path, "L")


class EditModule(L.LightningModule):
    """Holds the model; predict_step edits one fixed batch of items and writes each result."""

    def __init__(self, ckpt: Checkpoint, settings: EditSettings, out: Path):
        super().__init__()
        self.model = ckpt.model(dtype=DTYPES[settings.dtype])
        self.scheduler_config = dict(ckpt.scheduler)
        self.settings, self.out = settings, out
        self._pipe = None

    def pipeline(self):
        from pbe.pipeline import PaintByExamplePipeline

        if self._pipe is None:
            self._pipe = PaintByExamplePipeline(
                self.model, self.scheduler_config, device=self.device, dtype=DTYPES[self.settings.dtype]
            )
        return self._pipe

    def edit(self, items: list[BenchItem]) -> list[Image.Image]:
        pipe, s = self.pipeline(), self.settings
        images = [open_rgb(i.image) for i in items]
        if any(im.size != images[0].size for im in images):
            raise ValueError("batch_size > 1 needs items of one size; use batch_size=1")
        size = pipe.model.encoder.config.vision.image_size
        refs = [
            authors_exemplar(i.reference, size) if s.exemplar == "authors" else open_rgb(i.reference)
            for i in items
        ]
        w, h = images[0].size
        mult = pipe.size_multiple
        shape = (
            pipe.model.vae.config.latent_channels,
            math.ceil(h / mult) * mult // pipe.vae_scale,
            math.ceil(w / mult) * mult // pipe.vae_scale,
        )
        generators = [torch.Generator().manual_seed(item_seed(s.seed, i.id)) for i in items]
        # Each item's initial noise from its own generator (drawn as the pipeline would draw it); the masked-image
        # posterior sample then continues the first item's generator: for one item, exactly pipe(generator=g).
        latents = torch.stack([torch.randn(shape, generator=g, dtype=pipe.dtype) for g in generators])
        return pipe(
            images,
            [open_mask(i.mask) for i in items],
            refs,
            num_inference_steps=s.steps,
            guidance_scale=float(s.guidance),
            eta=float(s.eta),
            sampler=s.sampler,
            generator=generators[0],
            latents=latents,
            progress=False,
        ).images

    def predict_step(self, items: list[BenchItem], batch_idx: int):
        start = time.perf_counter()
        results = self.edit(items)
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        seconds = (time.perf_counter() - start) / len(items)
        for item, image in zip(items, results, strict=True):
            if result_path(self.out, item).is_file():
                continue  # finished earlier (a partly finished batch is recomputed for its noise, not rewritten)
            meta = {
                "id": item.id,
                "seed": item_seed(self.settings.seed, item.id),
                "seconds": seconds,
                "batch": [i.id for i in items],
                "device": str(self.device),
                "rank": self.global_rank,
                "pid": os.getpid(),
            }
            # meta first, then the PNG, which marks the item done; a leftover meta of a killed run is replaced
            write_files(
                [(meta_path(self.out, item), json_text(meta)), (result_path(self.out, item), image)],
                overwrite=True,
                inputs=(item.image, item.mask, item.reference),
            )
        return [i.id for i in items]


class BenchBatches(L.LightningDataModule):
    """Fixed batches in bench order; batch k belongs to rank k % world_size; finished batches are left out."""

    def __init__(self, batches: list[list[BenchItem]], out: Path):
        super().__init__()
        self.batches, self.out = batches, out

    def mine(self, rank: int, world: int) -> list[list[BenchItem]]:
        return [
            b
            for k, b in enumerate(self.batches)
            if k % world == rank and not all(result_path(self.out, i).is_file() for i in b)
        ]

    def transfer_batch_to_device(self, batch, device, dataloader_idx):
        return batch  # a list of BenchItem (paths); the pipeline moves tensors itself

    def predict_dataloader(self):
        mine = self.mine(self.trainer.global_rank, self.trainer.world_size)
        return DataLoader(mine, batch_size=None, shuffle=False, collate_fn=_identity_collate)


def make_trainer(trainer_cfg: dict, progress: bool) -> L.Trainer:
    options = {"accelerator": "auto", "devices": 1, "strategy": "auto", "num_nodes": 1}
    options.update(trainer_cfg)
    return L.Trainer(
        **options,
        logger=False,
        enable_checkpointing=False,
        enable_model_summary=False,
        use_distributed_sampler=False,
        enable_progress_bar=progress,
        inference_mode=True,
    )


# ----------------------------------------------------------------------------------------------- run


def check_metric_inputs(m: MetricSettings) -> None:
    """Fail before editing when a metric input is missing or unreadable."""
    from pbe.eval.metrics import clip_dim, load_gmm, read_stats

    if not m.compute:
        return
    if not m.clip.weights:
        raise ValueError("metrics.clip.weights is required to score (or metrics.compute=false to only edit)")
    if not Path(m.clip.weights).expanduser().is_file():
        raise FileNotFoundError(f"metrics.clip.weights: {m.clip.weights} not found")
    dim = clip_dim(m.clip)
    if m.real is not None:
        real = Path(m.real).expanduser()
        if not real.exists():
            raise FileNotFoundError(f"metrics.real: {m.real} not found (a folder of real images or an .npz)")
        if real.suffix == ".npz":
            read_stats(real, dim)
    if m.gmm is not None and load_gmm(m.gmm).dim != dim:
        raise ValueError(
            f"metrics.gmm: {m.gmm} is a {load_gmm(m.gmm).dim}-d mixture; {m.clip.arch} gives {dim}-d"
        )


def run_eval(cfg) -> dict | None:
    """Edit the bench, then (rank 0) score it and write the reports. Returns results.json's dict on rank 0.

    Every input (settings, checkpoint layout and schedule, bench files, metric inputs, the out folder) is checked
    before the model is built; run_config.json is written only then."""
    started = time.perf_counter()
    args = parse_args(cfg)
    # the schedule and the autoencoder's size are known here: tensors are memory-mapped, no model is built
    ckpt = read_checkpoint(args.weights)
    check_steps_for(ckpt.scheduler, args.edit.sampler, args.edit.steps)
    items = load_bench(args.bench, args.limit, min_side=min_image_side(ckpt))
    check_metric_inputs(args.metrics)
    check_out(args, items)
    model_sha = sha256_of(args.weights)
    identity = {"model_sha256": model_sha, **asdict(args.edit)}
    claim_run_folder(args.out, identity)

    done_before = {i.id for i in items if result_path(args.out, i).is_file()}
    bs = args.edit.batch_size
    batches = [items[k : k + bs] for k in range(0, len(items), bs)]
    pending = [b for b in batches if not all(i.id in done_before for i in b)]
    if args.progress:
        print(f"{len(items)} items, {len(done_before)} already done, {sum(map(len, pending))} to edit")
    rank, world, device = 0, 1, "none"
    if pending:
        module = EditModule(ckpt, args.edit, args.out)
        trainer = make_trainer(args.trainer, args.progress)
        trainer.predict(module, datamodule=BenchBatches(batches, args.out), return_predictions=False)
        trainer.strategy.barrier("pbe-eval-edited")  # every rank's files are written before rank 0 scores
        rank, world, device = trainer.global_rank, trainer.world_size, str(module.device)
    if rank != 0:
        return None
    done_after = {i.id for i in items if result_path(args.out, i).is_file()}
    missing = [i.id for i in items if i.id not in done_after]
    if missing:
        raise RuntimeError(f"{len(missing)} items have no result after editing, e.g. {missing[:3]}")

    from pbe.eval.results import score_and_report

    counts = {
        "items": len(items),
        "already_done": len(done_before),
        "edited_this_run": len(done_after - done_before),
    }
    return score_and_report(args, items, cfg, model_sha, counts, world, device, started)
