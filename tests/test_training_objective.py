"""The paper's objective, optimizer and safeguards in PaintByExampleModule, on the tiny preset."""

import dataclasses
import math

import lightning as L
import pytest
import torch
import torch.nn.functional as F
from omegaconf import OmegaConf
from training_helpers import compose, losses

from pbe.stages import train
from pbe.training.datamodule import ExemplarDataModule, one_thread_worker
from pbe.training.module import Draws, PaintByExampleModule, WarmupSchedule, trained_parameter_names


def tiny_module(*overrides):
    c = OmegaConf.to_container(compose(*overrides), resolve=True)
    return PaintByExampleModule(
        c["model"], c["objective"], c["optim"], c["ema"], c["guard"], seed=c["seed"]
    ), c


@pytest.fixture(scope="module")
def module_and_batch():
    module, c = tiny_module()
    datamodule = ExemplarDataModule(c["data"], c["loader"], seed=c["seed"])
    return module, datamodule.fixed_items(2)


def fixed_draws() -> Draws:
    """Seeded draws for two 64 px samples (latents 4 x 16 x 16, VAE f = 4), both conditioned."""
    g = torch.Generator().manual_seed(5)
    shape = (2, 4, 16, 16)
    return Draws(
        timesteps=torch.tensor([17, 903]),
        drop=torch.tensor([False, False]),
        image_noise=torch.randn(shape, generator=g),
        masked_noise=torch.randn(shape, generator=g),
        noise=torch.randn(shape, generator=g),
    )


def test_loss_equals_a_hand_computed_reference(module_and_batch):
    from diffusers import DDPMScheduler

    module, batch = module_and_batch
    model = module.model
    draws = fixed_draws()
    loss, per_sample = module.losses(batch, draws)

    # reference: the recipe written out, with diffusers' DDPM scheduler for the forward process
    sched = DDPMScheduler(
        beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", num_train_timesteps=1000
    )
    with torch.no_grad():
        post = model.vae.encode(batch["image"])
        z0 = 0.18215 * (post.mean + post.std * draws.image_noise)
        post = model.vae.encode(batch["image"] * batch["mask"])
        zm = 0.18215 * (post.mean + post.std * draws.masked_noise)
        mask = F.interpolate(batch["mask"], size=(16, 16), mode="bilinear")
        zt = sched.add_noise(z0, draws.noise, draws.timesteps)
        eps = model.unet(torch.cat([zt, zm, mask], 1), draws.timesteps, model.encoder(batch["exemplar"]))
        expected = ((eps - draws.noise) ** 2).mean()
    assert 0.18215 == model.vae.config.scale_factor
    assert abs(loss.item() - expected.item()) < 1e-6
    assert torch.allclose(per_sample.mean(), expected, atol=1e-6)


def test_dropped_samples_are_conditioned_on_the_unconditional_vector(module_and_batch):
    module, batch = module_and_batch
    encoder = module.model.encoder
    with torch.no_grad():
        context = module.context(batch["exemplar"], torch.tensor([True, False]))
        cond = encoder(batch["exemplar"])
    assert torch.equal(context[0], encoder.uncond_vector[0])
    assert torch.equal(context[1], cond[1])


@pytest.mark.parametrize("mode", ["batch", "sample"])
def test_cfg_dropout_frequency_matches_p(mode):
    module, _ = tiny_module("objective.cfg_dropout=0.2", f"objective.cfg_dropout_mode={mode}")
    drops = torch.stack([module.draw(4, (1, 1, 1)).drop for _ in range(3000)])  # (steps, batch)
    whole_batch = (drops.all(1) | ~drops.any(1)).float().mean().item()
    assert (
        abs(drops.float().mean().item() - 0.2) < 0.02
    )  # 3000 x 4 draws: std ~ 0.004 (per sample), 0.007 (batch)
    if mode == "batch":
        assert whole_batch == 1.0  # one draw per step for the whole batch (the original's behaviour)
    else:
        assert whole_batch < 0.5  # batches mix dropped and kept samples


def test_timesteps_cover_zero_to_999_uniformly():
    module, _ = tiny_module()
    t = torch.cat([module.draw(4, (1, 1, 1)).timesteps for _ in range(2500)])
    assert t.min() == 0 and t.max() == 999
    counts = torch.bincount(t // 100, minlength=10).float()
    assert (counts / counts.sum() - 0.1).abs().max() < 0.02


def test_timestep_power_favours_high_noise_as_documented():
    module, _ = tiny_module("objective.timestep_power=2.0")
    t = torch.cat([module.draw(4, (1, 1, 1)).timesteps for _ in range(2500)])  # 10k draws
    assert t.min() >= 0 and t.max() <= 999
    for x in (0.2, 0.5, 0.8):  # P(t >= x T) = (1 - x)^(1 / power); std of a 10k-draw frequency <= 0.005
        assert abs((t >= x * 1000).float().mean().item() - (1 - x) ** 0.5) < 0.02
    with pytest.raises(ValueError, match="timestep_power"):
        tiny_module("objective.timestep_power=0")


def test_cosine_decay_ends_at_the_final_ratio_after_warmup():
    schedule = WarmupSchedule(10, 0.0, total_steps=110, final_ratio=0.1)
    assert schedule(5) == pytest.approx(0.5) and schedule(10) == pytest.approx(1.0)
    assert schedule(60) == pytest.approx(0.55) and schedule(110) == schedule(500) == pytest.approx(0.1)
    assert all(schedule(s) >= schedule(s + 1) for s in range(10, 120))
    module, _ = tiny_module("optim.decay=cosine")
    with pytest.raises(ValueError, match="max_steps"):
        module.configure_optimizers()  # no trainer: nothing to end the decay at
    with pytest.raises(ValueError, match="optim.decay"):
        tiny_module("optim.decay=linear")
    with pytest.raises(ValueError, match="final_lr_ratio"):
        tiny_module("optim.final_lr_ratio=1.5")


def test_decay_steps_sets_the_cosine_end_independently_of_max_steps():
    module, _ = tiny_module("optim.decay=cosine", "optim.warmup_steps=10", "optim.decay_steps=110")
    sched = module.configure_optimizers()["lr_scheduler"]["scheduler"]  # no trainer needed: the end is given
    factor = sched.lr_lambdas[0]
    assert factor.total_steps == 110 and factor(60) == pytest.approx(0.5)
    with pytest.raises(ValueError, match="decay_steps"):
        tiny_module("optim.decay_steps=110")  # constant decay has no end
    with pytest.raises(ValueError, match="decay_steps"):
        tiny_module("optim.decay=cosine", "optim.warmup_steps=10", "optim.decay_steps=10")


def test_optimizer_is_adamw_with_the_papers_settings_and_warmup():
    module, _ = tiny_module("optim.lr=1e-5", "optim.warmup_steps=10000")
    conf = module.configure_optimizers()
    opt, sched = conf["optimizer"], conf["lr_scheduler"]["scheduler"]
    assert isinstance(opt, torch.optim.AdamW)
    group = opt.param_groups[0]
    assert group["lr"] == pytest.approx(1e-5 * 1e-6) and group["weight_decay"] == 0.01
    warm = WarmupSchedule(10000, 1e-6)
    assert (
        warm(0) == 1e-6 and warm(5000) == pytest.approx(0.5, abs=1e-6) and warm(10000) == warm(10**6) == 1.0
    )
    assert conf["lr_scheduler"]["interval"] == "step" and sched.lr_lambdas[0].warmup_steps == 10000
    # every trained parameter is in the optimizer, including the unconditional vector; nothing frozen is
    in_opt = {id(p) for p in group["params"]}
    named = dict(module.model.named_parameters())
    assert {n for n, p in named.items() if id(p) in in_opt} == set(trained_parameter_names(module.model))
    assert "encoder.uncond_vector" in trained_parameter_names(module.model)
    assert not any(n.startswith(("vae.", "encoder.vision.")) for n in trained_parameter_names(module.model))


def test_full_preset_uses_gradient_checkpointing_and_the_released_architecture():
    c = compose("model=full", fast=False)
    assert c.model.gradient_checkpointing is True and c.seed == 23
    assert c.optim.lr == 1e-5 and c.objective.cfg_dropout == 0.2 and c.optim.scale_lr is False


class Snapshot(L.Callback):
    def on_train_start(self, trainer, pl_module):
        self.before = {k: v.detach().clone() for k, v in pl_module.model.state_dict().items()}
        self.got_grad, self.nonzero_grad = set(), set()
        self.trained = set(trained_parameter_names(pl_module.model))

    def on_after_backward(self, trainer, pl_module):
        self.got_grad |= {n for n, p in pl_module.model.named_parameters() if p.grad is not None}
        self.nonzero_grad |= {
            n for n, p in pl_module.model.named_parameters() if p.grad is not None and p.grad.any()
        }
        self.frozen_in_train_mode = pl_module.model.vae.training or pl_module.model.encoder.vision.training

    def on_train_end(self, trainer, pl_module):
        self.after = {k: v.detach().clone() for k, v in pl_module.model.state_dict().items()}


def test_only_the_trained_parameters_get_gradients_and_change(tmp_path):
    snap = Snapshot()
    cfg = compose(
        f"run_dir={tmp_path}",
        "trainer.max_steps=3",
        "objective.cfg_dropout=0.5",
        "objective.cfg_dropout_mode=sample",
    )
    train(cfg, callbacks=[snap])
    trained = snap.trained
    assert snap.got_grad == trained
    changed = {k for k in snap.before if not torch.equal(snap.before[k], snap.after[k])}
    # every tensor with a gradient moved (with a one-token context, the cross-attention query path has an exactly
    # zero gradient, so e.g. a zero LayerNorm bias before it legitimately stays put); nothing else moved
    assert snap.nonzero_grad <= changed <= trained
    assert len(snap.nonzero_grad) > 0.9 * len(trained)
    assert "encoder.uncond_vector" in changed and "encoder.proj_out.weight" in changed
    frozen = [k for k in snap.before if k.startswith(("vae.", "encoder.vision."))]
    assert frozen and all(torch.equal(snap.before[k], snap.after[k]) for k in frozen)  # bit-identical
    assert not snap.frozen_in_train_mode  # VAE and CLIP tower stay in eval mode while training


def nan_on(steps):
    original = PaintByExampleModule.losses

    def losses_(self, batch, draws):
        loss, per_sample = original(self, batch, draws)
        if self.trainer.fit_loop.total_batch_idx in steps:
            loss = loss * float("nan")
        return loss, per_sample

    return losses_


def test_non_finite_losses_skip_their_step_and_are_counted(tmp_path, monkeypatch):
    monkeypatch.setattr(PaintByExampleModule, "losses", nan_on({1, 2}))
    run_dir = train(compose(f"run_dir={tmp_path}", "trainer.max_steps=3", "guard.max_nonfinite=3"))
    assert sorted(losses(run_dir)) == [0, 1, 2]  # 5 batches, 2 skipped, 3 optimizer steps
    import csv

    rows = list(csv.DictReader(open(run_dir / "csv" / "metrics.csv")))
    assert max(float(r["train/skipped_steps"]) for r in rows if r.get("train/skipped_steps")) == 2.0


def test_too_many_non_finite_losses_in_a_row_stop_the_run(tmp_path, monkeypatch):
    monkeypatch.setattr(PaintByExampleModule, "losses", nan_on(set(range(100))))
    with pytest.raises(RuntimeError, match="3 non-finite losses in a row"):
        train(compose(f"run_dir={tmp_path}", "trainer.max_steps=5", "guard.max_nonfinite=3"))


def test_loader_workers_compute_with_one_thread_and_see_the_epoch():
    module, c = tiny_module("loader.num_workers=2")
    datamodule = ExemplarDataModule(c["data"], c["loader"], seed=c["seed"])
    loader = datamodule.train_dataloader()
    assert loader.worker_init_fn is one_thread_worker and not loader.persistent_workers
    threads = torch.get_num_threads()
    try:
        one_thread_worker(0)
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(threads)
    loader.sampler.set_epoch(3)
    assert (
        datamodule.dataset.epoch == 3
    )  # the sampler hands the epoch to the dataset before the iterator starts
    assert math.isclose(len(loader), len(datamodule.dataset) // 2)


def test_mask_loss_weight_is_a_weighted_mean_over_the_edit_region():
    module, c = tiny_module("objective.mask_loss_weight=4.0")
    batch = ExemplarDataModule(c["data"], c["loader"], seed=c["seed"]).fixed_items(2)
    draws = fixed_draws()
    loss, per_sample = module.losses(batch, draws)
    module.objective.mask_loss_weight = 1.0
    plain, plain_per_sample = module.losses(batch, draws)
    assert torch.equal(per_sample, plain_per_sample)  # logged per-sample MSE stays the plain one
    with torch.no_grad():
        z0, z_masked, keep = module.encode_latents(batch, draws)
        x = torch.cat([module.noisy_latent(z0, draws.noise, draws.timesteps), z_masked, keep], 1)
        err = (
            module.model.unet(x, draws.timesteps, module.model.encoder(batch["exemplar"])) - draws.noise
        ) ** 2
        w = (1 + 3 * (1 - keep)).expand_as(err)
        expected = (err * w).sum() / w.sum()
    assert abs(loss.item() - expected.item()) < 1e-6 and abs(loss.item() - plain.item()) > 1e-4
    with pytest.raises(ValueError, match="mask_loss_weight"):
        tiny_module("objective.mask_loss_weight=0")


@pytest.mark.parametrize("patch_tokens", [False, True])
def test_frozen_parts_in_bf16_give_a_float32_loss_with_and_without_the_bottleneck(patch_tokens):
    module, c = tiny_module(
        "model.frozen_dtype=bf16", f"++model.config.encoder.use_patch_tokens={patch_tokens}"
    )
    assert module.model.vae.quant_conv.weight.dtype == torch.bfloat16
    assert module.model.encoder.vision.post_norm.weight.dtype == torch.bfloat16
    batch = ExemplarDataModule(c["data"], c["loader"], seed=c["seed"]).fixed_items(2)
    context = module.context(batch["exemplar"], torch.tensor([False, False]))
    assert context.dtype == torch.float32 and context.shape[1] == (
        1 + module.model.encoder.config.vision.num_patches if patch_tokens else 1
    )
    loss, _ = module.losses(batch, fixed_draws())
    assert loss.dtype == torch.float32 and torch.isfinite(loss)
    z0, _, _ = module.encode_latents(batch, fixed_draws())
    full, _ = tiny_module(f"++model.config.encoder.use_patch_tokens={patch_tokens}")
    full.model.load_state_dict(module.model.state_dict())  # the same weights, frozen parts back in float32
    reference, _, _ = full.encode_latents(batch, fixed_draws())
    assert z0.dtype == torch.float32 and (z0 - reference).abs().max() < 0.05 * reference.abs().max()


def test_recoloured_samples_are_noised_from_the_copy_with_the_noise_that_leads_from_z0():
    module, c = tiny_module("data.augment.recolour_p=1.0", "objective.recolour_min_t=500")
    batch = ExemplarDataModule(c["data"], c["loader"], seed=c["seed"]).fixed_items(2)
    assert batch["recoloured"].all() and not torch.equal(batch["noisy_image"], batch["image"])
    draws = fixed_draws()  # t = 17 (below recolour_min_t: plain) and 903 (trains on the recoloured copy)
    loss, _ = module.losses(batch, draws)
    with torch.no_grad():
        z0, z_masked, keep = module.encode_latents(batch, draws)
        z_copy, _, _ = module.encode_latents({**batch, "image": batch["noisy_image"]}, draws)
        start = torch.stack([z0[0], z_copy[1]])
        a = module.alphas_cumprod[draws.timesteps][:, None, None, None]
        z_t = a.sqrt() * start + (1 - a).sqrt() * draws.noise
        target = (z_t - a.sqrt() * z0) / (1 - a).sqrt()  # the eps under which z_t came from z0
        x = torch.cat([z_t, z_masked, keep], 1)
        eps = module.model.unet(x, draws.timesteps, module.model.encoder(batch["exemplar"]))
        w = 1 + (module.objective.mask_loss_weight - 1) * (1 - keep)
        expected = (((eps - target) ** 2) * w).mean() / w.mean()
    assert abs(loss.item() - expected.item()) < 1e-5
    # nothing recoloured where t < recolour_min_t or the exemplar is dropped: the plain loss
    unrecoloured = {k: v for k, v in batch.items() if k not in ("noisy_image", "recoloured")}
    plain, _ = module.losses(unrecoloured, draws)
    assert abs(loss.item() - plain.item()) > 1e-4
    module.objective.recolour_min_t = 1000
    assert module.losses(batch, draws)[0].item() == plain.item()
    module.objective.recolour_min_t = 0
    dropped = dataclasses.replace(draws, drop=torch.tensor([True, True]))
    assert module.losses(batch, dropped)[0].item() == module.losses(unrecoloured, dropped)[0].item()
    with pytest.raises(ValueError, match="recolour_min_t"):
        tiny_module("objective.recolour_min_t=-1")
