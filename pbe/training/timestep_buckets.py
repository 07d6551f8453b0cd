"""The training loss per timestep bucket (10 buckets of 100 steps for T = 1000), logged as
`train_t/loss_t000-099`, ...: which noise levels the model has learned."""

from __future__ import annotations

import math

import torch

TIMESTEP_BUCKETS = 10


def bucket_stats(per_sample: torch.Tensor, timesteps: torch.Tensor, num_train_timesteps: int) -> torch.Tensor:
    """(2, TIMESTEP_BUCKETS): the sum of the per-sample losses and the sample count in each bucket."""
    width = math.ceil(num_train_timesteps / TIMESTEP_BUCKETS)
    bucket = (timesteps // width).clamp(max=TIMESTEP_BUCKETS - 1)
    stats = torch.zeros(2, TIMESTEP_BUCKETS, device=per_sample.device)
    stats[0].index_add_(0, bucket, per_sample.float())
    stats[1].index_add_(0, bucket, torch.ones_like(per_sample, dtype=torch.float32))
    return stats


def bucket_metrics(stats: torch.Tensor, num_train_timesteps: int) -> dict[str, float]:
    """The mean loss of each bucket that has samples, named by its timestep range."""
    width = math.ceil(num_train_timesteps / TIMESTEP_BUCKETS)
    sums, counts = stats
    metrics = {}
    for i in range(TIMESTEP_BUCKETS):
        if counts[i] > 0:
            lo, hi = i * width, min((i + 1) * width, num_train_timesteps) - 1
            metrics[f"train_t/loss_t{lo:03d}-{hi:03d}"] = float(sums[i] / counts[i])
    return metrics
