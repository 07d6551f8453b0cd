"""Edit every benchmark item (Lightning predict loop, one device or many), then score the results.

A run folder OUT holds `results/{id}.png` (one per item, written atomically: a PNG exists only when complete),
`meta/{id}.json` (its seed and seconds), `run_config.json` (what the results depend on), and after scoring
`results.json`, `table.md` and `contact_sheet.png`. A rerun with the same OUT edits only the items whose PNG is missing
(so an interrupted run resumes) and refuses an OUT made with another model or other generation settings.

Determinism whatever the world size: items are cut into fixed batches in bench order (`batch_size`, default 1), batch
k belongs to rank k % world_size, and an item's noise comes from its own CPU generator seeded by
`item_seed(seed, id)`. With batch_size 1 an item's result equals
`pipe(image, mask, reference, generator=torch.Generator().manual_seed(item_seed(seed, id)))`.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import lightning as L
import torch
from PIL import Image
from torch.utils.data import DataLoader
from torchvision.transforms import functional as tvF

from pbe.checkpoints.formats import DTYPES
from pbe.eval.bench import BenchItem, item_seed, load_bench
from pbe.eval.metrics import ClipConfig, normalize

EXEMPLAR_MODES = ("authors", "clip")


@dataclass
class EditSettings:
    """What the edited images depend on (besides the model and the items)."""

    seed: int = 42
    steps: int = 50
    guidance: float = 5.0
    eta: float = 0.0
    sampler: str | None = None  # None: the checkpoint's own (PLMS for the released model)
    batch_size: int = 1
    dtype: str = "fp32"
    # authors: the reference stretched to the encoder's size (PIL resize) as the authors' test-bench loader does;
    # clip: CLIPImageProcessor preprocessing (short side, centre crop) as in diffusers
    exemplar: str = "authors"


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


def parse_args(cfg) -> EvalArgs:
    """Check the config (types and ranges) before anything heavy."""
    from omegaconf import OmegaConf

    values = OmegaConf.to_container(cfg, resolve=True) if not isinstance(cfg, dict) else dict(cfg)
    for key in ("weights", "bench"):
        if not values.get(key) or values[key] == "???":
            raise ValueError(f"{key} is required: pass {key}=PATH")
    edit = EditSettings(**{k: values[k] for k in asdict(EditSettings()) if k in values})
    if isinstance(edit.steps, bool) or not isinstance(edit.steps, int) or edit.steps < 1:
        raise ValueError(f"steps must be a positive integer, got {edit.steps!r}")
    if isinstance(edit.batch_size, bool) or not isinstance(edit.batch_size, int) or edit.batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {edit.batch_size!r}")
    if not isinstance(edit.guidance, int | float) or edit.guidance < 0:
        raise ValueError(f"guidance must be >= 0, got {edit.guidance!r}")
    if edit.exemplar not in EXEMPLAR_MODES:
        raise ValueError(f"exemplar={edit.exemplar!r}; valid: {EXEMPLAR_MODES}")
    if edit.dtype not in DTYPES:
        raise ValueError(f"dtype={edit.dtype!r}; valid: {tuple(DTYPES)}")
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
    )


# ----------------------------------------------------------------------------------------------- files


def sha256_of(path: str | Path) -> str:
    """sha256 of a file, or of a folder's files (relative names and contents, in sorted order)."""
    path = Path(path)
    h = hashlib.sha256()
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    for f in files:
        if path.is_dir():
            h.update(str(f.relative_to(path)).encode() + b"\0")
        with open(f, "rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 22), b""):
                h.update(chunk)
    return h.hexdigest()


def write_text(path: Path, text: str) -> None:
    """Atomically (temporary sibling, then rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(handle, "w") as f:
            f.write(text)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json(path: Path, data) -> None:
    write_text(path, json.dumps(data, indent=2) + "\n")


def result_path(out: Path, item: BenchItem) -> Path:
    return out / "results" / f"{item.id}.png"


def check_run_config(out: Path, identity: dict) -> None:
    """OUT belongs to one model + generation settings: written on first use, compared on every later run."""
    path = out / "run_config.json"
    if path.is_file():
        previous = json.loads(path.read_text())
        if previous != identity:
            changed = sorted(k for k in set(previous) | set(identity) if previous.get(k) != identity.get(k))
            raise ValueError(
                f"out: {out} holds results made with other settings ({', '.join(changed)} differ); choose "
                "another out= (results of different settings must not be mixed)"
            )
    else:
        write_json(path, identity)


# ----------------------------------------------------------------------------------------------- editing


def _identity_collate(batch):
    return batch


def authors_exemplar(path: Path, size: int) -> torch.Tensor:
    """The authors' test-bench reference: PIL resize to size x size, RGB, CLIP-normalised (no crop)."""
    with Image.open(path) as img:
        return normalize(tvF.to_tensor(img.resize((size, size)).convert("RGB")))


def open_rgb(path: Path) -> Image.Image:
    with Image.open(path) as img:
        return img.convert("RGB")


def open_mask(path: Path) -> Image.Image:
    with Image.open(path) as img:
        return img.convert("L")


class EditModule(L.LightningModule):
    """Holds the model; predict_step edits one fixed batch of items and writes each result."""

    def __init__(self, weights: Path, settings: EditSettings, out: Path):
        super().__init__()
        from pbe.checkpoints.formats import load_checkpoint

        ckpt = load_checkpoint(weights)
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
        from pbe.sample_cli import write_png

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
            write_json(self.out / "meta" / f"{item.id}.json", meta)
            write_png(image, result_path(self.out, item), overwrite=True)  # the PNG marks the item done
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
    """Edit the bench, then (rank 0) score it and write the reports. Returns results.json's dict on rank 0."""
    from pbe.checkpoints.formats import detect_format

    started = time.perf_counter()
    args = parse_args(cfg)
    items = load_bench(args.bench, args.limit)
    if not args.weights.exists():
        raise FileNotFoundError(f"weights: {args.weights} not found")
    detect_format(args.weights)
    check_metric_inputs(args.metrics)
    model_sha = sha256_of(args.weights)
    identity = {"model_sha256": model_sha, **asdict(args.edit)}
    args.out.mkdir(parents=True, exist_ok=True)
    check_run_config(args.out, identity)

    done_before = {i.id for i in items if result_path(args.out, i).is_file()}
    bs = args.edit.batch_size
    batches = [items[k : k + bs] for k in range(0, len(items), bs)]
    pending = [b for b in batches if not all(i.id in done_before for i in b)]
    if args.progress:
        print(f"{len(items)} items, {len(done_before)} already done, {sum(map(len, pending))} to edit")
    rank, world, device = 0, 1, "none"
    if pending:
        module = EditModule(args.weights, args.edit, args.out)
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

    from pbe.eval.report import score_and_report

    counts = {
        "items": len(items),
        "already_done": len(done_before),
        "edited_this_run": len(done_after - done_before),
    }
    return score_and_report(args, items, cfg, model_sha, counts, world, device, started)
