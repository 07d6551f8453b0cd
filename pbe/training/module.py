"""The Paint-by-Example training objective as a LightningModule (the authors' recipe:
their `configs/v1.yaml` and `ldm/models/diffusion/ddpm.py`). The objective itself is `pbe.training.objective`,
the options `pbe.training.configs`, FSDP `pbe.training.sharding`, EMA `pbe.training.ema`; this module holds the
step, the random generator and its checkpointed state, logging, the optimizer and preview sampling.

The loss of a step is described in `pbe.training.objective`.

Trained: the whole UNet, the mapper, the final LayerNorm, the projection and the unconditional vector (AdamW, lr 1e-5,
weight decay 0.01, linear warm-up from 1e-6 * lr over 10k steps, then constant; `optim.decay=cosine`, not in the
paper, anneals it for short runs). Frozen, in eval mode, never in the optimizer: the VAE and the CLIP vision tower.

Every random draw of a step comes from one generator seeded by the run's seed and drawn for the *global* batch (all
ranks draw the same numbers and each takes its slice), so a run on N devices computes what one device computes on
the N-times larger batch, and the generator's state in the checkpoint makes resumed runs exact.
"""

from __future__ import annotations

from collections.abc import Mapping

import lightning as L
import torch

from pbe.diffusion.scheduler_config import PAINT_BY_EXAMPLE_SCHEDULER, from_scheduler_config
from pbe.training import objective, rng_state
from pbe.training.configs import (  # noqa: F401 (re-exported: configs and the schedule are imported from here)
    EMAConfig,
    GuardConfig,
    ObjectiveConfig,
    OptimConfig,
    WarmupSchedule,
    make_config,
)
from pbe.training.ema import EMAWeights
from pbe.training.model_factory import build_model, plain_config
from pbe.training.objective import Draws
from pbe.training.preview import preview_edits
from pbe.training.sharding import average_replicated_grads, grad_norm_squares, shard_model
from pbe.training.timestep_buckets import bucket_metrics, bucket_stats


def trained_parameter_names(model) -> list[str]:
    """Names (in `model`) of everything the paper trains: UNet, mapper, final norm, projection, uncond vector."""
    return [
        n
        for n, _ in model.named_parameters()
        if n.startswith("unet.") or (n.startswith("encoder.") and not n.startswith("encoder.vision."))
    ]


def frozen_modules(model) -> list[torch.nn.Module]:
    return [model.vae, model.encoder.vision]


class PaintByExampleModule(L.LightningModule):
    """`module.model` is the `pbe.models.PaintByExample` being trained (see the module docstring)."""

    def __init__(
        self,
        model: Mapping,
        objective: Mapping | None = None,
        optim: Mapping | None = None,
        ema: Mapping | None = None,
        guard: Mapping | None = None,
        seed: int = 23,
        pbe_config: Mapping | None = None,  # written into checkpoints for export; rebuilt from `model` here
    ):
        super().__init__()
        self.objective = make_config(ObjectiveConfig, objective, "objective")
        self.optim_cfg = make_config(OptimConfig, optim, "optim")
        self.ema_cfg = make_config(EMAConfig, ema, "ema")
        self.guard = make_config(GuardConfig, guard, "guard")
        self.seed = int(seed)
        self.model = build_model(model, seed=self.seed)
        self.save_hyperparameters(
            {
                "model": dict(model),
                "objective": dict(objective or {}),
                "optim": dict(optim or {}),
                "ema": dict(ema or {}),
                "guard": dict(guard or {}),
                "seed": self.seed,
                "pbe_config": plain_config(self.model.config),
            }
        )
        for module in frozen_modules(self.model):
            module.requires_grad_(False).eval()
        _, schedule, _ = from_scheduler_config(dict(PAINT_BY_EXAMPLE_SCHEDULER))
        self.schedule = schedule
        self.num_train_timesteps = schedule.num_train_timesteps
        self.register_buffer("alphas_cumprod", schedule.alphas_cumprod.clone().float(), persistent=False)
        self.ema_names = trained_parameter_names(self.model) if self.ema_cfg.decay else []
        if self.ema_names:
            self.ema_weights = EMAWeights(self.model, self.ema_names)
        self.generator: torch.Generator | None = None
        self._pending_rng: dict | None = None
        self.nonfinite_in_a_row = 0
        self.nonfinite_total = 0
        self._ema_step = 0
        self.bucket_stats: torch.Tensor | None = None
        self.sharded = False
        self.replicated: list[torch.nn.Parameter] = []

    # ------------------------------------------------------------------------------------------- train mode

    def train(self, mode: bool = True):
        super().train(mode)
        for module in frozen_modules(self.model):
            module.eval()
        return self

    # ------------------------------------------------------------------------------------------- randomness

    def world(self) -> tuple[int, int]:
        if self._trainer is None:
            return 0, 1
        return self.trainer.global_rank, self.trainer.world_size

    def draw_generator(self) -> torch.Generator:
        if self.generator is None or self.generator.device != self.device:
            self.generator = torch.Generator(device=self.device).manual_seed(self.seed)
        if self._pending_rng is not None:
            self.restore_rng(self._pending_rng)
            self._pending_rng = None
        return self.generator

    def draw(self, batch_size: int, latent_shape: tuple[int, int, int]) -> Draws:
        """Draws for the global batch (batch_size x world size), sliced to this rank (`objective.draw`)."""
        rank, world = self.world()
        g = self.draw_generator()
        return objective.draw(
            g, self.objective, self.num_train_timesteps, batch_size, latent_shape, rank, world
        )

    def latent_shape(self, image: torch.Tensor) -> tuple[int, int, int]:
        vae = self.model.vae.config
        f = vae.downsample_factor
        return (vae.latent_channels, image.shape[-2] // f, image.shape[-1] // f)

    def rng_state(self) -> dict:
        return rng_state.capture(self.draw_generator())

    def restore_rng(self, state: dict) -> None:
        rng_state.restore(self.generator, state)

    # ------------------------------------------------------------------------------------------- objective
    # (pbe.training.objective; these methods bind the module's model, schedule and options)

    def encode_latents(self, batch: dict, draws: Draws) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return objective.encode_latents(self.model.vae, batch, draws)

    def context(self, exemplar: torch.Tensor, drop: torch.Tensor) -> torch.Tensor:
        return objective.exemplar_context(self.model.encoder, exemplar, drop)

    def noisy_latent(self, z0: torch.Tensor, noise: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
        return objective.noisy_latent(self.alphas_cumprod, z0, noise, timesteps)

    def losses(self, batch: dict, draws: Draws) -> tuple[torch.Tensor, torch.Tensor]:
        """(loss, per-sample MSE) for one batch and its draws."""
        return objective.losses(self.model, self.alphas_cumprod, self.objective, batch, draws)

    # ------------------------------------------------------------------------------------------- steps

    def on_train_batch_start(self, batch, batch_idx):
        loader = self.trainer.train_dataloader
        sampler = getattr(loader, "sampler", None)
        if hasattr(sampler, "consumed"):
            sampler.consumed += 1  # data position for exact resume (see datamodule.ResumableLoader)

    def training_step(self, batch: dict, batch_idx: int):
        b = batch["image"].shape[0]
        draws = self.draw(b, self.latent_shape(batch["image"]))
        loss, per_sample = self.losses(batch, draws)
        bad = not bool(torch.isfinite(loss))
        if self._trainer is not None and self.trainer.world_size > 1:
            bad = self.trainer.strategy.reduce_boolean_decision(bad, all=False)
        if bad:
            return self.skip_step()
        self.nonfinite_in_a_row = 0
        sync = self.world()[1] > 1
        self.log("train/loss", loss, prog_bar=True, sync_dist=sync)
        self.log("train/skipped_steps", float(self.nonfinite_total))
        self.log("train/cfg_dropped", draws.drop.float().mean(), sync_dist=sync)
        self.log_timestep_buckets(per_sample, draws.timesteps)
        return loss

    def skip_step(self):
        self.nonfinite_in_a_row += 1
        self.nonfinite_total += 1
        self.log("train/skipped_steps", float(self.nonfinite_total))
        if self.nonfinite_in_a_row >= self.guard.max_nonfinite:
            raise RuntimeError(
                f"{self.nonfinite_in_a_row} non-finite losses in a row (step {self.global_step}, "
                f"{self.nonfinite_total} skipped in all); stopping. Lower optim.lr, prefer "
                "trainer.precision=bf16-mixed or 32 over 16-mixed, or check the data and the initial weights "
                f"(guard.max_nonfinite={self.guard.max_nonfinite})"
            )
        return None  # Lightning skips backward and the optimizer step

    def log_timestep_buckets(self, per_sample: torch.Tensor, timesteps: torch.Tensor) -> None:
        """Accumulate the loss per timestep bucket; written every `log_every_n_steps` steps straight to the
        loggers, with only the buckets that occurred in that interval (`pbe.training.timestep_buckets`)."""
        stats = bucket_stats(per_sample, timesteps, self.num_train_timesteps)
        if self.world()[1] > 1:
            stats = self.trainer.strategy.reduce(stats, reduce_op="sum")
        self.bucket_stats = stats.cpu() if self.bucket_stats is None else self.bucket_stats + stats.cpu()
        every = self.trainer.log_every_n_steps if self._trainer is not None else 1
        if self.global_step % max(every, 1):
            return
        stats, self.bucket_stats = self.bucket_stats, None
        if self._trainer is None or not self.trainer.is_global_zero:
            return
        metrics = bucket_metrics(stats, self.num_train_timesteps)
        for logger in self.loggers:
            logger.log_metrics(metrics, step=self.global_step)

    # ------------------------------------------------------------------------------------------- sharding

    def configure_model(self) -> None:
        """Under FSDP (Lightning's ModelParallelStrategy) shard the trained blocks with torch's fully_shard."""
        if getattr(self, "_device_mesh", None) is None or self.sharded:
            return
        import torch.distributed as dist
        from torch.distributed.device_mesh import init_device_mesh

        mesh = init_device_mesh(self.trainer.strategy.root_device.type, (dist.get_world_size(),))
        self.shard(mesh, **getattr(self.trainer.strategy, "fsdp_options", {}))

    def shard(self, mesh, reshard_after_forward: bool = True) -> None:
        """FSDP2 units and the replicated trained parameters: `pbe.training.sharding.shard_model`."""
        self.replicated = shard_model(self.model, mesh, reshard_after_forward)
        self.sharded = True

    def on_before_optimizer_step(self, optimizer) -> None:
        if self.sharded:
            average_replicated_grads(self.replicated, self.device)
        sq_local, sq_whole = grad_norm_squares(self.parameters(), self.device)
        if self.sharded:
            sq_local = self.trainer.strategy.reduce(sq_local, reduce_op="sum")
        self.log("train/grad_norm", (sq_local + sq_whole).sqrt())

    def on_train_batch_end(self, outputs, batch, batch_idx) -> None:
        if self.ema_names and self.global_step > self._ema_step:
            self._ema_step = self.global_step
            self.update_ema()

    def update_ema(self) -> None:
        self.ema_weights.update(self.model, self.ema_cfg.decay)

    def ema_state(self) -> dict[str, torch.Tensor]:
        """EMA weights under model keys (empty without EMA)."""
        return self.ema_weights.state() if self.ema_names else {}

    # ------------------------------------------------------------------------------------------- optimizer

    def global_batch_size(self) -> int:
        if self._trainer is None:
            return 1
        loader_bs = getattr(self.trainer.datamodule, "batch_size", 1) if self.trainer.datamodule else 1
        return loader_bs * self.trainer.world_size * self.trainer.accumulate_grad_batches

    def configure_optimizers(self):
        cfg = self.optim_cfg
        names = set(trained_parameter_names(self.model))
        params = [p for n, p in self.model.named_parameters() if n in names and p.requires_grad]
        lr = cfg.lr * self.global_batch_size() if cfg.scale_lr else cfg.lr
        optimizer = torch.optim.AdamW(
            params, lr=lr, betas=cfg.betas, eps=cfg.eps, weight_decay=cfg.weight_decay
        )
        total = None
        if cfg.decay == "cosine":
            total = cfg.decay_steps
            if total is None:
                total = self.trainer.max_steps if self._trainer is not None else -1
            if total is None or total <= 0:
                raise ValueError(
                    "optim.decay=cosine needs trainer.max_steps or optim.decay_steps (the step the decay ends at)"
                )
        scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer, WarmupSchedule(cfg.warmup_steps, cfg.warmup_start, total, cfg.final_lr_ratio)
        )
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    # ------------------------------------------------------------------------------------------- checkpoints

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["pbe_rng"] = self.rng_state()
        checkpoint["pbe_counters"] = {"nonfinite_total": self.nonfinite_total, "ema_step": self._ema_step}

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        if "pbe_rng" in checkpoint:
            self._pending_rng = checkpoint["pbe_rng"]
        counters = checkpoint.get("pbe_counters", {})
        self.nonfinite_total = int(counters.get("nonfinite_total", 0))
        self._ema_step = int(counters.get("ema_step", 0))

    # ------------------------------------------------------------------------------------------- sampling

    @torch.no_grad()
    def generate(self, batch: dict, steps: int = 20, guidance: float = 5.0, seed: int = 0) -> torch.Tensor:
        """Edited images in [-1, 1] for a batch (DDIM, classifier-free guidance, fixed seed)."""
        was_training = self.model.training
        self.model.eval()
        try:
            return preview_edits(self.model, self.schedule, batch, self.device, steps, guidance, seed)
        finally:
            self.model.train(was_training)
            self.train(self.training)
