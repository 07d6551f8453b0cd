"""An exponential moving average of the trained weights (`ema.decay`), kept in float32 buffers that travel with the
module's checkpoints (`ema_weights.<name with . as __>`), exported with `--ema`."""

from __future__ import annotations

import torch


class EMAWeights(torch.nn.Module):
    """Float32 shadows of ``names`` (parameters of ``model``), updated with `update` after each optimizer step."""

    def __init__(self, model: torch.nn.Module, names: list[str]):
        super().__init__()
        self.names = list(names)
        params = dict(model.named_parameters())
        for n in self.names:
            self.register_buffer(n.replace(".", "__"), params[n].detach().clone().float())

    @torch.no_grad()
    def update(self, model: torch.nn.Module, decay: float) -> None:
        params = dict(model.named_parameters())
        for n in self.names:
            getattr(self, n.replace(".", "__")).lerp_(params[n].detach().float(), 1.0 - decay)

    def state(self) -> dict[str, torch.Tensor]:
        """The EMA weights under model keys."""
        return {n: getattr(self, n.replace(".", "__")) for n in self.names}
