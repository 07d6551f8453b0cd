"""Run a training stage from a composed Hydra config (`configs/train.yaml`).

`train_diffusion(cfg, run_dir)` is the paper's stage; `pbe.stages.train(cfg)` picks it or a recipe's stage by
`cfg.stage`. A stage function has the signature `fn(cfg: DictConfig, run_dir: Path, callbacks: list) -> Path`; it
may use the helpers here (`build_loggers`, `build_trainer`, `resolve_ckpt_path`, `checkpoint_callbacks`,
`make_run_dir`, `check_run_dir`).

Every check on the user's input (unknown keys, missing data, a batch size that does not divide, a checkpoint that
does not exist or is another architecture) runs before the model is built and before any step.
"""

from __future__ import annotations

import datetime
import logging
import os
import warnings
from collections.abc import Mapping
from pathlib import Path

import lightning as L
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import InterpolationResolutionError, MissingMandatoryValue

from pbe.files import write_file
from pbe.training.callbacks import DatasetEpoch, SampleGrid, Throughput
from pbe.training.datamodule import ExemplarDataModule, LoaderConfig, per_device_batch
from pbe.training.model_factory import architecture_differences, model_config

TOP_LEVEL_KEYS = (
    "name",
    "stage",
    "seed",
    "output_root",
    "run_dir",
    "ckpt_path",
    "model",
    "data",
    "loader",
    "trainer",
    "logger",
    "callbacks",
    "objective",
    "optim",
    "ema",
    "guard",
    "small",  # the small model's recipe options (pbe/recipes/small/recipe.py)
)
TRAINER_KEYS = (
    "accelerator",
    "devices",
    "num_nodes",
    "strategy",
    "precision",
    "max_steps",
    "max_epochs",
    "accumulate_grad_batches",
    "gradient_clip_val",
    "gradient_clip_algorithm",
    "log_every_n_steps",
    "process_group_backend",
    "fsdp",
    "slurm_requeue",
    "deterministic",
    "enable_progress_bar",
)
PRECISIONS = ("32", "32-true", "bf16-mixed", "16-mixed", "bf16-true", "16-true", "64")


def required(key: str):
    """`${pbe_required:model.init.sd}` in a config: a value the user must give (a clear error otherwise)."""
    raise ValueError(f"{key} is required by this experiment; give it as an override: {key}=...")


if not OmegaConf.has_resolver("pbe_required"):
    OmegaConf.register_new_resolver("pbe_required", required)


def plain(cfg) -> dict:
    """The config as plain containers, every interpolation resolved; a missing mandatory value is a ValueError."""
    if isinstance(cfg, DictConfig):
        try:
            return OmegaConf.to_container(cfg, resolve=True, throw_on_missing=True)
        except MissingMandatoryValue as e:
            raise ValueError(
                f"config: a required value is not set ({e.full_key}); give it as an override"
            ) from None
        except InterpolationResolutionError as e:
            cause = e.__cause__ if isinstance(e.__cause__, ValueError) else e
            raise ValueError(str(cause)) from None
    return dict(cfg)


def check_keys(node: Mapping, valid: tuple[str, ...], name: str) -> None:
    unknown = sorted(set(node) - set(valid))
    if unknown:
        raise ValueError(f"{name}: unknown keys {unknown}; valid keys are {list(valid)}")


def under_hydra() -> bool:
    try:
        from hydra.core.hydra_config import HydraConfig
    except ImportError:
        return False
    return HydraConfig.initialized()


def one_log_line_per_message() -> None:
    """Under Hydra the root logger already prints (and writes train.log); drop Lightning's own console handlers."""
    for name in ("lightning", "lightning.pytorch", "lightning.fabric"):
        logger = logging.getLogger(name)
        for handler in list(logger.handlers):
            if type(handler) is logging.StreamHandler:
                logger.removeHandler(handler)
        logger.propagate = True


def make_run_dir(cfg: Mapping) -> Path:
    """cfg.run_dir if set, else Hydra's run dir when running under Hydra, else <output_root>/<timestamp>."""
    if cfg.get("run_dir"):
        return Path(cfg["run_dir"])
    if under_hydra():
        from hydra.core.hydra_config import HydraConfig

        return Path(HydraConfig.get().runtime.output_dir)
    stamp = datetime.datetime.now().strftime("%Y-%m-%d_%H-%M-%S_%f")
    return Path(cfg.get("output_root") or f"outputs/train/{cfg.get('name', 'default')}") / stamp


# What a training run writes in its folder (a folder holding anything else is not a run's, and is not written into)
RUN_ENTRIES = (
    "config.yaml",
    "checkpoints",
    "csv",
    "wandb",
    "samples",
    "model",
    "frozen",
    "autoencoder",
    "vision",
    ".hydra",
    "train.log",
)


def check_run_dir(run_dir: Path) -> None:
    """A run folder is new, empty or an earlier run's: never a folder of the user's other files."""
    if not run_dir.exists():
        return
    if not run_dir.is_dir():
        raise ValueError(f"run_dir: {run_dir} is a file, not a folder")
    foreign = sorted(
        e.name for e in run_dir.iterdir() if e.name not in RUN_ENTRIES and not e.name.startswith(".")
    )
    if foreign:
        shown = ", ".join(foreign[:5]) + (f" and {len(foreign) - 5} more" if len(foreign) > 5 else "")
        raise ValueError(
            f"run_dir: {run_dir} holds files a training run did not write ({shown}); a run writes its config, "
            "checkpoints and logs there: choose a new or empty folder"
        )


def resolve_ckpt_path(ckpt_path: str | None, output_root: str | Path, run_dir: Path) -> Path | None:
    """None, an existing Lightning checkpoint, or "last": the newest <output_root>/*/checkpoints/last.ckpt."""
    if ckpt_path in (None, "", "null"):
        return None
    if str(ckpt_path) == "last":
        root = Path(output_root)
        found = [
            p
            for p in root.glob("*/checkpoints/last.ckpt")
            if p.is_file() and p.resolve().parent.parent != run_dir.resolve()
        ]
        if not found:
            raise FileNotFoundError(
                f"ckpt_path=last: no checkpoints/last.ckpt in any run under {root} (output_root); "
                "give the checkpoint's path instead"
            )
        return max(found, key=lambda p: p.stat().st_mtime)
    path = Path(ckpt_path)
    if not path.is_file():
        raise FileNotFoundError(f"ckpt_path: checkpoint not found: {path}")
    return path


def check_resume_architecture(path: Path, model_cfg: Mapping) -> None:
    """A checkpoint to resume must hold the architecture the config asks for."""
    from pbe.checkpoints.lightning_ckpt import read_lightning_checkpoint

    ckpt = read_lightning_checkpoint(path, with_state=False)
    expected = model_config(model_cfg.get("config"), model_cfg.get("gradient_checkpointing", False))
    diff = architecture_differences(ckpt["config"], expected)
    if diff:
        raise ValueError(
            f"ckpt_path {path} holds another architecture than model.config ({len(diff)} differences: "
            f"{'; '.join(diff[:4])}); resume with the model preset it was trained with"
        )


def check_data_fits_model(augment, config) -> None:
    """The data's exemplar size is the vision tower's input size; its image size divides into the latent grid."""
    vision = config.encoder.vision.image_size
    if augment.exemplar_size != vision:
        raise ValueError(
            f"data.augment.exemplar_size={augment.exemplar_size} but the model's vision tower takes {vision}x{vision}; "
            f"set data.augment.exemplar_size={vision}"
        )
    multiple = config.vae.downsample_factor * config.unet.downsample_factor
    if augment.image_size % multiple:
        raise ValueError(
            f"data.augment.image_size={augment.image_size} is not a multiple of {multiple} (VAE factor "
            f"{config.vae.downsample_factor} x UNet factor {config.unet.downsample_factor})"
        )


def build_loggers(logger_cfg: Mapping | None, run_dir: Path, name: str) -> list:
    """`logger.kind`: wandb (offline by default; also writes metrics.csv), csv, or none."""
    from lightning.pytorch.loggers import CSVLogger

    logger_cfg = dict(logger_cfg or {"kind": "csv"})
    kind = logger_cfg.pop("kind", "csv")
    if kind == "none":
        return []
    csv = CSVLogger(save_dir=str(run_dir), name="csv", version="")  # <run_dir>/csv/metrics.csv
    if kind == "csv":
        return [csv]
    if kind == "wandb":
        from lightning.pytorch.loggers import WandbLogger

        mode = logger_cfg.pop("mode", "offline")
        project = logger_cfg.pop("project", "pbe")
        (run_dir / "wandb").mkdir(parents=True, exist_ok=True)
        os.environ.setdefault("WANDB_SILENT", "true")
        wandb = WandbLogger(
            project=project,
            name=logger_cfg.pop("run_name", None) or f"{name}/{run_dir.name}",
            save_dir=str(run_dir),
            offline=mode == "offline",
            mode=mode,
            **logger_cfg,
        )
        return [csv, wandb]
    raise ValueError(f"logger.kind must be one of wandb, csv, none; got {kind!r}")


def build_strategy(trainer_cfg: Mapping):
    """`strategy`: auto, ddp, fsdp (wraps the UNet's residual and transformer blocks), or any Lightning name."""
    from lightning.pytorch.strategies import DDPStrategy

    name = trainer_cfg.get("strategy", "auto")
    backend = trainer_cfg.get("process_group_backend")
    if name == "ddp":
        # the unconditional vector (or the exemplar branch) is unused on steps where CFG dropout is all-or-nothing
        return DDPStrategy(find_unused_parameters=True, process_group_backend=backend)
    if name == "fsdp":
        # FSDP2 (torch's fully_shard) through Lightning's ModelParallelStrategy: the module's configure_model shards
        # the UNet's residual and transformer blocks and the mapper's blocks (see PaintByExampleModule.shard). Runs on
        # GPUs (nccl) and on CPU (gloo).
        from lightning.pytorch.strategies import ModelParallelStrategy

        options = dict(trainer_cfg.get("fsdp") or {})
        unknown = sorted(set(options) - {"reshard_after_forward"})
        if unknown:
            raise ValueError(f"trainer.fsdp: unknown keys {unknown}; valid: ['reshard_after_forward']")
        strategy = ModelParallelStrategy(
            data_parallel_size="auto",  # Lightning's 2-D mesh is not used: the module shards over all ranks
            tensor_parallel_size="auto",
            save_distributed_checkpoint=False,  # one-file checkpoints: resumable anywhere, exportable
            process_group_backend=backend,
        )
        strategy.fsdp_options = options  # read by PaintByExampleModule.configure_model
        return strategy
    return name


def build_plugins(trainer_cfg: Mapping) -> list:
    if trainer_cfg.get("num_nodes", 1) > 1 or trainer_cfg.get("slurm_requeue") is not None:
        from lightning.pytorch.plugins.environments import SLURMEnvironment

        if SLURMEnvironment.detect():
            return [SLURMEnvironment(auto_requeue=bool(trainer_cfg.get("slurm_requeue", True)))]
    return []


def build_trainer(trainer_cfg: Mapping, run_dir: Path, loggers: list, callbacks: list) -> L.Trainer:
    cfg = dict(trainer_cfg)
    check_keys(cfg, TRAINER_KEYS, "trainer")
    precision = str(cfg.get("precision", "32"))
    if precision not in PRECISIONS:
        raise ValueError(f"trainer.precision must be one of {PRECISIONS}, got {precision!r}")
    max_steps = cfg.get("max_steps", -1)
    max_epochs = cfg.get("max_epochs")
    if (max_steps is None or max_steps < 0) and max_epochs is None:
        raise ValueError("trainer: set max_steps or max_epochs (a training run needs an end)")
    return L.Trainer(
        accelerator=cfg.get("accelerator", "auto"),
        devices=cfg.get("devices", "auto"),
        num_nodes=cfg.get("num_nodes", 1),
        strategy=build_strategy(cfg),
        precision=precision,
        max_steps=max_steps if max_steps is not None else -1,
        max_epochs=max_epochs if max_epochs is not None else (-1 if max_steps else None),
        accumulate_grad_batches=cfg.get("accumulate_grad_batches", 1),
        gradient_clip_val=cfg.get("gradient_clip_val"),
        gradient_clip_algorithm=cfg.get("gradient_clip_algorithm", "norm"),
        log_every_n_steps=cfg.get("log_every_n_steps", 50),
        deterministic=cfg.get("deterministic", False),
        enable_progress_bar=cfg.get("enable_progress_bar", True),
        plugins=build_plugins(cfg),
        default_root_dir=str(run_dir),
        logger=loggers or False,
        callbacks=callbacks,
        use_distributed_sampler=False,  # ExemplarDataModule shards by global step itself
        num_sanity_val_steps=0,
        limit_val_batches=0,
        enable_model_summary=False,
    )


class FinalCheckpoint(L.Callback):
    """Save `step_XXXXXXX.ckpt` when training ends unless the periodic checkpoint just did (ModelCheckpoint's
    save_last writes last.ckpt at the end too)."""

    def __init__(self, dirpath: Path):
        self.dirpath = Path(dirpath)

    def on_train_end(self, trainer, pl_module) -> None:
        path = self.dirpath / f"step_{trainer.global_step:07d}.ckpt"
        if not trainer.strategy.broadcast(path.exists()):  # every rank takes part in saving (sharded states)
            trainer.save_checkpoint(path)


def checkpoint_callbacks(callbacks_cfg: Mapping, run_dir: Path) -> list:
    from lightning.pytorch.callbacks import ModelCheckpoint

    ckpt_cfg = dict(callbacks_cfg.get("checkpoint") or {})
    dirpath = run_dir / "checkpoints"
    every = ckpt_cfg.get("every_n_steps", 5000)
    return [
        ModelCheckpoint(
            dirpath=str(dirpath),
            filename="step_{step:07d}",
            auto_insert_metric_name=False,
            every_n_train_steps=every,
            save_top_k=ckpt_cfg.get("keep", -1),
            monitor="step" if ckpt_cfg.get("keep", -1) not in (-1, None) else None,
            mode="max",
            save_last=True,
            save_on_train_epoch_end=False,
        ),
        FinalCheckpoint(dirpath),
    ]


def training_callbacks(callbacks_cfg: Mapping, run_dir: Path) -> list:
    from lightning.pytorch.callbacks import LearningRateMonitor

    cfg = dict(callbacks_cfg or {})
    check_keys(cfg, ("checkpoint", "sample_grid", "lr_monitor", "throughput"), "callbacks")
    out = [DatasetEpoch(), *checkpoint_callbacks(cfg, run_dir)]
    grid = cfg.get("sample_grid")
    if grid:
        out.append(SampleGrid(run_dir / "samples", **grid))
    if cfg.get("throughput", True):
        out.append(Throughput())
    if cfg.get("lr_monitor", True):
        out.append(LearningRateMonitor(logging_interval="step"))
    return out


def save_config(cfg: Mapping, run_dir: Path) -> None:
    # the run's own record; a run resumed in the same folder records its config again
    write_file(run_dir / "config.yaml", OmegaConf.to_yaml(OmegaConf.create(cfg)), overwrite=True)


def check_diffusion_config(c: Mapping) -> tuple[LoaderConfig, dict, ExemplarDataModule]:
    """The diffusion stage's checks on a plain config that need no model: keys, loader, trainer, and the data
    (a missing path fails here). Returns the loader config, the trainer config and the prepared data module."""
    check_keys(c, TOP_LEVEL_KEYS, "config")
    try:
        loader_cfg = LoaderConfig(**dict(c.get("loader") or {}))
    except TypeError as e:
        raise ValueError(f"loader: {e}") from None
    trainer_cfg = dict(c.get("trainer") or {})
    check_keys(trainer_cfg, TRAINER_KEYS, "trainer")
    if trainer_cfg.get("strategy") == "fsdp" and (c.get("ema") or {}).get("decay"):
        raise ValueError(
            "ema.decay with trainer.strategy=fsdp is not supported (EMA keeps full copies per rank)"
        )
    datamodule = ExemplarDataModule(c["data"], c.get("loader"), seed=int(c.get("seed", 23)))
    datamodule.prepare()
    return loader_cfg, trainer_cfg, datamodule


def train_diffusion(cfg: DictConfig | Mapping, run_dir: Path, callbacks: list | None = None) -> Path:
    """The paper's stage: train the UNet and the exemplar encoder's trained parts (module docstring)."""
    from pbe.training.module import PaintByExampleModule

    c = plain(cfg)
    loader_cfg, trainer_cfg, datamodule = check_diffusion_config(c)
    seed = int(c.get("seed", 23))
    ckpt_path = resolve_ckpt_path(c.get("ckpt_path"), c.get("output_root") or run_dir.parent, run_dir)
    if ckpt_path is not None:
        check_resume_architecture(ckpt_path, c["model"])
    check_data_fits_model(datamodule.dataset.config, model_config(c["model"].get("config"), False))

    L.seed_everything(seed, workers=True, verbose=False)
    loggers = build_loggers(c.get("logger"), run_dir, c.get("name", "default"))
    trainer = build_trainer(
        trainer_cfg,
        run_dir,
        loggers,
        [*training_callbacks(c.get("callbacks") or {}, run_dir), *(callbacks or [])],
    )
    batch = per_device_batch(loader_cfg, trainer.world_size, trainer.accumulate_grad_batches)
    datamodule.batch_size = batch
    global_batch = batch * trainer.world_size
    if len(datamodule.dataset) < global_batch:
        raise ValueError(
            f"the dataset has {len(datamodule.dataset)} samples, fewer than one global batch "
            f"({batch} x {trainer.world_size} device(s)); lower loader.batch_size or use more data"
        )
    if trainer.is_global_zero:
        save_config(c, run_dir)

    module = PaintByExampleModule(
        c["model"], c.get("objective"), c.get("optim"), c.get("ema"), c.get("guard"), seed=seed
    )
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*in eval mode at the start of training.*")
        warnings.filterwarnings("ignore", message=".*does not have many workers.*")
        warnings.filterwarnings("ignore", message=".*`training_step` returned `None`.*")  # a skipped step
        warnings.filterwarnings("ignore", message="The dirpath has changed from.*")  # resumed: new run dir
        trainer.fit(
            module, datamodule=datamodule, ckpt_path=str(ckpt_path) if ckpt_path else None, weights_only=True
        )
    return run_dir
