"""FSDP for `PaintByExampleModule` (Lightning's ModelParallelStrategy, torch's `fully_shard`): which blocks are
sharded, the replicated trained parameters whose gradients are averaged by hand, and the global gradient norm."""

from __future__ import annotations

import torch


def shard_model(model, mesh, reshard_after_forward: bool = True) -> list[torch.nn.Parameter]:
    """FSDP2 units: every UNet residual / transformer block, the UNet (the rest of it), every mapper block.

    The frozen VAE and vision tower stay whole on every rank (no gradients to reduce). The encoder's final norm,
    projection and unconditional vector are replicated too (the unconditional vector is used outside any
    module's forward, where FSDP could not gather it); returns them: their gradients are averaged with
    `average_replicated_grads` before each optimizer step."""
    from torch.distributed.fsdp import fully_shard

    from pbe.models.attention import TransformerBlock
    from pbe.models.unet import ResBlock, SpatialTransformer

    unet = model.unet
    for module in list(unet.modules()):
        if isinstance(module, ResBlock | SpatialTransformer):
            fully_shard(module, mesh=mesh, reshard_after_forward=reshard_after_forward)
    fully_shard(unet, mesh=mesh, reshard_after_forward=reshard_after_forward)
    for block in model.encoder.mapper:
        if isinstance(block, TransformerBlock):
            fully_shard(block, mesh=mesh, reshard_after_forward=reshard_after_forward)
    return [
        p
        for n, p in model.encoder.named_parameters()
        if n.split(".")[0] in ("final_norm", "proj_out", "uncond_vector")
    ]


def average_replicated_grads(replicated: list[torch.nn.Parameter], device) -> None:
    """All-reduce the replicated trained parameters' gradients (a parameter no rank used keeps grad None)."""
    import torch.distributed as dist

    if not replicated:
        return
    used = torch.tensor([p.grad is not None for p in replicated], dtype=torch.float32, device=device)
    dist.all_reduce(used, op=dist.ReduceOp.MAX)
    world = dist.get_world_size()
    for p, any_used in zip(replicated, used.tolist()):
        if not any_used:
            continue
        if p.grad is None:
            p.grad = torch.zeros_like(p)
        dist.all_reduce(p.grad, op=dist.ReduceOp.SUM)
        p.grad.div_(world)


def grad_norm_squares(parameters, device) -> tuple[torch.Tensor, torch.Tensor]:
    """(sum of squared gradients of this rank's shards, sum over whole gradients); the first is summed over ranks
    by the caller when sharded."""
    local, whole = [], []
    for p in parameters:
        if p.grad is None:
            continue
        g = p.grad.detach()
        if hasattr(g, "to_local"):  # a DTensor shard: sum over ranks
            local.append(g.to_local().float().pow(2).sum())
        else:
            whole.append(g.float().pow(2).sum())
    zero = torch.zeros((), device=device)
    return (torch.stack(local).sum() if local else zero), (torch.stack(whole).sum() if whole else zero)
