"""The Paint-by-Example training objective as a LightningModule (the authors' recipe:
their `configs/v1.yaml` and `ldm/models/diffusion/ddpm.py`).

Per step, for a batch of (image in [-1, 1], keep-mask 1 = keep, CLIP-normalised exemplar):

- z0 = s * VAE.encode(image).sample(), z_masked = s * VAE.encode(image * keep).sample(), s = the VAE config's
  scale factor (0.18215 for SD): posterior samples, VAE frozen and in eval mode;
- keep-mask resized to latent size with bilinear interpolation (soft edges, no threshold);
- t ~ U{0..T-1} per sample (`objective.timestep_power`, not in the paper, can favour the high-noise steps);
  z_t = sqrt(a_t) z0 + sqrt(1 - a_t) eps on the 4 latent channels only (the schedule of every Paint-by-Example
  model, `PAINT_BY_EXAMPLE_SCHEDULER`);
- context = exemplar encoder(exemplar), replaced by the learned unconditional vector with probability p
  (`cfg_dropout`, 0.2): one draw for the whole batch per step (the original, default) or one per sample;
- loss = plain MSE between UNet(cat[z_t, z_masked, mask], t, context) and eps, over the whole latent
  (`objective.mask_loss_weight`, not in the paper, can weight the edit region more; 1.0 is the paper's loss);
- not in the paper, only with `data.augment.recolour_p > 0`: a recoloured sample (its object in another colour than
  the exemplar's) with t >= `objective.recolour_min_t` and an exemplar is noised from the recoloured copy, and the
  target is the noise that leads from the true z0 to that z_t (`recoloured_start`).

Trained: the whole UNet, the mapper, the final LayerNorm, the projection and the unconditional vector (AdamW, lr 1e-5,
weight decay 0.01, linear warm-up from 1e-6 * lr over 10k steps, then constant; `optim.decay=cosine`, not in the
paper, anneals it for short runs). Frozen, in eval mode, never in the optimizer: the VAE and the CLIP vision tower.

Every random draw of a step comes from one generator seeded by the run's seed and drawn for the *global* batch (all
ranks draw the same numbers and each takes its slice), so a run on N devices computes what one device computes on
the N-times larger batch, and the generator's state in the checkpoint makes resumed runs exact.
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping
from dataclasses import dataclass, field

import lightning as L
import numpy as np
import torch
import torch.nn.functional as F

from pbe.diffusion import SAMPLERS
from pbe.diffusion.scheduler_config import PAINT_BY_EXAMPLE_SCHEDULER, from_scheduler_config
from pbe.training.model_factory import build_model, plain_config

TIMESTEP_BUCKETS = 10
CFG_DROPOUT_MODES = ("batch", "sample")
LR_DECAYS = ("constant", "cosine")


@dataclass
class ObjectiveConfig:
    cfg_dropout: float = 0.2  # probability of training on the unconditional vector
    cfg_dropout_mode: str = "batch"  # "batch": one draw per step (original); "sample": one per sample
    # Not in the paper (1.0 = its plain MSE): weight of the latent positions inside the edit region relative to
    # those outside; the loss is the weighted mean, so its scale does not change with the mask's area.
    mask_loss_weight: float = 1.0
    # Not in the paper (1.0 = its t ~ U{0..T-1}): t = floor(T * (1 - (1 - u)^power)), u ~ U[0, 1), so that
    # P(t >= x T) = (1 - x)^(1 / power); power > 1 favours the high-noise steps, where the edit region's content
    # (the exemplar's colour and shape) is not yet readable from z_t and must come from the conditioning.
    timestep_power: float = 1.0
    # Not in the paper; used only on batches with `noisy_image` (data.augment.recolour_p > 0): a recoloured sample
    # whose t >= this and whose exemplar is not dropped is noised from `noisy_image` (its object in another colour)
    # while the target stays `image`: eps* = (z_t - sqrt(a) z0) / sqrt(1 - a). Below this t the correction
    # sqrt(a / (1 - a)) (z_noisy - z0) grows large (the colour is readable from z_t), so those samples stay plain.
    recolour_min_t: int = 300

    def __post_init__(self):
        if not (isinstance(self.recolour_min_t, int) and self.recolour_min_t >= 0):
            raise ValueError(f"objective.recolour_min_t must be an int >= 0, got {self.recolour_min_t!r}")
        if not (math.isfinite(self.timestep_power) and self.timestep_power > 0):
            raise ValueError(f"objective.timestep_power must be > 0 and finite, got {self.timestep_power!r}")
        if not (math.isfinite(self.mask_loss_weight) and self.mask_loss_weight > 0):
            raise ValueError(
                f"objective.mask_loss_weight must be > 0 and finite, got {self.mask_loss_weight!r}"
            )
        if not 0.0 <= self.cfg_dropout <= 1.0:
            raise ValueError(f"objective.cfg_dropout must be in [0, 1], got {self.cfg_dropout!r}")
        if self.cfg_dropout_mode not in CFG_DROPOUT_MODES:
            raise ValueError(
                f"objective.cfg_dropout_mode must be one of {CFG_DROPOUT_MODES}, got {self.cfg_dropout_mode!r}"
            )


@dataclass
class OptimConfig:
    lr: float = 1.0e-5
    weight_decay: float = 0.01
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1.0e-8
    warmup_steps: int = 10_000
    warmup_start: float = 1.0e-6  # warm-up starts at warmup_start * lr
    scale_lr: bool = False  # LDM-style: lr *= global batch size (devices x nodes x batch x accumulation)
    # After the warm-up: "constant" (the paper) or "cosine" (not in the paper: half a cosine from lr down to
    # final_lr_ratio * lr at trainer.max_steps, which short runs need far more than long ones)
    decay: str = "constant"
    final_lr_ratio: float = 0.0

    def __post_init__(self):
        self.betas = tuple(self.betas)
        if self.decay not in LR_DECAYS:
            raise ValueError(f"optim.decay must be one of {LR_DECAYS}, got {self.decay!r}")
        if not 0.0 <= self.final_lr_ratio <= 1.0:
            raise ValueError(f"optim.final_lr_ratio must be in [0, 1], got {self.final_lr_ratio!r}")
        if self.lr <= 0:
            raise ValueError(f"optim.lr must be > 0, got {self.lr!r}")
        if self.warmup_steps < 0:
            raise ValueError(f"optim.warmup_steps must be >= 0, got {self.warmup_steps!r}")


@dataclass
class GuardConfig:
    max_nonfinite: int = 10  # stop after this many non-finite losses in a row


@dataclass
class EMAConfig:
    decay: float | None = None  # e.g. 0.9999; None: no EMA

    def __post_init__(self):
        if self.decay is not None and not 0.0 < self.decay < 1.0:
            raise ValueError(f"ema.decay must be in (0, 1) or null, got {self.decay!r}")


def make_config(cls, values: Mapping | None, name: str):
    try:
        return cls(**dict(values or {}))
    except TypeError as e:
        raise ValueError(f"{name}: {e}") from None


class WarmupSchedule:
    """The lr factor per step (LambdaLR): warmup_start + (1 - warmup_start) * step / warmup_steps for step <
    warmup_steps, then 1, or with `total_steps` a half cosine from 1 at the warm-up's end down to `final_ratio` at
    `total_steps` (and after).

    A class (not a lambda) so that LambdaLR saves its state as plain numbers."""

    def __init__(
        self, warmup_steps: int, warmup_start: float, total_steps: int | None = None, final_ratio: float = 0.0
    ):
        self.warmup_steps, self.warmup_start = int(warmup_steps), float(warmup_start)
        self.total_steps = None if total_steps is None else int(total_steps)
        self.final_ratio = float(final_ratio)

    def __call__(self, step: int) -> float:
        if step < self.warmup_steps:
            return self.warmup_start + (1.0 - self.warmup_start) * step / self.warmup_steps
        if self.total_steps is None:
            return 1.0
        span = max(1, self.total_steps - self.warmup_steps)
        progress = min(1.0, (step - self.warmup_steps) / span)
        return self.final_ratio + (1.0 - self.final_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


@dataclass
class Draws:
    """Every random number of one training step (for this rank's part of the batch)."""

    timesteps: torch.Tensor  # (B,) long
    drop: torch.Tensor  # (B,) bool: use the unconditional vector
    image_noise: torch.Tensor  # (B, C, h, w): posterior sample of z0
    masked_noise: torch.Tensor  # (B, C, h, w): posterior sample of z_masked
    noise: torch.Tensor  # (B, C, h, w): diffusion noise
    extra: dict = field(default_factory=dict)


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
            self.ema_weights = torch.nn.Module()
            params = dict(self.model.named_parameters())
            for n in self.ema_names:
                self.ema_weights.register_buffer(n.replace(".", "__"), params[n].detach().clone().float())
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
        """Draws for the global batch (batch_size x world size), sliced to this rank."""
        rank, world = self.world()
        g, n, dev = self.draw_generator(), batch_size * world, self.device
        T, power = self.num_train_timesteps, self.objective.timestep_power
        if power == 1.0:
            timesteps = torch.randint(0, T, (n,), generator=g, device=dev)
        else:
            u = torch.rand(n, generator=g, device=dev, dtype=torch.float64)
            timesteps = (T * (1.0 - (1.0 - u) ** power)).long().clamp_(0, T - 1)
        u = torch.rand(n, generator=g, device=dev)
        p = self.objective.cfg_dropout
        drop = (u[:1] < p).expand(n) if self.objective.cfg_dropout_mode == "batch" else u < p
        shape = (n, *latent_shape)
        image_noise = torch.randn(shape, generator=g, device=dev)
        masked_noise = torch.randn(shape, generator=g, device=dev)
        noise = torch.randn(shape, generator=g, device=dev)
        part = slice(rank * batch_size, (rank + 1) * batch_size)
        return Draws(timesteps[part], drop[part], image_noise[part], masked_noise[part], noise[part])

    def latent_shape(self, image: torch.Tensor) -> tuple[int, int, int]:
        vae = self.model.vae.config
        f = vae.downsample_factor
        return (vae.latent_channels, image.shape[-2] // f, image.shape[-1] // f)

    def rng_state(self) -> dict:
        state = {
            "draws": self.draw_generator().get_state(),
            "torch": torch.get_rng_state(),
            "python": random.getstate(),
        }
        np_state = np.random.get_state()
        state["numpy"] = (np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *np_state[2:])
        if torch.cuda.is_available():
            state["cuda"] = torch.cuda.get_rng_state_all()
        return state

    def restore_rng(self, state: dict) -> None:
        self.generator.set_state(state["draws"].to(torch.uint8).cpu())
        torch.set_rng_state(state["torch"].cpu())
        version, ints, gauss = state["python"]
        random.setstate((version, tuple(ints), gauss))
        name, keys, *rest = state["numpy"]
        np.random.set_state((name, keys.numpy().astype(np.uint32), *rest))
        if "cuda" in state and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(state["cuda"])

    # ------------------------------------------------------------------------------------------- objective

    @torch.no_grad()
    def encode_latents(self, batch: dict, draws: Draws) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(z0, z_masked, keep-mask at latent size), from posterior samples with the draws' noise."""
        image, keep = batch["image"], batch["mask"]
        z0 = self.sampled_latent(image, draws.image_noise)
        z_masked = self.sampled_latent(image * keep, draws.masked_noise)
        mask = F.interpolate(keep, size=z0.shape[-2:], mode="bilinear", align_corners=False)
        return z0, z_masked, mask

    def sampled_latent(self, images: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """scale * (posterior mean + std * noise) of the frozen VAE (in its dtype: float32 or model.frozen_dtype),
        returned as float32."""
        vae = self.model.vae
        posterior = vae.encode(images.to(vae.quant_conv.weight.dtype))
        return (
            vae.config.scale_factor * (posterior.mean + posterior.std * noise.to(posterior.mean.dtype))
        ).float()

    def context(self, exemplar: torch.Tensor, drop: torch.Tensor) -> torch.Tensor:
        """Exemplar context, with the unconditional vector where `drop` (parts not used get no gradient)."""
        encoder = self.model.encoder
        b = exemplar.shape[0]
        tokens = 1 + encoder.config.vision.num_patches if encoder.config.use_patch_tokens else 1
        if bool(drop.all()):
            return encoder.unconditional(b, tokens)
        cond = encoder(exemplar)
        if not bool(drop.any()):
            return cond
        uncond = encoder.unconditional(b, tokens).to(cond.dtype)
        return torch.where(drop[:, None, None], uncond, cond)

    def noisy_latent(self, z0: torch.Tensor, noise: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
        a = self.alphas_cumprod.to(z0.device)[timesteps].float()[:, None, None, None]
        return a.sqrt() * z0.float() + (1 - a).sqrt() * noise.float()

    @torch.no_grad()
    def recoloured_start(self, batch: dict, draws: Draws, z0: torch.Tensor) -> torch.Tensor | None:
        """z_noisy (the latent the noise is added to) where a sample trains on its recoloured copy (see
        ObjectiveConfig.recolour_min_t), z0 elsewhere; None when no sample of the batch does."""
        if "noisy_image" not in batch:
            return None
        late = draws.timesteps >= self.objective.recolour_min_t
        use = batch["recoloured"].bool() & ~draws.drop.bool() & late
        if not bool(use.any()):
            return None
        start = z0.clone()
        start[use] = self.sampled_latent(batch["noisy_image"][use], draws.image_noise[use])
        return start

    def losses(self, batch: dict, draws: Draws) -> tuple[torch.Tensor, torch.Tensor]:
        """(loss, per-sample MSE) for one batch and its draws."""
        z0, z_masked, mask = self.encode_latents(batch, draws)
        start = self.recoloured_start(batch, draws, z0)
        if start is None:
            z_t, target = self.noisy_latent(z0, draws.noise, draws.timesteps), draws.noise.float()
        else:  # the noise that takes z0 (not the recoloured start) to z_t
            z_t = self.noisy_latent(start, draws.noise, draws.timesteps)
            a = self.alphas_cumprod.to(z0.device)[draws.timesteps].float()[:, None, None, None]
            target = draws.noise.float() + (a / (1 - a)).sqrt() * (start - z0)
        context = self.context(batch["exemplar"], draws.drop)
        x = torch.cat([z_t.to(z_masked.dtype), z_masked, mask.to(z_masked.dtype)], dim=1)
        eps = self.model.unet(x, draws.timesteps, context)
        err = (eps.float() - target) ** 2
        per_sample = err.detach().mean(dim=(1, 2, 3))
        weight = self.objective.mask_loss_weight
        if weight == 1.0:
            return err.mean(), per_sample
        w = 1.0 + (weight - 1.0) * (1.0 - mask.float())  # mask: 1 = keep, at latent size
        return (err * w).mean() / w.mean(), per_sample

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
        """Accumulate the loss per timestep bucket (10 of 100 steps); written every `log_every_n_steps` steps
        straight to the loggers, with only the buckets that occurred in that interval."""
        width = math.ceil(self.num_train_timesteps / TIMESTEP_BUCKETS)
        bucket = (timesteps // width).clamp(max=TIMESTEP_BUCKETS - 1)
        stats = torch.zeros(2, TIMESTEP_BUCKETS, device=per_sample.device)
        stats[0].index_add_(0, bucket, per_sample.float())
        stats[1].index_add_(0, bucket, torch.ones_like(per_sample, dtype=torch.float32))
        if self.world()[1] > 1:
            stats = self.trainer.strategy.reduce(stats, reduce_op="sum")
        self.bucket_stats = stats.cpu() if self.bucket_stats is None else self.bucket_stats + stats.cpu()
        every = self.trainer.log_every_n_steps if self._trainer is not None else 1
        if self.global_step % max(every, 1):
            return
        sums, counts = self.bucket_stats
        self.bucket_stats = None
        if self._trainer is None or not self.trainer.is_global_zero:
            return
        metrics = {}
        for i in range(TIMESTEP_BUCKETS):
            if counts[i] > 0:
                lo, hi = i * width, min((i + 1) * width, self.num_train_timesteps) - 1
                metrics[f"train_t/loss_t{lo:03d}-{hi:03d}"] = float(sums[i] / counts[i])
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
        """FSDP2 units: every UNet residual / transformer block, the UNet (the rest of it), every mapper block.

        The frozen VAE and vision tower stay whole on every rank (no gradients to reduce). The encoder's final norm,
        projection and unconditional vector are replicated too (the unconditional vector is used outside any
        module's forward, where FSDP could not gather it); their gradients are averaged in
        `on_before_optimizer_step`."""
        from torch.distributed.fsdp import fully_shard

        from pbe.models.attention import TransformerBlock
        from pbe.models.unet import ResBlock, SpatialTransformer

        unet = self.model.unet
        for module in list(unet.modules()):
            if isinstance(module, ResBlock | SpatialTransformer):
                fully_shard(module, mesh=mesh, reshard_after_forward=reshard_after_forward)
        fully_shard(unet, mesh=mesh, reshard_after_forward=reshard_after_forward)
        for block in self.model.encoder.mapper:
            if isinstance(block, TransformerBlock):
                fully_shard(block, mesh=mesh, reshard_after_forward=reshard_after_forward)
        self.replicated = [
            p
            for n, p in self.model.encoder.named_parameters()
            if n.split(".")[0] in ("final_norm", "proj_out", "uncond_vector")
        ]
        self.sharded = True

    def average_replicated_grads(self) -> None:
        """All-reduce the replicated trained parameters' gradients (a parameter no rank used keeps grad None)."""
        import torch.distributed as dist

        if not self.replicated:
            return
        used = torch.tensor(
            [p.grad is not None for p in self.replicated], dtype=torch.float32, device=self.device
        )
        dist.all_reduce(used, op=dist.ReduceOp.MAX)
        world = dist.get_world_size()
        for p, any_used in zip(self.replicated, used.tolist()):
            if not any_used:
                continue
            if p.grad is None:
                p.grad = torch.zeros_like(p)
            dist.all_reduce(p.grad, op=dist.ReduceOp.SUM)
            p.grad.div_(world)

    def on_before_optimizer_step(self, optimizer) -> None:
        if self.sharded:
            self.average_replicated_grads()
        local, whole = [], []
        for p in self.parameters():
            if p.grad is None:
                continue
            g = p.grad.detach()
            if hasattr(g, "to_local"):  # a DTensor shard: sum over ranks below
                local.append(g.to_local().float().pow(2).sum())
            else:
                whole.append(g.float().pow(2).sum())
        zero = torch.zeros((), device=self.device)
        sq_local = torch.stack(local).sum() if local else zero
        if self.sharded:
            sq_local = self.trainer.strategy.reduce(sq_local, reduce_op="sum")
        sq = sq_local + (torch.stack(whole).sum() if whole else zero)
        self.log("train/grad_norm", sq.sqrt())

    def on_train_batch_end(self, outputs, batch, batch_idx) -> None:
        if self.ema_names and self.global_step > self._ema_step:
            self._ema_step = self.global_step
            self.update_ema()

    @torch.no_grad()
    def update_ema(self) -> None:
        decay = self.ema_cfg.decay
        params = dict(self.model.named_parameters())
        for n in self.ema_names:
            shadow = getattr(self.ema_weights, n.replace(".", "__"))
            shadow.lerp_(params[n].detach().float(), 1.0 - decay)

    def ema_state(self) -> dict[str, torch.Tensor]:
        """EMA weights under model keys (empty without EMA)."""
        return {n: getattr(self.ema_weights, n.replace(".", "__")) for n in self.ema_names}

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
            total = self.trainer.max_steps if self._trainer is not None else -1
            if total is None or total <= 0:
                raise ValueError("optim.decay=cosine needs trainer.max_steps (the step the decay ends at)")
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
        model = self.model
        was_training = model.training
        model.eval()
        try:
            image = batch["image"].to(self.device)
            keep = batch["mask"].to(self.device)
            g = torch.Generator(device="cpu").manual_seed(seed)
            c, h, w = self.latent_shape(image)
            keep_bin = (keep >= 0.5).to(image.dtype)
            vae_dtype = model.vae.quant_conv.weight.dtype
            posterior = model.vae.encode((image * keep_bin).to(vae_dtype))
            z_masked = model.vae.config.scale_factor * posterior.mode().float()
            mask = F.interpolate(keep_bin, size=(h, w))
            cond = model.encoder(batch["exemplar"].to(self.device))
            guided = guidance > 1.0
            context = (
                torch.cat([model.encoder.unconditional(*cond.shape[:2]).to(cond.dtype), cond])
                if guided
                else cond
            )
            extra = torch.cat([z_masked, mask], dim=1)
            extra = torch.cat([extra, extra]) if guided else extra

            def denoise(x, t):
                inp = torch.cat([x, x]) if guided else x
                eps = model.unet(torch.cat([inp, extra], dim=1), t, context)
                if guided:
                    uncond, cond_eps = eps.chunk(2)
                    eps = uncond + guidance * (cond_eps - uncond)
                return eps

            x = torch.randn((image.shape[0], c, h, w), generator=g).to(self.device)
            z = SAMPLERS["ddim"](denoise, x, self.schedule, steps)
            return model.vae.decode((z / model.vae.config.scale_factor).to(vae_dtype)).float().clamp(-1, 1)
        finally:
            model.train(was_training)
            self.train(self.training)
